"""The signal envelope: small control messages between nodes, safe to carry over any broker.

Every envelope is **signed** by the sender (ECDSA P-256 over everything before the signature)
and its payload **encrypted to the recipient's public key** (ECIES: an ephemeral P-256 key, ECDH
with the recipient's key from its address, HKDF-SHA256 (RFC 5869), ChaCha20-Poly1305 (RFC 8439)
with the header as associated data). The address carries the key, so first contact is encrypted.

Wire form, version 1 (big-endian)::

    u8  version | u8 type | 16 message id | 16 recipient node id | u64 timestamp (ms)
    u16 sender address length | sender address (binary ``Address``)
    33  ephemeral public key | 12 nonce | u32 ciphertext length | ciphertext
    u8  signature length | signature

``open_envelope`` checks, in order: size, structure, sender address, recipient, age, signature,
replay (message id already seen), decryption. Each failure is a ``SignalRejected`` whose
``reason`` is one word, counted by the channel. Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

import enum
import os
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from warpgate.errors import AddressError, RemoteProtocolError
from warpgate.identity import Identity, load_public_key, node_id_of, verify
from warpgate.proto.address import Address
from warpgate.proto.address import decode as decode_address

VERSION = 1
MAX_SIZE = 16 * 1024
MAX_JSON_DEPTH = 16
"""Signal payloads nest a few levels; deeper JSON is refused before the parser sees it."""
MAX_AGE = 60.0
"""Seconds an envelope stays acceptable (either way: clocks differ); older ones are rejected."""
_INFO = b"warpgate-signal-v1"


class MsgType(enum.IntEnum):
    REQUEST = 1  #: wants an ACK
    ACK = 2  #: answers a REQUEST; the payload carries the request's id and the response
    NOTICE = 3  #: fire and forget


class SignalRejected(RemoteProtocolError):
    """An envelope that must not be acted on. ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


REASONS = (
    "too_large",
    "malformed",
    "bad_sender",
    "misaddressed",
    "too_old",
    "bad_signature",
    "replayed",
    "sender_quota",
    "replay_cache_full",
    "rate_limited",
    "overloaded",
    "undecryptable",
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """An opened, verified envelope."""

    type: MsgType
    msg_id: bytes
    sender: Address
    recipient_id: str
    timestamp: float
    payload: bytes


def seal(
    identity: Identity,
    sender: Address,
    recipient: Address,
    type: MsgType,
    payload: bytes,
    *,
    now: float,
    msg_id: bytes | None = None,
) -> bytes:
    """Build, encrypt and sign an envelope; ``now`` is the sender's clock in seconds."""
    if sender.public_key != identity.public_key:
        raise ValueError("the sender address must carry the signing key")
    msg_id = msg_id or os.urandom(16)
    sender_raw = sender.to_bytes()
    eph = ec.generate_private_key(ec.SECP256R1())
    eph_pub = eph.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    key = _key(
        eph.exchange(ec.ECDH(), load_public_key(recipient.public_key)), msg_id, eph_pub, recipient.public_key
    )
    nonce = os.urandom(12)
    header = (
        bytes((VERSION, type))
        + msg_id
        + bytes.fromhex(recipient.node_id)
        + int(now * 1000).to_bytes(8, "big")
        + len(sender_raw).to_bytes(2, "big")
        + sender_raw
        + eph_pub
        + nonce
    )
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, payload, header)
    body = header + len(ciphertext).to_bytes(4, "big") + ciphertext
    signature = identity.sign(body)
    out = body + bytes((len(signature),)) + signature
    if len(out) > MAX_SIZE:
        raise ValueError(f"envelope of {len(out)} bytes exceeds {MAX_SIZE}")
    return out


TOTAL_RATE, TOTAL_BURST = 2000.0, 4000.0
"""Envelopes a second whose signature a node checks, and at once (``RateLimit``'s total bucket)."""


