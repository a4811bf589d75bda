"""Peer authentication and key exchange: each side proves it holds the private key of the public
key it claims, and both derive the record keys of the channel (``warpgate.proto.record``).

Signed ephemeral Diffie-Hellman in the SIGMA pattern (Krawczyk, CRYPTO 2003), the structure of
TLS 1.3's ECDHE + CertificateVerify and of IKEv2: each side sends a fresh X25519 share, and each
signs, with its long-term ECDSA P-256 node key, a transcript holding both shares and both identities::

    I -> R  HELLO      conn_id, share_i, key_i, purpose
    R -> I  CHALLENGE  conn_id, share_r, key_r, sig_r = Sign_r("R" | transcript)
    I -> R  PROOF      conn_id, sig_i = Sign_i("I" | transcript)
    R -> I  DONE       conn_id

HELLO is padded with zeros to ``MIN_HELLO`` bytes, more than any answer to it, so a HELLO sent
from a forged source address (UDP) makes us send no more bytes than it carried: we are no
amplifier. A UDP responder under load answers a HELLO with a stateless ``COOKIE`` first
(``warpgate.proto.cookie``) and signs nothing until the HELLO comes back carrying it::

    R -> I  COOKIE     conn_id, cookie          (I resends HELLO with the cookie)

    transcript = "warpgate-auth-v2" | conn_id | share_i | share_r | key_i | key_r | purpose
    i2r | r2i  = HKDF-SHA256(salt = SHA-256(transcript), ikm = X25519(eph, share_peer),
                             info = "warpgate-record-v1", 64 bytes)

Both identities are inside both signatures, so neither side can be made to believe it talks to
someone else (no identity misbinding). The shares are fresh per handshake and their private halves
are dropped once the keys are derived: a stolen identity key later does not decrypt recorded
pipes (forward secrecy). The shares are random, so they serve as the handshake's nonces too.

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

import dataclasses
import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from warpgate.errors import HandshakeError, LocalProtocolError, NotAllowed, RemoteProtocolError
from warpgate.identity import PUBLIC_KEY_SIZE, Identity, verify

VERSION = 2
SHARE_SIZE = 32  # an X25519 public key (RFC 7748 §5)
CONN_ID_SIZE = 16
KEY_SIZE = 32
MAX_MESSAGE = 512
"""The largest handshake message taken (a HELLO is at most 147 bytes): a peer that has not
authenticated gets no more of our memory or parsing than this."""
_CONTEXT = b"warpgate-auth-v2"
_RECORD_INFO = b"warpgate-record-v1"


@dataclass(frozen=True, slots=True)
class Keys:
    """A channel's record keys, from one side's point of view (never logged: no ``repr``)."""

    send: bytes = field(repr=False)
    recv: bytes = field(repr=False)


class Step(enum.IntEnum):
    HELLO = 1
    CHALLENGE = 2
    PROOF = 3
    DONE = 4
    COOKIE = 5


MIN_HELLO = 192
"""A HELLO is padded to this many bytes: more than a CHALLENGE (about 155) or a COOKIE."""
COOKIE_SIZE = 16


@dataclass(frozen=True, slots=True)
class Hello:
    conn_id: bytes
    share: bytes
    key: bytes
    purpose: str
    cookie: bytes = b""
    """The responder's return-routability cookie, when it asked for one (not in the transcript)."""


@dataclass(frozen=True, slots=True)
class Challenge:
    conn_id: bytes
    share: bytes
    key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Proof:
    conn_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Done:
    conn_id: bytes


@dataclass(frozen=True, slots=True)
class Cookie:
    conn_id: bytes
    cookie: bytes


Message = Hello | Challenge | Proof | Done | Cookie


def encode(msg: Message) -> bytes:
    if isinstance(msg, Hello):
        purpose = msg.purpose.encode("ascii")
        out = (
            bytes((Step.HELLO, VERSION))
            + msg.conn_id
            + msg.share
            + msg.key
            + bytes((len(purpose),))
            + purpose
            + bytes((len(msg.cookie),))
            + msg.cookie
        )
        return out.ljust(MIN_HELLO, b"\0")
    if isinstance(msg, Cookie):
        return bytes((Step.COOKIE,)) + msg.conn_id + msg.cookie
    if isinstance(msg, Challenge):
        return bytes((Step.CHALLENGE,)) + msg.conn_id + msg.share + msg.key + _sig(msg.signature)
    if isinstance(msg, Proof):
        return bytes((Step.PROOF,)) + msg.conn_id + _sig(msg.signature)
    return bytes((Step.DONE,)) + msg.conn_id


