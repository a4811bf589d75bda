"""What a datagram on a shared UDP socket is, from its first bytes (RFC 7983 §7 style).

The node's UDP socket carries STUN (RFC 8489: first two bits 00 and the magic cookie), TURN
ChannelData (RFC 8656 §12: first byte 0x40-0x4F) and warpgate frames (first byte 0xD0-0xDF, see
``warpgate.proto.frames``). Anything else is dropped and counted as ``unknown``.
"""

from __future__ import annotations

import enum

STUN_COOKIE = b"\x21\x12\xa4\x42"


class Class(enum.Enum):
    STUN = "stun"
    CHANNEL_DATA = "channel_data"
    FRAME = "frame"
    UNKNOWN = "unknown"


def classify(datagram: bytes) -> Class:
    if not datagram:
        return Class.UNKNOWN
    first = datagram[0]
    if first < 0x40:
        return Class.STUN if is_stun(datagram) else Class.UNKNOWN
    if 0x40 <= first <= 0x4F:
        return Class.CHANNEL_DATA
    if 0xD0 <= first <= 0xDF:
        return Class.FRAME
    return Class.UNKNOWN


def is_stun(datagram: bytes) -> bool:
    """A STUN message: 20-byte header, top bits 00, the magic cookie (RFC 8489 §5)."""
    return len(datagram) >= 20 and datagram[0] < 0x40 and datagram[4:8] == STUN_COOKIE