class ReplayCache:
    """Message ids seen within the acceptance window, counted per sender.

    Inside the window nothing is forgotten: evicting an id early would let a captured message be
    accepted again (100k attacker-signed envelopes used to flush a shared cache). A sender over
    its quota, or anyone once the cache is full, is refused instead: ``sender_quota`` or
    ``replay_cache_full``. Ids leave the cache ``2 * window`` after they were seen: a timestamp
    may be ``window`` ahead of our clock, and is accepted until ``window`` after itself.

    The default ``limit`` is what the default total bucket (``RateLimit``) can let in within
    those ``2 * window`` seconds: envelopes of however many keys cannot fill the cache, each
    key is held to its own quota, and a legitimate sender always finds room (many keys once
    filled a smaller cache in a minute and every sender was refused for as long as they kept
    it full).
    """

    def __init__(self, window: float = MAX_AGE, per_sender: int = 1024, limit: int | None = None) -> None:
        self.window = window
        self.per_sender = per_sender
        self.limit = limit if limit is not None else int(TOTAL_RATE * 2 * window + TOTAL_BURST)
        self._seen: dict[bytes, float] = {}
        self._order: deque[tuple[float, str, bytes]] = deque()
        self._count: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, msg_id: bytes) -> bool:
        """Whether ``msg_id`` is in the cache (a replay), without changing anything."""
        return msg_id in self._seen

    def check_and_add(self, sender: str, msg_id: bytes, now: float) -> str | None:
        """None if new (and now remembered); else why it is refused: ``replayed``,
        ``sender_quota``, ``replay_cache_full``."""
        while self._order and self._order[0][0] < now - 2 * self.window:
            _, who, old = self._order.popleft()
            del self._seen[old]
            self._count[who] -= 1
            if not self._count[who]:
                del self._count[who]
        if msg_id in self._seen:
            return "replayed"
        if self._count[sender] >= self.per_sender:
            return "sender_quota"
        if len(self._seen) >= self.limit:
            return "replay_cache_full"
        self._seen[msg_id] = now
        self._order.append((now, sender, msg_id))
        self._count[sender] += 1
        return None


class RateLimit:
    """Token buckets. ``total`` (``total_rate`` a second, ``total_burst`` at once) is taken before
    a signature is checked, so a flood costs a parse per envelope, not a signature check. The
    sender's own bucket (``rate``, ``burst``) is taken once the signature proved who sent it, so
    nobody can spend another sender's bucket by claiming its key; it bounds what one sender's
    envelopes make us do (handlers, cache entries). At most ``senders`` buckets are kept, the
    least recently used going first (a stranger's key gets a fresh bucket anyway; the total
    bucket still holds)."""

    def __init__(
        self,
        rate: float = 20.0,
        burst: float = 40.0,
        total_rate: float = TOTAL_RATE,
        total_burst: float = TOTAL_BURST,
        senders: int = 10_000,
    ) -> None:
        self.rate, self.burst = rate, burst
        self.total_rate, self.total_burst = total_rate, total_burst
        self.senders = senders
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._total: tuple[float, float] | None = None

    @staticmethod
    def _take(
        bucket: tuple[float, float], rate: float, burst: float, now: float
    ) -> tuple[bool, tuple[float, float]]:
        tokens, last = bucket
        tokens = min(burst, tokens + max(0.0, now - last) * rate)
        if tokens < 1:
            return False, (tokens, now)
        return True, (tokens - 1, now)

    def admit_any(self, now: float) -> bool:
        """Whether a signature may be checked now (the total bucket)."""
        ok, self._total = self._take(
            self._total or (self.total_burst, now), self.total_rate, self.total_burst, now
        )
        return ok

    def admit(self, sender: str, now: float) -> bool:
        """Whether an authenticated envelope of ``sender`` may be handled now."""
        ok, bucket = self._take(self._buckets.pop(sender, (self.burst, now)), self.rate, self.burst, now)
        self._buckets[sender] = bucket
        if len(self._buckets) > self.senders:
            self._buckets.popitem(last=False)
        return ok


def open_envelope(
    data: bytes,
    identity: Identity,
    *,
    now: float,
    replay: ReplayCache,
    max_age: float = MAX_AGE,
    limit: RateLimit | None = None,
    allow: Callable[[bytes], bool] | None = None,
) -> Envelope:
    """Verify and decrypt an envelope addressed to ``identity``; raises ``SignalRejected``.
    ``allow``: the connection gate (``warpgate.proto.gater``), asked with the claimed sender's key
    before anything is spent on the envelope."""
    if len(data) > MAX_SIZE:
        raise SignalRejected("too_large", f"{len(data)} bytes")
    try:
        p = _parse(data)
    except (IndexError, ValueError) as exc:
        raise SignalRejected("malformed", str(exc)) from None
    try:
        sender = decode_address(p.sender_raw)
    except AddressError as exc:
        raise SignalRejected("bad_sender", str(exc)) from None
    if p.recipient_id != identity.node_id:
        raise SignalRejected("misaddressed", f"for {p.recipient_id}")
    if abs(now - p.timestamp) > max_age:
        raise SignalRejected("too_old", f"timestamp {now - p.timestamp:.1f} s off")
    if allow is not None and not allow(sender.public_key):
        raise SignalRejected("not_allowed", f"sender {node_id_of(sender.public_key)}")
    admit(
        node_id_of(sender.public_key),
        p.msg_id,
        now,
        replay=replay,
        limit=limit,
        authentic=lambda: verify(sender.public_key, p.signature, p.body),
    )
    try:
        shared = identity.private_key.exchange(ec.ECDH(), load_public_key(p.eph_pub))
        key = _key(shared, p.msg_id, p.eph_pub, identity.public_key)
        payload = ChaCha20Poly1305(key).decrypt(p.nonce, p.ciphertext, p.header)
    except (InvalidTag, ValueError):
        raise SignalRejected("undecryptable") from None
    return Envelope(p.type, p.msg_id, sender, p.recipient_id, p.timestamp, payload)


