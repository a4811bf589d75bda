"""``UdpSocket``: one UDP socket and its demultiplexer.

Every datagram is sorted by its first bytes (``warpgate.proto.demux``): STUN answers go to the
transaction waiting for them (by transaction id), warpgate frames to ``frame_received`` (the pipe
layer overrides it), TURN ChannelData to ``channel_data_received`` once a relay uses the socket.
Whatever nobody waits for is dropped and counted in ``drops`` under a named reason.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import Any, TypeVar

from warpgate.proto import demux

log = logging.getLogger(__name__)

HostPort = tuple[str, int]
S = TypeVar("S", bound="UdpSocket")


def hostport(addr: Any) -> HostPort:
    """``(host, port)`` from a socket address (IPv6 adds flowinfo and scope id; a Unix socket has
    no port: ``("", 0)``)."""
    if not isinstance(addr, tuple):
        return ("", 0)
    return (str(addr[0]), int(addr[1]))


class UdpSocket(asyncio.DatagramProtocol):
    """A UDP socket with a demultiplexer. ``await UdpSocket.bind(("0.0.0.0", 0))``."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.stun_waiters: dict[bytes, asyncio.Future[bytes]] = {}
        """STUN transactions in flight on this socket, by transaction id (``warpgate.stun``)."""
        self.drops: Counter[str] = Counter()
        """Datagrams dropped, by reason: ``unknown``, ``stun_unexpected``, ``channel_data``, ..."""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.remote: HostPort | None = None
        """The one peer of a connected socket (``bind(..., remote=)``), else None."""

    @classmethod
    async def bind(
        cls: type[S], local: HostPort, *args: Any, remote: HostPort | None = None, **kwargs: Any
    ) -> S:
        """Bind to ``local``; with ``remote``, connect the socket to it, so that ICMP errors (port
        unreachable) reach ``error_received`` instead of being lost."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        _, proto = await loop.create_datagram_endpoint(
            lambda: cls(*args, **kwargs), local_addr=local, remote_addr=remote, family=family
        )
        proto.remote = remote
        return proto

    @property
    def local(self) -> HostPort:
        assert self.transport is not None
        return hostport(self.transport.get_extra_info("sockname"))

    @property
    def ignored(self) -> int:
        """Every datagram dropped, whatever the reason."""
        return sum(self.drops.values())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport here

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in self.stun_waiters.values():
            if not fut.done():
                fut.cancel()
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable, ...) arrive here on Linux; retransmission schedules cope.
        log.debug("udp %s: %s", self.local if self.transport else "?", exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def sendto(self, data: bytes, addr: HostPort) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.remote is not None:
            self.transport.sendto(data)  # connected: the kernel knows where (IPv6 needs no 4-tuple)
        else:
            self.transport.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        kind = demux.classify(data)
        if kind is demux.Class.FRAME:
            self.frame_received(data, hostport(addr))
        elif kind is demux.Class.STUN:
            waiter = self.stun_waiters.get(data[8:20])
            if waiter is not None and not waiter.done():
                waiter.set_result(data)
            else:
                self.drops["stun_unexpected"] += 1
        elif kind is demux.Class.CHANNEL_DATA:
            self.channel_data_received(data, hostport(addr))
        else:
            self.drops["unknown"] += 1

    def frame_received(self, data: bytes, peer: HostPort) -> None:
        """A warpgate frame; this socket carries no pipes, so it is dropped."""
        self.drops["frame_unexpected"] += 1

    def channel_data_received(self, data: bytes, peer: HostPort) -> None:
        """TURN ChannelData (RFC 8656 §12); no relay uses this socket yet."""
        self.drops["channel_data"] += 1
