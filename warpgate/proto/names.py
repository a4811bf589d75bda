"""Nickname records: a human-readable name bound to an address, signed by the address's key.

Wire form, version 1 (big-endian)::

    u8 version | u8 op (1 claim, 2 delete) | u8 name length | name (ASCII)
    u16 address length | address (binary ``Address``; its key owns the name)
    u64 sequence | u64 expiry (Unix seconds)
    u8 signature length | ECDSA-SHA256 signature over everything before it

The server stores and returns whole records; a client verifies the signature, the name and the
expiry itself, so a lying or compromised server can withhold a name but never forge one. A higher
sequence number replaces a lower one; clients use milliseconds since the epoch, so a restarted
node needs no saved counter. Names: 3-32 characters of a-z, 0-9 and inner hyphens, not starting
with ``wg1`` (that prefix is the text form of an address).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from warpgate.errors import AddressError, WarpgateError
from warpgate.identity import Identity, verify
from warpgate.proto.address import Address
from warpgate.proto.address import decode as decode_address

VERSION = 1
MAX_TTL = 7 * 24 * 3600
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$")
_CONTEXT = b"warpgate-name-v1"


class NameServiceError(WarpgateError):
    """A name record is invalid, or the service refused it. ``code`` says why in one word."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Op(enum.IntEnum):
    CLAIM = 1
    DELETE = 2


def check_name(name: str) -> str:
    """Return the name if it follows the rules, else raise ``NameServiceError('invalid_name', why)``."""
    if not isinstance(name, str):
        raise NameServiceError("invalid_name", "a name is a string")
    if not 3 <= len(name) <= 32:
        raise NameServiceError("invalid_name", f"{name!r} must be 3 to 32 characters long")
    if not NAME_RE.match(name):
        raise NameServiceError("invalid_name", f"{name!r} may hold only a-z, 0-9 and inner hyphens")
    if name.startswith("wg1"):
        raise NameServiceError("invalid_name", f"{name!r} starts with 'wg1', the prefix of addresses")
    return name


@dataclass(frozen=True, slots=True)
class NameRecord:
    op: Op
    name: str
    address: Address
    seq: int
    expires: int
    signature: bytes

    @property
    def key(self) -> bytes:
        return self.address.public_key

    def to_bytes(self) -> bytes:
        body = _body(self.op, self.name, self.address, self.seq, self.expires)
        return body + bytes((len(self.signature),)) + self.signature

    def verify(self, *, now: float, name: str | None = None) -> NameRecord:
        """Check signature, name and expiry; returns self or raises ``NameServiceError``."""
        if name is not None and self.name != name:
            raise NameServiceError("mismatch", f"asked for {name!r}, got a record for {self.name!r}")
        if not verify(
            self.key,
            self.signature,
            _CONTEXT + _body(self.op, self.name, self.address, self.seq, self.expires),
        ):
            raise NameServiceError(
                "bad_signature", f"record for {self.name!r} is not signed by its address's key"
            )
        if self.expires <= now:
            raise NameServiceError("expired", f"record for {self.name!r} expired")
        if self.expires > now + MAX_TTL + 300:
            raise NameServiceError("invalid", f"record for {self.name!r} lives longer than {MAX_TTL} s")
        return self


def sign(identity: Identity, op: Op, name: str, address: Address, *, seq: int, expires: int) -> NameRecord:
    check_name(name)
    if address.public_key != identity.public_key:
        raise NameServiceError("invalid", "the address must carry the signing key")
    body = _body(op, name, address, seq, expires)
    return NameRecord(op, name, address, seq, expires, identity.sign(_CONTEXT + body))


def decode(data: bytes) -> NameRecord:
    """Strict decoder; anything malformed raises ``NameServiceError('malformed', why)``."""
    try:
        if data[0] != VERSION:
            raise NameServiceError("malformed", f"record version {data[0]} not supported")
        op = Op(data[1])
        nlen = data[2]
        name = data[3 : 3 + nlen].decode("ascii")
        pos = 3 + nlen
        alen = int.from_bytes(data[pos : pos + 2], "big")
        address = decode_address(data[pos + 2 : pos + 2 + alen])
        pos += 2 + alen
        seq = int.from_bytes(data[pos : pos + 8], "big")
        expires = int.from_bytes(data[pos + 8 : pos + 16], "big")
        pos += 16
        slen = data[pos]
        signature = data[pos + 1 : pos + 1 + slen]
        if len(signature) != slen or pos + 1 + slen != len(data) or len(name) != nlen:
            raise NameServiceError("malformed", "lengths do not add up")
    except (IndexError, ValueError, UnicodeDecodeError, AddressError) as exc:
        if isinstance(exc, NameServiceError):
            raise
        raise NameServiceError("malformed", str(exc) or type(exc).__name__) from None
    check_name(name)
    return NameRecord(op, name, address, seq, expires, signature)


def _body(op: Op, name: str, address: Address, seq: int, expires: int) -> bytes:
    raw_name, raw_addr = name.encode("ascii"), address.to_bytes()
    return (
        bytes((VERSION, op, len(raw_name)))
        + raw_name
        + len(raw_addr).to_bytes(2, "big")
        + raw_addr
        + seq.to_bytes(8, "big")
        + expires.to_bytes(8, "big")
    )
