"""Wire frames shared by the TCP and UDP paths of a pipe.

TCP: ``u32 length | u8 kind | payload`` (length counts kind + payload), so one ``send`` is one
``recv``. UDP: ``u8 kind | payload``, one frame per datagram. The kind bytes start with 0b11, so
they never collide with STUN (first two bits 00, RFC 8489 §5) or TURN ChannelData (01, RFC 8656 §12).
"""

from __future__ import annotations

import enum

from warpgate.errors import RemoteProtocolError

HEADER_SIZE = 5
MAX_FRAME = 16 * 1024 * 1024
MAX_DATAGRAM = 65507 - 1  # largest UDP/IPv4 payload minus our kind byte


class Kind(enum.IntEnum):
    DATA = 0xD0
    HANDSHAKE = 0xD1
    CLOSE = 0xD2
    NOMINATE = 0xD3  #: the initiator picked this pipe (RFC 8445 §8 calls this nomination)
    NOMINATE_ACK = 0xD4
    PING = 0xD5  #: are you there? (the pipe was silent for a while; answered with PONG)
    PONG = 0xD6
    PROBE = 0xD7  #: random_probe: "this path is open now" (payload: the dial's conn_id)


def tcp_header_for(kind: Kind, size: int) -> bytes:
    """The 5-byte header of a frame whose payload has ``size`` bytes."""
    if size + 1 > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    return (size + 1).to_bytes(4, "big") + bytes((kind,))


def tcp_frame(kind: Kind, payload: bytes = b"") -> bytes:
    return tcp_header_for(kind, len(payload)) + payload


def tcp_header(header: bytes) -> tuple[Kind, int]:
    """Parse a 5-byte TCP frame header; returns the kind and the payload length."""
    length = int.from_bytes(header[:4], "big")
    if not 1 <= length <= MAX_FRAME:
        raise RemoteProtocolError(f"frame length {length} outside 1..{MAX_FRAME}")
    return _kind(header[4]), length - 1


def udp_frame(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_DATAGRAM:
        raise ValueError(f"datagram of {len(payload)} bytes exceeds {MAX_DATAGRAM}")
    return bytes((kind,)) + payload


def udp_parse(datagram: bytes) -> tuple[Kind, bytes]:
    if not datagram:
        raise RemoteProtocolError("empty datagram")
    return _kind(datagram[0]), datagram[1:]


def _kind(byte: int) -> Kind:
    try:
        return Kind(byte)
    except ValueError:
        raise RemoteProtocolError(f"unknown frame kind {byte:#04x}") from None
