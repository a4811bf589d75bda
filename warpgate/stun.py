"""STUN Binding transactions (RFC 8489 §5) over UDP through a shared socket, and over TCP.

The codec is aioice's (``aioice.stun``). A UDP transaction goes through any socket that keeps a
table of waiting transactions (the node's ``UdpEndpoint`` does: its demultiplexer hands STUN
answers to it) and retransmits on ``warpgate.proto.timers.STUN``. A TCP transaction opens its own
connection, optionally from a given local port with SO_REUSEADDR + SO_REUSEPORT, so that it can
share the node's listening port (RFC 5780's TCP mapping test; TCP hole punching).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import Protocol

from aioice import stun

from warpgate.errors import LocalProtocolError, WarpgateError
from warpgate.proto.timers import STUN, Backoff
from warpgate.retry import retransmit

HostPort = tuple[str, int]
MAX_TCP_MESSAGE = 2048
"""A Binding response is a few dozen bytes; anything longer than this is not one we asked for."""


class StunError(WarpgateError):
    """No usable answer from a STUN server."""


class StunSocket(Protocol):
    """What a UDP transaction needs of a socket: a way to send, a table for answers by transaction id."""

    stun_waiters: dict[bytes, asyncio.Future[bytes]]

    def sendto(self, data: bytes, addr: HostPort) -> None: ...


@dataclass(frozen=True, slots=True)
class Binding:
    mapped: HostPort
    """XOR-MAPPED-ADDRESS: our address as the server saw it."""
    other: HostPort | None
    """OTHER-ADDRESS (RFC 5780 §7.4), when the server has a second address."""
    rtt: float
    """Seconds from the last send to the answer."""


def parse_server(text: str) -> HostPort:
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port or (host.count(":") and not host.endswith("]")):
        return text.strip("[]"), 3478
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise LocalProtocolError(f"STUN server {text!r} is not host[:port]")
    return host.strip("[]"), int(port)


def _request(change: int) -> stun.Message:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    if change:
        msg.attributes["CHANGE-REQUEST"] = change
    return msg


def _parse(raw: bytes, server: HostPort, rtt: float) -> Binding:
    try:
        answer = stun.parse_message(raw)
        host, port = answer.attributes["XOR-MAPPED-ADDRESS"]
        other = answer.attributes.get("OTHER-ADDRESS")
    except (ValueError, KeyError, TypeError, struct.error) as exc:  # struct: a truncated attribute
        raise StunError(f"malformed answer from STUN server {server[0]}:{server[1]}") from exc
    if answer.message_class != stun.Class.RESPONSE:
        raise StunError(f"STUN server {server[0]}:{server[1]} answered with an error")
    return Binding((str(host), int(port)), (str(other[0]), int(other[1])) if other else None, rtt)


async def udp_binding(
    sock: StunSocket, server: HostPort, *, change: int = 0, backoff: Backoff = STUN
) -> Binding:
    """One Binding transaction through ``sock``; ``StunError`` when the schedule gives up."""
    request = _request(change)
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()
    sock.stun_waiters[request.transaction_id] = fut
    data = bytes(request)
    last = loop.time()

    def send() -> None:
        nonlocal last
        last = loop.time()
        sock.sendto(data, server)

    try:
        raw = await retransmit(backoff, send, fut)
    except TimeoutError:
        raise StunError(f"no answer from STUN server {server[0]}:{server[1]}") from None
    finally:
        sock.stun_waiters.pop(request.transaction_id, None)
    return _parse(raw, server, loop.time() - last)


def reusable_tcp_socket(local: HostPort) -> socket.socket:
    """A TCP socket bound to ``local`` that may share the port with a listener (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.setblocking(False)
        s.bind(local)
    except OSError:
        s.close()
        raise
    return s


async def tcp_binding(
    server: HostPort, *, local: HostPort, timeout: float = 2.0, keep: list[socket.socket] | None = None
) -> Binding:
    """Binding over a TCP connection from ``local`` (RFC 8489 §6.2.2).

    With ``keep``, the connected socket is appended to it and left open (the mapping it holds stays
    alive while later tests run); otherwise it is closed.
    """
    loop = asyncio.get_running_loop()
    try:
        s = reusable_tcp_socket(local)
    except OSError as exc:
        raise StunError(f"cannot bind {local[0]}:{local[1]} for TCP STUN: {exc.strerror}") from exc
    # Closed with a reset, not a FIN: no TIME_WAIT is left on (our port, server), which would make
    # the next node that gets this port fail to connect to the same server (EADDRNOTAVAIL) and
    # read that as TCP being blocked.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    started = loop.time()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(s, server)
            await loop.sock_sendall(s, bytes(_request(0)))
            head = await _recv_exact(loop, s, 20)
            size = int.from_bytes(head[2:4], "big")
            if size > MAX_TCP_MESSAGE:
                raise StunError(f"STUN server {server[0]}:{server[1]} sent {size} bytes")
            raw = head + await _recv_exact(loop, s, size)
        binding = _parse(raw, server, loop.time() - started)
    except (OSError, TimeoutError) as exc:
        s.close()
        raise StunError(f"no TCP answer from STUN server {server[0]}:{server[1]}: {exc!r}") from None
    except BaseException:
        s.close()
        raise
    if keep is not None:
        keep.append(s)
    else:
        s.close()
    return binding


async def _recv_exact(loop: asyncio.AbstractEventLoop, s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = await loop.sock_recv(s, n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf
