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
are accepted. Pure: time is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from warpgate.proto.handshake import COOKIE_SIZE, Hello

ROTATE = 120.0
THRESHOLD = 64.0
"""New UDP handshakes per second above which a responder asks for cookies."""


class Cookies:
    def __init__(self, now: float, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self._secrets = [os.urandom(32), os.urandom(32)]  # current, previous
        self._rotated = now
        self._window = now
        self._started = 0.0  # new handshakes in the current one-second window (decayed)

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
