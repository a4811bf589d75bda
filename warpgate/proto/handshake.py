"""Peer authentication: each side proves it holds the private key of the public key it claims.

A SIGMA-style exchange (both signatures cover both fresh nonces and both keys)::

    I -> R  HELLO      conn_id, nonce_i, key_i, purpose
    R -> I  CHALLENGE  conn_id, nonce_r, key_r, sig_r = Sign_r("R" | transcript)
    I -> R  PROOF      conn_id, sig_i = Sign_i("I" | transcript)
    R -> I  DONE       conn_id

    transcript = "warpgate-auth-v1" | conn_id | nonce_i | nonce_r | key_i | key_r | purpose

The initiator refuses a responder whose key is not the one in the address it dialled, *before* it
proves anything, so a channel that reached the wrong host fails closed. Messages are idempotent, so
on UDP the initiator simply retransmits its last message until the next one arrives.

**Simultaneous open.** Two ends that dial each other on one path at the same moment (hole
punching: the same UDP 4-tuple, or one TCP connection from a simultaneous open) each receive the
other's HELLO while waiting for a CHALLENGE. ``yields`` decides without a round trip: the end whose
public key is greater drops its own HELLO and answers the peer's as responder; the other ignores
the peer's HELLO and keeps waiting. Both know both keys (each dialled the other's address), so both
reach the same decision and exactly one handshake completes.

``conn_id`` lets a node match an incoming channel to an attempt it is waiting for (reverse connect,
hole punching); ``purpose`` names the plugin that made the channel.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from warpgate.errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from warpgate.identity import PUBLIC_KEY_SIZE, Identity, verify

VERSION = 1
NONCE_SIZE = 32
CONN_ID_SIZE = 16
_CONTEXT = b"warpgate-auth-v1"


class Step(enum.IntEnum):
    HELLO = 1
    CHALLENGE = 2
    PROOF = 3
    DONE = 4


@dataclass(frozen=True, slots=True)
class Hello:
    conn_id: bytes
    nonce: bytes
    key: bytes
    purpose: str


@dataclass(frozen=True, slots=True)
class Challenge:
    conn_id: bytes
    nonce: bytes
    key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Proof:
    conn_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Done:
    conn_id: bytes


Message = Hello | Challenge | Proof | Done


def encode(msg: Message) -> bytes:
    if isinstance(msg, Hello):
        purpose = msg.purpose.encode("ascii")
        return (
            bytes((Step.HELLO, VERSION))
            + msg.conn_id
            + msg.nonce
            + msg.key
            + bytes((len(purpose),))
            + purpose
        )
    if isinstance(msg, Challenge):
        return bytes((Step.CHALLENGE,)) + msg.conn_id + msg.nonce + msg.key + _sig(msg.signature)
    if isinstance(msg, Proof):
        return bytes((Step.PROOF,)) + msg.conn_id + _sig(msg.signature)
    return bytes((Step.DONE,)) + msg.conn_id


def decode(data: bytes) -> Message:
    """Parse one handshake message; anything malformed raises ``RemoteProtocolError``."""
    if not data:
        raise RemoteProtocolError("empty handshake message")
    step, body = data[0], data[1:]
    if step == Step.HELLO:
        if len(body) < 1 + CONN_ID_SIZE + NONCE_SIZE + PUBLIC_KEY_SIZE + 1:
            raise RemoteProtocolError("truncated HELLO")
        if body[0] != VERSION:
            raise RemoteProtocolError(f"handshake version {body[0]} not supported")
        conn_id, rest = _split(body[1:], CONN_ID_SIZE)
        nonce, rest = _split(rest, NONCE_SIZE)
        key, rest = _split(rest, PUBLIC_KEY_SIZE)
        if len(rest) != 1 + rest[0]:
            raise RemoteProtocolError("HELLO purpose length mismatch")
        try:
            purpose = rest[1:].decode("ascii")
        except UnicodeDecodeError:
            raise RemoteProtocolError("HELLO purpose is not ASCII") from None
        return Hello(conn_id, nonce, key, purpose)
    if step == Step.CHALLENGE:
        if len(body) < CONN_ID_SIZE + NONCE_SIZE + PUBLIC_KEY_SIZE + 1:
            raise RemoteProtocolError("truncated CHALLENGE")
        conn_id, rest = _split(body, CONN_ID_SIZE)
        nonce, rest = _split(rest, NONCE_SIZE)
        key, rest = _split(rest, PUBLIC_KEY_SIZE)
        return Challenge(conn_id, nonce, key, _unsig(rest, "CHALLENGE"))
    if step == Step.PROOF:
        if len(body) < CONN_ID_SIZE + 1:
            raise RemoteProtocolError("truncated PROOF")
        conn_id, rest = _split(body, CONN_ID_SIZE)
        return Proof(conn_id, _unsig(rest, "PROOF"))
    if step == Step.DONE:
        if len(body) != CONN_ID_SIZE:
            raise RemoteProtocolError("malformed DONE")
        return Done(body)
    raise RemoteProtocolError(f"unknown handshake step {step}")


def yields(own_key: bytes, peer_key: bytes) -> bool:
    """Simultaneous open: True when this end answers the peer's HELLO instead of its own (key order)."""
    if own_key == peer_key:
        raise LocalProtocolError("a node cannot dial itself")
    return own_key > peer_key


