"""TURN relays (RFC 8656) through aioice's client: an allocation that carries pipes.

    server = TurnServer.parse("turn://user:pass@203.0.113.10:3478?transport=udp")
    relay = await allocate(server, identity, on_incoming)     # RelayEndpoint
    relay.relayed                                             # ("203.0.113.10", 49160)

aioice's client (``aioice.turn``) does the protocol: the long-term credential dance (401, realm,
nonce, RFC 8489 §9.2), channel bindings (which install the permissions, RFC 8656 §12) on the first
datagram to a peer, allocation refreshes before expiry, and the deletion (a Refresh with lifetime
0) on close. A ``RelayEndpoint`` is a ``UdpEndpoint`` whose datagrams go through the allocation
instead of a socket: handshakes, simultaneous open and pipes work over it unchanged. When the
last pipe it made closes, it deletes the allocation, so nothing stays allocated on the server.
A pipe's keepalive (``timers.Liveness``) keeps the channel binding and permission fresh on both
sides, and closes the pipe with a reason when the relay dies.

Transports to the server: UDP, TCP (``?transport=tcp``, for networks that block UDP) and TLS
(``turns://``, RFC 8656 §3.1).

Credentials: static (``turn://user:pass@host``) or coturn's time-limited REST credentials
(``turn://name@host?secret=S``: ``use-auth-secret``; the username is ``expiry:name`` and the
password ``base64(HMAC-SHA1(S, username))``). They never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from aioice import stun
from aioice.turn import create_turn_endpoint

from warpgate.channels import IncomingHandler, UdpEndpoint
from warpgate.errors import AttemptFailed, LocalProtocolError
from warpgate.identity import Identity
from warpgate.pipe import Pipe
from warpgate.proto.handshake import Keys
from warpgate.udp import HostPort

log = logging.getLogger(__name__)

ALLOCATE_TIMEOUT = 1.0
"""An allocation that has not succeeded within this long is given up: the server is unreachable."""
REST_TTL = 24 * 3600
"""Lifetime of a REST username we make (seconds)."""
LIFETIME = 600
"""Requested allocation lifetime (RFC 8656 §7.2: the server may shorten it); refreshed at 5/6."""
CHANNEL_REFRESH = 240
"""Seconds after which a send re-binds its channel. A binding refreshes the permission, which
lives 300 s (RFC 8656 §9), so a side that keeps sending keeps its permission (aioice's default,
500 s, would let it lapse for 200 s of every 500)."""


class TurnError(AttemptFailed):
    """The relay could not be used; the reason starts with ``turn:`` and names no credential."""


@dataclass(frozen=True)
class TurnServer:
    host: str
    port: int = 3478
    transport: Literal["udp", "tcp"] = "udp"
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    """coturn's ``static-auth-secret``: credentials are made per allocation (REST API)."""
    tls: bool = False
    """``turns://``: TLS over TCP to the server (RFC 8656 §3.1), verified against ``ca`` or the
    system's trust store."""
    ca: str = ""
    """A CA file (PEM) to verify a ``turns://`` server with, instead of the system's store."""

    @classmethod
    def parse(cls, url: str) -> TurnServer:
        """``turn://user:pass@host[:port][?transport=udp|tcp]``, ``turn://name@host?secret=S``, or
        ``turns://user:pass@host[:5349][?ca=FILE]`` (TLS; the transport is TCP)."""
        parts = urlsplit(url)
        if parts.scheme not in ("turn", "turns") or not parts.hostname:
            raise LocalProtocolError(f"not a turn:// URL: {cls._safe(url)}")
        query = parse_qs(parts.query)
        tls = parts.scheme == "turns"
        transport = query.get("transport", ["tcp" if tls else "udp"])[0]
        if transport not in ("udp", "tcp"):
            raise LocalProtocolError(f"transport={transport!r}: udp or tcp")
        if tls and transport != "tcp":
            raise LocalProtocolError("turns:// runs over TCP (DTLS to the server is not supported)")
        try:
            port = parts.port or (5349 if tls else 3478)
        except ValueError:
            raise LocalProtocolError(f"bad port in {cls._safe(url)}") from None
        secret = query.get("secret", [""])[0]
        user = unquote(parts.username or "")
        password = unquote(parts.password or "")
        if not user or not (password or secret):
            raise LocalProtocolError(f"{cls._safe(url)}: needs user:password@ or name@...?secret=")
        ca = query.get("ca", [""])[0]
        return cls(parts.hostname, port, transport, user, password, secret, tls, ca)  # type: ignore[arg-type]

    @staticmethod
    def _safe(url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{parts.scheme}://***@{host}"

    def credentials(self, now: float | None = None) -> tuple[str, str]:
        """(username, password) for one allocation; REST ones expire ``REST_TTL`` from ``now``."""
        if not self.secret:
            return self.username, self.password
        username = f"{int((now if now is not None else time.time()) + REST_TTL)}:{self.username}"
        digest = hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest()
        return username, base64.b64encode(digest).decode()

    def __str__(self) -> str:
        if self.tls:
            return f"turns://{self.host}:{self.port}"
        return f"turn://{self.host}:{self.port}?transport={self.transport}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            return ssl.create_default_context(cafile=self.ca or None)
        except (OSError, ssl.SSLError) as exc:
            raise TurnError(f"turn: cannot load the CA file for {self}: {_reason(exc)}") from None


class RelayEndpoint(UdpEndpoint):
    """A ``UdpEndpoint`` over a TURN allocation; ``relayed`` is the address peers send to."""

    def __init__(self, identity: Identity, on_incoming: IncomingHandler | None, queue_size: int) -> None:
        super().__init__(identity, on_incoming, queue_size)
        self.server: TurnServer | None = None
        self._made = 0

    @property
    def relayed(self) -> HostPort:
        return self.local  # the transport's "sockname" is the relayed address

    def _make_pipe(self, peer: HostPort, peer_key: bytes, conn_id: bytes, purpose: str, keys: Keys) -> Pipe:
        pipe = super()._make_pipe(peer, peer_key, conn_id, purpose, keys)
        pipe.path = "relayed"
        self._made += 1
        close_raw = pipe._close_raw

        def release() -> None:
            close_raw()
            if not self.pipes:  # the allocation's last pipe: nothing stays allocated
                self.close()

        pipe._close_raw = release
        pipe.released = self._wait_released
        return pipe

    async def _wait_released(self) -> None:
        """Once the last pipe closed: until the server acknowledged the deletion (bounded)."""
        if not self.pipes:
            await _closed_within(self, ALLOCATE_TIMEOUT)

    def lost_reason(self, exc: Exception | None) -> str:
        # aioice ends the allocation when a refresh fails; over TCP, when the server hangs up
        if exc is not None:
            return f"turn: lost the connection to the server ({_reason(exc)})"
        return "turn: the allocation ended (the server closed the connection or stopped answering refreshes)"

    def error_received(self, exc: Exception) -> None:
        # a send through the relay failed (a channel binding was refused, the server went away)
        log.info("turn %s: %s", self.server, _reason(exc))
        for peer in list(self._dialing):
            self._fail_dial(peer, TurnError(f"turn: {_reason(exc)}"))


class _Transport(asyncio.DatagramTransport):
    """aioice's ``TurnTransport`` as a datagram transport (it has no ``is_closing``)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not self._closing:
            self._inner.sendto(data, addr)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._inner.close()  # deletes the allocation, then closes the socket

    def abort(self) -> None:
        """Stop waiting for the server to acknowledge the deletion: it is gone, and it frees the
        allocation itself when the lifetime ends (RFC 8656 §6). Without this, aioice retransmits
        the deletion to a dead server for about 40 s. (aioice keeps the deletion task private;
        pyproject pins the minor version for that reason.)"""
        self.close()
        task = getattr(self._inner, "_TurnTransport__close_task", None)
        if task is not None and not task.done():
            task.cancel()  # aioice's delete() closes the socket in its ``finally``

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)


class _Receiver(asyncio.DatagramProtocol):
    """What aioice delivers to: relayed datagrams, send errors, the end of the allocation."""

    def __init__(self, endpoint: RelayEndpoint) -> None:
        self.endpoint = endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.endpoint.connection_made(_Transport(transport))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.endpoint.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.endpoint.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint.connection_lost(exc)


async def allocate(
    server: TurnServer,
    identity: Identity,
    on_incoming: IncomingHandler | None = None,
    queue_size: int = 1024,
    *,
    timeout: float = ALLOCATE_TIMEOUT,
) -> RelayEndpoint:
    """Allocate a relayed address on ``server``; ``TurnError`` says why not (never a credential).

    A 437 (Allocation Mismatch: the server still holds an allocation on this 5-tuple, from an
    earlier socket that had the same port) is retried once from a fresh socket, as RFC 8656 §7.2
    advises."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for attempt in range(2):
        try:
            return await _allocate(server, identity, on_incoming, queue_size, deadline)
        except _Mismatch as exc:
            if attempt == 1:
                raise TurnError(f"turn: {server} refused the allocation: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


class _Mismatch(Exception):
    """437 from the server: try another 5-tuple."""


async def _allocate(
    server: TurnServer,
    identity: Identity,
    on_incoming: IncomingHandler | None,
    queue_size: int,
    deadline: float,
) -> RelayEndpoint:
    endpoint = RelayEndpoint(identity, on_incoming, queue_size)
    endpoint.server = server
    username, password = server.credentials()
    timeout = max(0.0, deadline - asyncio.get_running_loop().time())
    try:
        async with asyncio.timeout_at(deadline):
            await create_turn_endpoint(
                lambda: _Receiver(endpoint),
                (server.host, server.port),
                username,
                password,
                lifetime=LIFETIME,
                channel_refresh_time=CHANNEL_REFRESH,
                transport=server.transport,
                ssl=server.ssl_context(),
            )
    except TimeoutError:
        raise TurnError(f"turn: server unreachable ({server}: no answer within {timeout:.1f} s)") from None
    except stun.TransactionFailed as exc:
        if _code(exc) == 437:
            raise _Mismatch(_error_code(exc)) from None
        raise TurnError(f"turn: {server} refused the allocation: {_error_code(exc)}") from None
    except stun.TransactionTimeout:
        raise TurnError(f"turn: server unreachable ({server}: no answer)") from None
    except ssl.SSLError as exc:  # before OSError, its base: a TLS failure is not unreachability
        detail = getattr(exc, "verify_message", "") or exc.reason or type(exc).__name__
        raise TurnError(f"turn: TLS to {server} failed: {detail}") from None
    except (OSError, ConnectionError) as exc:
        raise TurnError(f"turn: server unreachable ({server}: {_reason(exc)})") from None
    log.info("turn: allocated %s:%d on %s", *endpoint.relayed, server)
    return endpoint


async def release(endpoint: RelayEndpoint) -> None:
    """Delete the allocation now (idempotent) and wait until its socket is closed."""
    endpoint.close()
    await _closed_within(endpoint, ALLOCATE_TIMEOUT)


async def _closed_within(endpoint: RelayEndpoint, timeout: float) -> None:
    """Wait (bounded) for the server to acknowledge the deletion; then give up on it."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(endpoint.closed)
    except TimeoutError:
        log.info("turn %s: deletion not acknowledged within %.1f s; abandoned", endpoint.server, timeout)
        transport = endpoint.transport
        if transport is not None:
            transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(endpoint.closed)


async def release_unused(endpoint: RelayEndpoint) -> None:
    """Release unless a pipe still uses the allocation (then closing that pipe releases it)."""
    if not endpoint.pipes:
        await release(endpoint)


def _code(exc: stun.TransactionFailed) -> int | None:
    code = exc.response.attributes.get("ERROR-CODE")
    return int(code[0]) if code else None


def _error_code(exc: stun.TransactionFailed) -> str:
    code = exc.response.attributes.get("ERROR-CODE")
    if not code:
        return "an error without a code"
    number, text = code[0], str(code[1])[:80]
    hint = {401: " (wrong credentials)", 437: " (allocation mismatch)", 486: " (allocation quota reached)"}
    extra = hint.get(number, "")
    if extra and extra.strip(" ()").lower() in text.lower():
        extra = ""  # the server said it already
    return f"{number} {text}{extra}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