def decode(data: bytes) -> Message:
    """Parse one handshake message; anything malformed raises ``RemoteProtocolError``."""
    if not data:
        raise RemoteProtocolError("empty handshake message")
    step, body = data[0], data[1:]
    if step == Step.HELLO:
        if len(body) < 1 + CONN_ID_SIZE + SHARE_SIZE + PUBLIC_KEY_SIZE + 1:
            raise RemoteProtocolError("truncated HELLO")
        if body[0] != VERSION:
            raise RemoteProtocolError(f"handshake version {body[0]} not supported")
        conn_id, rest = _split(body[1:], CONN_ID_SIZE)
        share, rest = _split(rest, SHARE_SIZE)
        key, rest = _split(rest, PUBLIC_KEY_SIZE)
        if len(data) < MIN_HELLO:
            raise RemoteProtocolError(f"HELLO of {len(data)} bytes: padded to {MIN_HELLO} or refused")
        raw_purpose, rest = _split(rest[1:], rest[0])
        if not rest or rest[0] not in (0, COOKIE_SIZE) or len(rest) < 1 + rest[0]:
            raise RemoteProtocolError("HELLO purpose or cookie length mismatch")
        cookie, padding = _split(rest[1:], rest[0])
        if padding.strip(b"\0"):
            raise RemoteProtocolError("HELLO padding is not zeros")
        try:
            purpose = raw_purpose.decode("ascii")
        except UnicodeDecodeError:
            raise RemoteProtocolError("HELLO purpose is not ASCII") from None
        return Hello(conn_id, share, key, purpose, cookie)
    if step == Step.COOKIE:
        if len(body) != CONN_ID_SIZE + COOKIE_SIZE:
            raise RemoteProtocolError("malformed COOKIE")
        return Cookie(body[:CONN_ID_SIZE], body[CONN_ID_SIZE:])
    if step == Step.CHALLENGE:
        if len(body) < CONN_ID_SIZE + SHARE_SIZE + PUBLIC_KEY_SIZE + 1:
            raise RemoteProtocolError("truncated CHALLENGE")
        conn_id, rest = _split(body, CONN_ID_SIZE)
        share, rest = _split(rest, SHARE_SIZE)
        key, rest = _split(rest, PUBLIC_KEY_SIZE)
        return Challenge(conn_id, share, key, _unsig(rest, "CHALLENGE"))
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
    conn_id: bytes, share_i: bytes, share_r: bytes, key_i: bytes, key_r: bytes, purpose: str
) -> bytes:
    return _CONTEXT + conn_id + share_i + share_r + key_i + key_r + purpose.encode("ascii")