def transcript(
    conn_id: bytes, nonce_i: bytes, nonce_r: bytes, key_i: bytes, key_r: bytes, purpose: str
) -> bytes:
    return _CONTEXT + conn_id + nonce_i + nonce_r + key_i + key_r + purpose.encode("ascii")


class Initiator:
    """The dialling side. Feed it every handshake message; send what it returns."""

    def __init__(
        self, identity: Identity, expected_key: bytes, conn_id: bytes, purpose: str, nonce: bytes
    ) -> None:
        if len(conn_id) != CONN_ID_SIZE or len(nonce) != NONCE_SIZE:
            raise LocalProtocolError("conn_id must be 16 bytes and nonce 32 bytes")
        if not purpose.isascii() or len(purpose) > 64:
            raise LocalProtocolError("purpose must be ASCII, at most 64 characters")
        self.identity = identity
        self.expected_key = expected_key
        self.hello = Hello(conn_id, nonce, identity.public_key, purpose)
        self.last: bytes = encode(self.hello)
        self.done = False

    def receive(self, data: bytes) -> bytes | None:
        """Process one message from the responder; returns the reply to send, if any."""
        msg = decode(data)
        if msg.conn_id != self.hello.conn_id:
            raise RemoteProtocolError("handshake message for another connection")
        if isinstance(msg, Challenge):
            if msg.key != self.expected_key:
                raise HandshakeError("reached the wrong peer: its key is not the one in the address")
            t = transcript(
                msg.conn_id, self.hello.nonce, msg.nonce, self.hello.key, msg.key, self.hello.purpose
            )
            if not verify(msg.key, msg.signature, b"R" + t):
                raise HandshakeError("peer's signature does not verify")
            self.last = encode(Proof(msg.conn_id, self.identity.sign(b"I" + t)))
            return self.last
        if isinstance(msg, Done):
            if self.last == encode(self.hello):
                raise RemoteProtocolError("DONE before CHALLENGE")
            self.done = True
            return None
        raise RemoteProtocolError(f"initiator cannot take {type(msg).__name__}")


class Responder:
    """The accepting side of one channel. Accepts any key that proves itself; exposes it after DONE."""

    def __init__(self, identity: Identity, nonce: bytes) -> None:
        if len(nonce) != NONCE_SIZE:
            raise LocalProtocolError("nonce must be 32 bytes")
        self.identity = identity
        self.nonce = nonce
        self.hello: Hello | None = None
        self.challenge: bytes | None = None
        self.done = False

    @property
    def peer_key(self) -> bytes:
        if not self.done or self.hello is None:
            raise LocalProtocolError("peer key is known only after the handshake")
        return self.hello.key

    def receive(self, data: bytes) -> bytes:
        """Process one message from the initiator; returns the reply to send."""
        msg = decode(data)
        if isinstance(msg, Hello):
            if self.hello is not None:
                if msg != self.hello:
                    raise RemoteProtocolError("a second, different HELLO on one channel")
                assert self.challenge is not None
                return self.challenge  # retransmitted HELLO: answer the same way
            self.hello = msg
            t = self._transcript()
            self.challenge = encode(
                Challenge(msg.conn_id, self.nonce, self.identity.public_key, self.identity.sign(b"R" + t))
            )
            return self.challenge
        if isinstance(msg, Proof):
            if self.hello is None:
                raise RemoteProtocolError("PROOF before HELLO")
            if msg.conn_id != self.hello.conn_id:
                raise RemoteProtocolError("PROOF for another connection")
            if not verify(self.hello.key, msg.signature, b"I" + self._transcript()):
                raise HandshakeError("initiator's signature does not verify")
            self.done = True
            return encode(Done(msg.conn_id))
        raise RemoteProtocolError(f"responder cannot take {type(msg).__name__}")

    def _transcript(self) -> bytes:
        assert self.hello is not None
        h = self.hello
        return transcript(h.conn_id, h.nonce, self.nonce, h.key, self.identity.public_key, h.purpose)


def _split(data: bytes, n: int) -> tuple[bytes, bytes]:
    return data[:n], data[n:]


def _sig(signature: bytes) -> bytes:
    return bytes((len(signature),)) + signature


def _unsig(rest: bytes, what: str) -> bytes:
    if not rest or len(rest) != 1 + rest[0] or rest[0] == 0:
        raise RemoteProtocolError(f"{what} signature length mismatch")
    return rest[1:]