def admit(
    sender: str,
    msg_id: bytes,
    now: float,
    *,
    replay: ReplayCache,
    limit: RateLimit | None,
    authentic: Callable[[], bool],
) -> None:
    """The order an envelope passes, cheapest first; raises ``SignalRejected``.

    A known id is refused before anything is spent: a replay of someone's captured envelope
    (anyone may subscribe to a node's topic) costs no signature check and none of its sender's
    bucket. Then the total bucket, the signature (``authentic``), the sender's own bucket, and
    the replay cache's quotas."""
    if replay.seen(msg_id):
        raise SignalRejected("replayed", msg_id.hex())
    if limit is not None and not limit.admit_any(now):
        raise SignalRejected("overloaded", "more envelopes a second than we check")
    if not authentic():
        raise SignalRejected("bad_signature", f"claimed sender {sender}")
    if limit is not None and not limit.admit(sender, now):
        raise SignalRejected("rate_limited", f"sender {sender}")
    refused = replay.check_and_add(sender, msg_id, now)
    if refused is not None:
        raise SignalRejected(refused, msg_id.hex())


@dataclass(frozen=True, slots=True)
class _Parsed:
    type: MsgType
    msg_id: bytes
    recipient_id: str
    timestamp: float
    sender_raw: bytes
    eph_pub: bytes
    nonce: bytes
    header: bytes
    ciphertext: bytes
    body: bytes
    signature: bytes


def _parse(data: bytes) -> _Parsed:
    if len(data) < 2 or data[0] != VERSION:
        raise ValueError(f"version {data[0] if data else '?'} not supported")
    mtype = MsgType(data[1])
    pos = 2
    msg_id, recipient = data[pos : pos + 16], data[pos + 16 : pos + 32]
    pos += 32
    timestamp = int.from_bytes(data[pos : pos + 8], "big") / 1000
    pos += 8
    slen = int.from_bytes(data[pos : pos + 2], "big")
    pos += 2
    sender_raw = data[pos : pos + slen]
    pos += slen
    eph_pub, nonce = data[pos : pos + 33], data[pos + 33 : pos + 45]
    pos += 45
    header = data[:pos]
    clen = int.from_bytes(data[pos : pos + 4], "big")
    pos += 4
    ciphertext = data[pos : pos + clen]
    pos += clen
    body = data[:pos]
    siglen = data[pos]
    signature = data[pos + 1 : pos + 1 + siglen]
    if (
        len(signature) != siglen
        or pos + 1 + siglen != len(data)
        or len(sender_raw) != slen
        or len(ciphertext) != clen
    ):
        raise ValueError("lengths do not add up")
    if len(eph_pub) != 33 or len(nonce) != 12 or len(recipient) != 16:
        raise ValueError("truncated header")
    return _Parsed(
        mtype,
        msg_id,
        recipient.hex(),
        timestamp,
        sender_raw,
        eph_pub,
        nonce,
        header,
        ciphertext,
        body,
        signature,
    )


def _key(shared: bytes, msg_id: bytes, eph_pub: bytes, recipient_key: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=msg_id, info=_INFO + eph_pub + recipient_key).derive(shared)


def check_json_depth(text: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (``SignalRejected("too_deep")``), scanning the bytes
    once without parsing: Python's parser would recurse, and raise RecursionError, first."""
    depth = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                raise SignalRejected("too_deep", f"JSON nested deeper than {limit}")
        elif byte in (0x5D, 0x7D):
            depth -= 1