def _new_share() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def _share_of(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def derive(private: X25519PrivateKey, peer_share: bytes, t: bytes) -> tuple[bytes, bytes]:
    """(i2r, r2i) record keys from our ephemeral key, the peer's share and the transcript."""
    try:
        secret = private.exchange(X25519PublicKey.from_public_bytes(peer_share))
    except ValueError:  # a low-order point gives the all-zero secret (RFC 7748 §6.1)
        raise HandshakeError("the peer's key share is invalid") from None
    okm = HKDF(hashes.SHA256(), 2 * KEY_SIZE, hashlib.sha256(t).digest(), _RECORD_INFO).derive(secret)
    return okm[:KEY_SIZE], okm[KEY_SIZE:]


class Initiator:
    """The dialling side. Feed it every handshake message; send what it returns."""

    def __init__(
        self,
        identity: Identity,
        expected_key: bytes,
        conn_id: bytes,
        purpose: str,
        ephemeral: X25519PrivateKey | None = None,
    ) -> None:
        if len(conn_id) != CONN_ID_SIZE:
            raise LocalProtocolError("conn_id must be 16 bytes")
        if not purpose.isascii() or len(purpose) > 64:
            raise LocalProtocolError("purpose must be ASCII, at most 64 characters")
        self.identity = identity
        self.expected_key = expected_key
        self._ephemeral: X25519PrivateKey | None = ephemeral or _new_share()
        self.hello = Hello(conn_id, _share_of(self._ephemeral), identity.public_key, purpose)
        self.last: bytes = encode(self.hello)
        self.keys: Keys | None = None
        """Set with the PROOF: the channel's record keys (send = initiator to responder)."""
        self._challenge: Challenge | None = None
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
                msg.conn_id, self.hello.share, msg.share, self.hello.key, msg.key, self.hello.purpose
            )
            if not verify(msg.key, msg.signature, b"R" + t):
                raise HandshakeError("peer's signature does not verify")
            if self.keys is None:  # a retransmitted CHALLENGE is the same one: same keys
                if self._ephemeral is None:
                    raise RemoteProtocolError("a second, different CHALLENGE")
                i2r, r2i = derive(self._ephemeral, msg.share, t)
                self._ephemeral = None  # forward secrecy: the private share is gone
                self.keys = Keys(send=i2r, recv=r2i)
                self._challenge = msg
            elif msg != self._challenge:
                raise RemoteProtocolError("a second, different CHALLENGE")
            self.last = encode(Proof(msg.conn_id, self.identity.sign(b"I" + t)))
            return self.last
        if isinstance(msg, Cookie):
            if self.keys is not None:
                return None  # late: the responder already answered our HELLO
            self.hello = dataclasses.replace(self.hello, cookie=msg.cookie)
            self.last = encode(self.hello)
            return self.last
        if isinstance(msg, Done):
            if self.last == encode(self.hello):
                raise RemoteProtocolError("DONE before CHALLENGE")
            self.done = True
            return None
        raise RemoteProtocolError(f"initiator cannot take {type(msg).__name__}")


class Responder:
    """The accepting side of one channel. Accepts any key that proves itself; exposes it after DONE."""

    def __init__(
        self,
        identity: Identity,
        ephemeral: X25519PrivateKey | None = None,
        allow: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.identity = identity
        self.allow = allow
        """The connection gate, asked with a HELLO's key before we sign anything for it."""
        self._ephemeral: X25519PrivateKey | None = ephemeral or _new_share()
        self.share = _share_of(self._ephemeral)
        self.hello: Hello | None = None
        self.challenge: bytes | None = None
        self.keys: Keys | None = None
        """Set when the handshake is done: the channel's record keys (send = responder to initiator)."""
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
            if self.allow is not None and not self.allow(msg.key):
                raise NotAllowed("that key may not connect to this node")
            self.hello = msg
            t = self._transcript()
            self.challenge = encode(
                Challenge(msg.conn_id, self.share, self.identity.public_key, self.identity.sign(b"R" + t))
            )
            return self.challenge
        if isinstance(msg, Proof):
            if self.hello is None:
                raise RemoteProtocolError("PROOF before HELLO")
            if msg.conn_id != self.hello.conn_id:
                raise RemoteProtocolError("PROOF for another connection")
            t = self._transcript()
            if not verify(self.hello.key, msg.signature, b"I" + t):
                raise HandshakeError("initiator's signature does not verify")
            if self._ephemeral is not None:  # not on a retransmitted PROOF: the keys stay
                i2r, r2i = derive(self._ephemeral, self.hello.share, t)
                self._ephemeral = None  # forward secrecy: the private share is gone
                self.keys = Keys(send=r2i, recv=i2r)
            self.done = True
            return encode(Done(msg.conn_id))
        raise RemoteProtocolError(f"responder cannot take {type(msg).__name__}")

    def _transcript(self) -> bytes:
        assert self.hello is not None
        h = self.hello
        return transcript(h.conn_id, h.share, self.share, h.key, self.identity.public_key, h.purpose)


def _split(data: bytes, n: int) -> tuple[bytes, bytes]:
    return data[:n], data[n:]


def _sig(signature: bytes) -> bytes:
    return bytes((len(signature),)) + signature


def _unsig(rest: bytes, what: str) -> bytes:
    if not rest or len(rest) != 1 + rest[0] or rest[0] == 0:
        raise RemoteProtocolError(f"{what} signature length mismatch")
    return rest[1:]
