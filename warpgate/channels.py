"""TCP and UDP channels: open or accept a raw channel, run the handshake, hand back a ``Pipe``.

This is the one place the engine touches sockets for pipes. Plugins reach it through
``AttemptContext.connect_tcp`` / ``connect_udp``; the node through ``serve_tcp`` and ``UdpEndpoint``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from warpgate.errors import AttemptFailed, HandshakeError, RemoteProtocolError
from warpgate.identity import Identity
from warpgate.pipe import HostPort, Pipe
from warpgate.proto import frames, handshake
from warpgate.proto.address import Endpoint
from warpgate.proto.frames import Kind
from warpgate.stun import is_stun

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0
"""An accepted channel that has not finished the handshake by then is dropped."""

# Called with (pipe, responder conn_id) for each authenticated incoming channel.
IncomingHandler = Callable[[Pipe, bytes], None]


def _hostport(addr: Any) -> HostPort:
    return (str(addr[0]), int(addr[1]))


# -- TCP -------------------------------------------------------------------------------------


async def _read_handshake(reader: asyncio.StreamReader) -> bytes:
    kind, size = frames.tcp_header(await reader.readexactly(frames.HEADER_SIZE))
    payload = await reader.readexactly(size)
    if kind is not Kind.HANDSHAKE:
        raise RemoteProtocolError(f"expected a handshake frame, got {kind.name}")
    return payload


def _tcp_pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    peer_key: bytes,
    conn_id: bytes,
    plugin: str,
    queue_size: int,
) -> Pipe:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pipe = Pipe(
        "tcp",
        peer_key=peer_key,
        conn_id=conn_id,
        plugin=plugin,
        local=_hostport(writer.get_extra_info("sockname")),
        remote=_hostport(writer.get_extra_info("peername")),
        send_raw=writer.write,
        close_raw=writer.close,
        queue_size=queue_size,
    )
    pipe._drain = writer.drain
    pipe._reader_task = asyncio.get_running_loop().create_task(pipe._read_tcp(reader))
    return pipe


async def tcp_initiate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity: Identity,
    *,
    expected_key: bytes,
    conn_id: bytes,
    purpose: str,
    queue_size: int = 1024,
) -> Pipe:
    """Run the initiator handshake on an open TCP stream; closes it on failure."""
    init = handshake.Initiator(identity, expected_key, conn_id, purpose, os.urandom(handshake.NONCE_SIZE))
    try:
        writer.write(frames.tcp_frame(Kind.HANDSHAKE, init.last))
        while not init.done:
            reply = init.receive(await _read_handshake(reader))
            if reply is not None:
                writer.write(frames.tcp_frame(Kind.HANDSHAKE, reply))
    except BaseException:
        writer.close()
        raise
    return _tcp_pipe(
        reader, writer, peer_key=expected_key, conn_id=conn_id, plugin=purpose, queue_size=queue_size
    )


async def tcp_connect(
    host: str,
    port: int,
    identity: Identity,
    *,
    expected_key: bytes,
    conn_id: bytes,
    purpose: str,
    local_addr: HostPort | None = None,
    queue_size: int = 1024,
) -> Pipe:
    """Connect, authenticate the peer, return a pipe. Expected failures raise ``AttemptFailed``."""
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
    except OSError as exc:
        raise AttemptFailed(f"tcp {host}:{port}: {exc.strerror or exc}") from exc
    try:
        return await tcp_initiate(
            reader,
            writer,
            identity,
            expected_key=expected_key,
            conn_id=conn_id,
            purpose=purpose,
            queue_size=queue_size,
        )
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise AttemptFailed(f"tcp {host}:{port}: connection lost during handshake") from exc
    except RemoteProtocolError as exc:
        raise AttemptFailed(f"tcp {host}:{port}: {exc}") from exc


async def tcp_respond(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity: Identity,
    on_incoming: IncomingHandler,
    queue_size: int = 1024,
) -> None:
    """Server side of one accepted TCP connection (``asyncio.start_server`` callback)."""
    resp = handshake.Responder(identity, os.urandom(handshake.NONCE_SIZE))
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            while not resp.done:
                writer.write(frames.tcp_frame(Kind.HANDSHAKE, resp.receive(await _read_handshake(reader))))
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, RemoteProtocolError) as exc:
        log.debug("incoming tcp %s dropped: %s", writer.get_extra_info("peername"), exc)
        writer.close()
        return
    assert resp.hello is not None
    pipe = _tcp_pipe(
        reader,
        writer,
        peer_key=resp.peer_key,
        conn_id=resp.hello.conn_id,
        plugin=resp.hello.purpose,
        queue_size=queue_size,
    )
    on_incoming(pipe, resp.hello.conn_id)


# -- UDP -------------------------------------------------------------------------------------


class UdpEndpoint(asyncio.DatagramProtocol):
    """One UDP socket carrying any number of pipes, demultiplexed by remote address.

    It both dials (``connect``) and answers handshakes from unknown addresses. The node's
    listening socket is one of these; so is each ephemeral socket of a direct UDP attempt.
    """

    def __init__(
        self, identity: Identity, on_incoming: IncomingHandler | None, queue_size: int = 1024
    ) -> None:
        self.identity = identity
        self.on_incoming = on_incoming
        self.queue_size = queue_size
        self.transport: asyncio.DatagramTransport | None = None
        self.pipes: dict[HostPort, Pipe] = {}
        self._responders: dict[HostPort, handshake.Responder] = {}
        self._dialing: dict[HostPort, tuple[handshake.Initiator, asyncio.Future[None]]] = {}
        self.ignored = 0
        """Datagrams dropped because they were malformed or unexpected."""
        self.stun_waiters: dict[bytes, asyncio.Future[bytes]] = {}
        """STUN transactions in flight on this socket, by transaction id (``warpgate.stun``)."""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def bind(
        cls, identity: Identity, local: HostPort, on_incoming: IncomingHandler | None, queue_size: int = 1024
    ) -> UdpEndpoint:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        _, proto = await loop.create_datagram_endpoint(
            lambda: cls(identity, on_incoming, queue_size), local_addr=local, family=family
        )
        return proto

    @property
    def local(self) -> HostPort:
        assert self.transport is not None
        return _hostport(self.transport.get_extra_info("sockname"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport here

    def connection_lost(self, exc: Exception | None) -> None:
        for pipe in list(self.pipes.values()):
            pipe._shutdown()
        for _, fut in self._dialing.values():
            if not fut.done():
                fut.set_exception(AttemptFailed("udp socket closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable, ...) arrive here on Linux; the retransmit timer copes.
        log.debug("udp %s: %s", self.local if self.transport else "?", exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def sendto(self, data: bytes, addr: HostPort) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        peer: HostPort = addr if len(addr) == 2 else (addr[0], addr[1])  # IPv6 adds flowinfo, scope
        if self.stun_waiters and is_stun(data):
            waiter = self.stun_waiters.get(data[8:20])
            if waiter is not None and not waiter.done():
                waiter.set_result(data)
            return
        try:
            kind, payload = frames.udp_parse(data)
        except RemoteProtocolError:
            self.ignored += 1
            return
        pipe = self.pipes.get(peer)
        if kind is Kind.HANDSHAKE:
            try:
                self._on_handshake(peer, payload, pipe)
            except RemoteProtocolError as exc:
                log.debug("udp handshake from %s:%s failed: %s", peer[0], peer[1], exc)
                self.ignored += 1
                self._fail_dial(peer, exc)
            return
        if pipe is None:
            self.ignored += 1
            return
        pipe._on_udp_frame(kind, payload)

    def _on_handshake(self, peer: HostPort, payload: bytes, pipe: Pipe | None) -> None:
        dialing = self._dialing.get(peer)
        if dialing is not None:
            init, fut = dialing
            reply = init.receive(payload)
            if reply is not None:
                self.sendto(frames.udp_frame(Kind.HANDSHAKE, reply), peer)
            if init.done and not fut.done():
                fut.set_result(None)
            return
        if self.on_incoming is None:
            self.ignored += 1
            return
        resp = self._responders.get(peer)
        if resp is None:
            if pipe is not None:
                # A HELLO from a peer that already has a pipe here: a new channel replaces the old one.
                pipe._shutdown()
            resp = self._responders[peer] = handshake.Responder(
                self.identity, os.urandom(handshake.NONCE_SIZE)
            )
            asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._expire_responder, peer, resp)
        was_done = resp.done
        self.sendto(frames.udp_frame(Kind.HANDSHAKE, resp.receive(payload)), peer)
        if resp.done and not was_done:
            assert resp.hello is not None
            new = self._make_pipe(peer, resp.peer_key, resp.hello.conn_id, resp.hello.purpose)
            self.on_incoming(new, resp.hello.conn_id)

    def _expire_responder(self, peer: HostPort, resp: handshake.Responder) -> None:
        # Keep a finished responder for its lifetime so a retransmitted PROOF still gets DONE.
        if self._responders.get(peer) is resp:
            del self._responders[peer]

    def _fail_dial(self, peer: HostPort, exc: Exception) -> None:
        dialing = self._dialing.get(peer)
        if dialing is not None and not dialing[1].done():
            dialing[1].set_exception(AttemptFailed(f"udp {peer[0]}:{peer[1]}: {exc}"))

    def _make_pipe(self, peer: HostPort, peer_key: bytes, conn_id: bytes, purpose: str) -> Pipe:
        def close_raw() -> None:
            if self.pipes.get(peer) is pipe:
                del self.pipes[peer]

        pipe = Pipe(
            "udp",
            peer_key=peer_key,
            conn_id=conn_id,
            plugin=purpose,
            local=self.local,
            remote=peer,
            send_raw=lambda data: self.sendto(data, peer),
            close_raw=close_raw,
            queue_size=self.queue_size,
        )
        self.pipes[peer] = pipe
        return pipe

    async def connect(self, peer: HostPort, *, expected_key: bytes, conn_id: bytes, purpose: str) -> Pipe:
        """Dial ``peer`` from this socket; retransmits with backoff until the handshake ends.

        The caller bounds the time (the race's deadline); expected failures raise ``AttemptFailed``.
        """
        if peer in self._dialing:
            raise AttemptFailed(f"udp {peer[0]}:{peer[1]}: already dialling from this socket")
        init = handshake.Initiator(
            self.identity, expected_key, conn_id, purpose, os.urandom(handshake.NONCE_SIZE)
        )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dialing[peer] = (init, fut)
        try:
            rto = 0.1  # RFC 8489 §6.2.1 starts at 500 ms; a LAN-to-LAN lab wants faster first retries
            while not fut.done():
                self.sendto(frames.udp_frame(Kind.HANDSHAKE, init.last), peer)
                try:
                    async with asyncio.timeout(rto):
                        await asyncio.shield(fut)
                except TimeoutError:
                    rto = min(rto * 2, 1.6)
            try:
                fut.result()
            except HandshakeError as exc:
                raise AttemptFailed(f"udp {peer[0]}:{peer[1]}: {exc}") from exc
        finally:
            del self._dialing[peer]
        return self._make_pipe(peer, expected_key, conn_id, purpose)


async def udp_connect(
    host: str,
    port: int,
    identity: Identity,
    *,
    expected_key: bytes,
    conn_id: bytes,
    purpose: str,
    queue_size: int = 1024,
) -> Pipe:
    """Dial from a fresh ephemeral socket that the pipe then owns."""
    family_local = ("::", 0) if ":" in host else ("0.0.0.0", 0)
    try:
        ep = await UdpEndpoint.bind(identity, family_local, None, queue_size)
    except OSError as exc:
        raise AttemptFailed(f"udp {host}:{port}: cannot bind: {exc.strerror}") from exc
    try:
        pipe = await ep.connect((host, port), expected_key=expected_key, conn_id=conn_id, purpose=purpose)
    except BaseException:
        ep.close()
        raise
    inner_close = pipe._close_raw

    def close_all() -> None:
        inner_close()
        ep.close()

    pipe._close_raw = close_all
    return pipe


async def dial(
    endpoint: Endpoint,
    identity: Identity,
    *,
    expected_key: bytes,
    conn_id: bytes,
    purpose: str,
    queue_size: int = 1024,
) -> Pipe:
    """Open and authenticate a channel to one advertised endpoint, over its transport."""
    connect = tcp_connect if endpoint.proto == "tcp" else udp_connect
    return await connect(
        endpoint.host,
        endpoint.port,
        identity,
        expected_key=expected_key,
        conn_id=conn_id,
        purpose=purpose,
        queue_size=queue_size,
    )
