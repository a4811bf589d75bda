"""The record layer: every frame after the handshake is sealed (encrypted and authenticated).

AEAD: ChaCha20-Poly1305 (RFC 8439), as WireGuard uses, with the two keys the handshake derives
(``handshake.Keys``: one per direction). The nonce is the frame's sequence number (64 bits,
left-padded to 96), so a key never seals two frames under one nonce; ChaCha20-Poly1305 has no
usage limit a pipe could reach (RFC 9001 §6.6: more than 2^62 packets), so there is no rekeying.
The frame kind (and on UDP the sequence number) travel in clear but are authenticated as
associated data, so nothing that is not sealed with the peer's key is ever acted upon:

    UDP datagram   kind | seq (u64) | AEAD(payload)          aad = kind | seq
    TCP frame      length (u32) | kind | AEAD(payload)       aad = length | kind; seq implicit

TCP delivers in order, so its sequence number is implicit (as in TLS 1.3, RFC 8446 §5.3). UDP
may reorder, lose and duplicate, so each datagram carries its number and the receiver keeps a
sliding replay window (RFC 4303 §3.4.3; RFC 6479): a number seen before, or older than the
window, is dropped. The window moves only after a frame authenticates, so forged numbers cannot
push it. Pure code, no I/O: the pipe feeds it bytes.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from warpgate.errors import RemoteProtocolError
from warpgate.proto import frames
from warpgate.proto.frames import Kind

TAG_SIZE = 16
SEQ_SIZE = 8
UDP_OVERHEAD = 1 + SEQ_SIZE + TAG_SIZE
MAX_UDP_PAYLOAD = 65507 - UDP_OVERHEAD
"""The largest message a UDP pipe carries in one datagram (IPv4's limit minus the record)."""
WINDOW = 1024
"""UDP replay window, in sequence numbers (RFC 6479 uses 1024 and more for fast links)."""
_PAD = bytes(4)


class RecordError(RemoteProtocolError):
    """A frame that does not open: ``reason`` is the drop counter's name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _nonce(seq: int) -> bytes:
    return _PAD + seq.to_bytes(SEQ_SIZE, "big")


class ReplayWindow:
    """Which of the last ``size`` sequence numbers were seen (a bitmap below the highest)."""

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.top = -1
        self._bits = 0  # bit i: top - i was seen

    def check(self, seq: int) -> str | None:
        """Why ``seq`` must be refused (``replay``, ``too_old``), or None."""
        if seq > self.top:
            return None
        back = self.top - seq
        if back >= self.size:
            return "too_old"
        return "replay" if self._bits >> back & 1 else None

    def mark(self, seq: int) -> None:
        if seq > self.top:
            shift = seq - self.top
            self._bits = ((self._bits << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self.top = seq
        else:
            self._bits |= 1 << (self.top - seq)


class UdpSealer:
    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.seq = 0

    def seal(self, kind: Kind, payload: bytes = b"") -> bytes:
        if len(payload) > MAX_UDP_PAYLOAD:
            raise ValueError(f"datagram of {len(payload)} bytes exceeds {MAX_UDP_PAYLOAD}")
        seq = self.seq
        self.seq += 1
        header = bytes((kind,)) + seq.to_bytes(SEQ_SIZE, "big")
        return header + self._aead.encrypt(_nonce(seq), payload, header)


class UdpOpener:
    def __init__(self, key: bytes, window: int = WINDOW) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.window = ReplayWindow(window)

    def open(self, datagram: bytes) -> tuple[Kind, bytes]:
        """(kind, payload) of one sealed datagram; ``RecordError`` says why not."""
        if len(datagram) < UDP_OVERHEAD:
            raise RecordError("record_short", f"sealed datagram of {len(datagram)} bytes")
        kind, _ = frames.udp_parse(datagram[:1])
        header = datagram[: 1 + SEQ_SIZE]
        seq = int.from_bytes(header[1:], "big")
        refused = self.window.check(seq)
        if refused is not None:
            raise RecordError(refused, f"sequence number {seq}: {refused}")
        try:
            payload = self._aead.decrypt(_nonce(seq), datagram[1 + SEQ_SIZE :], header)
        except InvalidTag:
            raise RecordError("record_auth", "datagram does not authenticate") from None
        self.window.mark(seq)
        return kind, payload


class TcpSealer:
    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.seq = 0

    def seal(self, kind: Kind, payload: bytes = b"") -> tuple[bytes, bytes]:
        """(header, sealed payload): written one after the other, so a large payload is not copied
        once more to join them."""
        header = frames.tcp_header_for(kind, len(payload) + TAG_SIZE)
        sealed = self._aead.encrypt(_nonce(self.seq), payload, header)
        self.seq += 1
        return header, sealed


class TcpOpener:
    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.seq = 0

    def open(self, header: bytes, sealed: bytes) -> bytes:
        """The payload of the next frame; ``RecordError`` ends the stream (it cannot resync)."""
        try:
            payload = self._aead.decrypt(_nonce(self.seq), sealed, header)
        except InvalidTag:
            raise RecordError("record_auth", "frame does not authenticate") from None
        self.seq += 1
        return payload
