"""Stateless return-routability cookies for UDP handshakes, asked for only under load.

A HELLO from a forged source address would make a responder sign (CPU) and send a CHALLENGE to
a victim. HELLO padding (``handshake.MIN_HELLO``) already stops the amplification; cookies stop
the work. When more than ``threshold`` new handshakes per second arrive, the responder answers a
HELLO without a valid cookie with a small ``COOKIE`` and keeps no state; only a HELLO that comes
back with it, from the same address, gets a signature. This is WireGuard's "under load" cookie
reply (whitepaper §5.4.7), as DTLS's HelloVerifyRequest (RFC 9147 §5.1) and QUIC's Retry
(RFC 9000 §8.1) do it on every handshake; below the threshold no round trip is added.

    cookie = HMAC-SHA256(secret, peer ip | peer port | conn_id | share | key)[:16]

The secret is random and replaced every ``ROTATE`` seconds; the current and the previous one
are accepted. A cookie proves an address, not good faith: under load, one source IP (its ports
together) gets at most ``PER_SOURCE`` signed answers a second (``source_admits``), so a real
address cannot spend all of the node's signatures. Pure: time is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict

from warpgate.proto.handshake import COOKIE_SIZE, Hello

ROTATE = 120.0
PER_SOURCE = 8
"""Signed answers a second one source IP gets while the node is under load."""
MAX_SOURCES = 4096
THRESHOLD = 64.0
"""New UDP handshakes per second above which a responder asks for cookies."""


class Cookies:
    def __init__(self, now: float, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self._secrets = [os.urandom(32), os.urandom(32)]  # current, previous
        self._rotated = now
        self._window = now
        self._started = 0.0  # new handshakes in the current one-second window (decayed)
        self._sources: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """Under load: per source IP, (start of its one-second window, handshakes in it)."""

    def _rotate(self, now: float) -> None:
        if now - self._rotated >= ROTATE:
            self._secrets = [os.urandom(32), self._secrets[0]]
            self._rotated = now

    def under_load(self, now: float) -> bool:
        """Whether a new handshake must bring a cookie now."""
        self._decay(now)
        return self._started >= self.threshold

    def started(self, now: float) -> None:
        """A new handshake got a responder (counted towards the load)."""
        self._decay(now)
        self._started += 1

    def source_admits(self, host: str, now: float) -> bool:
        """Under load, whether ``host`` may have one more signed answer this second."""
        start, count = self._sources.get(host, (now, 0))
        if now - start >= 1.0:
            start, count = now, 0
        if count >= PER_SOURCE:
            return False
        self._sources[host] = (start, count + 1)
        self._sources.move_to_end(host)
        while len(self._sources) > MAX_SOURCES:
            self._sources.popitem(last=False)
        return True

    def _decay(self, now: float) -> None:
        elapsed = now - self._window
        if elapsed >= 1.0:
            self._started = self._started / 2 ** int(elapsed) if elapsed < 64 else 0.0
            self._window = now

    def _mac(self, secret: bytes, peer: tuple[str, int], hello: Hello) -> bytes:
        text = f"{peer[0]}|{peer[1]}|".encode() + hello.conn_id + hello.share + hello.key
        return hmac.new(secret, text, hashlib.sha256).digest()[:COOKIE_SIZE]

    def make(self, peer: tuple[str, int], hello: Hello, now: float) -> bytes:
        self._rotate(now)
        return self._mac(self._secrets[0], peer, hello)

    def valid(self, peer: tuple[str, int], hello: Hello, now: float) -> bool:
        self._rotate(now)
        if len(hello.cookie) != COOKIE_SIZE:
            return False
        return any(hmac.compare_digest(hello.cookie, self._mac(s, peer, hello)) for s in self._secrets)
