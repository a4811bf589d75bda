"""TCP and UDP channels: open or accept a raw channel, run the handshake, hand back a ``Pipe``.

This is the one place the engine touches sockets for pipes. Plugins reach it through
``AttemptContext.connect_tcp`` / ``connect_udp``; the node through ``serve_tcp`` and ``UdpEndpoint``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from warpgate.errors import AttemptFailed, HandshakeError, RemoteProtocolError
from warpgate.identity import Identity
from warpgate.pipe import HostPort, Pipe
from warpgate.proto import frames, handshake, timers
from warpgate.proto.address import Endpoint
from warpgate.proto.cookie import Cookies
from warpgate.proto.frames import Kind
from warpgate.proto.reflection import SYN_BYTES
from warpgate.proto.timers import Backoff
from warpgate.retry import Kick, retransmit
from warpgate.udp import UdpSocket, hostport

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0
"""An accepted channel that has not finished the handshake by then is dropped."""

# Called with (pipe, responder conn_id) for each authenticated incoming channel.
IncomingHandler = Callable[[Pipe, bytes], None]

Gate = Callable[[int], bool]
"""Asked with a send's size before it leaves; False: not sent (a peer's request has spent what
it may make us send to an unproven address, ``warpgate.proto.reflection``)."""
GATED_CONNECT = 3.0
"""Seconds a TCP connect a peer's request caused may take (its SYNs are what it costs)."""
NOT_SENT = "not dialled: the bound on what a request may make us send to an unproven address"


# -- TCP -------------------------------------------------------------------------------------


async def _read_handshake(reader: asyncio.StreamReader) -> bytes:
    kind, size = frames.tcp_header(await reader.readexactly(frames.HEADER_SIZE))
    if size > handshake.MAX_MESSAGE:  # before reading it: nothing large before authentication
        raise RemoteProtocolError(f"handshake frame of {size} bytes (at most {handshake.MAX_MESSAGE})")
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
    keys: handshake.Keys,
    queue_size: int,
) -> Pipe:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pipe = Pipe(
        "tcp",
        peer_key=peer_key,
        conn_id=conn_id,
        plugin=plugin,
        local=hostport(writer.get_extra_info("sockname")),
        remote=hostport(writer.get_extra_info("peername")),
        send_raw=writer.write,
        close_raw=writer.close,
        keys=keys,
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
    """Run the initiator handshake on an open TCP stream; closes it on failure.

    On a stream both ends opened at once (TCP simultaneous open, RFC 9293 §3.5) both send HELLO;
    the end whose key is greater answers the other's as responder (``handshake.yields``).
    """
    init = handshake.Initiator(identity, expected_key, conn_id, purpose)
    try:
        writer.write(frames.tcp_frame(Kind.HANDSHAKE, init.last))
        while not init.done:
            data = await _read_handshake(reader)
            msg = handshake.decode(data)
            if isinstance(msg, handshake.Hello):
                if msg.key != expected_key:
                    raise HandshakeError("reached the wrong peer: its key is not the one in the address")
                if handshake.yields(identity.public_key, msg.key):
                    return await _tcp_respond_to(reader, writer, identity, data, expected_key, queue_size)
                continue  # the peer yields to our HELLO
            reply = init.receive(data)
            if reply is not None:
                writer.write(frames.tcp_frame(Kind.HANDSHAKE, reply))
    except BaseException:
        writer.close()
        raise
    assert init.keys is not None
    return _tcp_pipe(
        reader,
        writer,
        peer_key=expected_key,
        conn_id=conn_id,
        plugin=purpose,
        keys=init.keys,
        queue_size=queue_size,
    )


async def _tcp_respond_to(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity: Identity,
    hello: bytes,
    expected_key: bytes,
    queue_size: int,
) -> Pipe:
    """Finish a simultaneous open as the responder, for the HELLO already read."""
    resp = handshake.Responder(identity)
    writer.write(frames.tcp_frame(Kind.HANDSHAKE, resp.receive(hello)))
    while not resp.done:
        writer.write(frames.tcp_frame(Kind.HANDSHAKE, resp.receive(await _read_handshake(reader))))
    if resp.peer_key != expected_key:
        raise HandshakeError("reached the wrong peer: its key is not the one in the address")
    return _responded(reader, writer, resp, queue_size)


def _responded(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, resp: handshake.Responder, queue_size: int
) -> Pipe:
    """The pipe of a stream whose handshake we answered: the peer's key, conn_id and purpose."""
    assert resp.hello is not None and resp.keys is not None
    return _tcp_pipe(
        reader,
        writer,
        peer_key=resp.peer_key,
        conn_id=resp.hello.conn_id,
        plugin=resp.hello.purpose,
        keys=resp.keys,
        queue_size=queue_size,
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
    gate: Gate | None = None,
) -> Pipe:
    """Connect, authenticate the peer, return a pipe. Expected failures raise ``AttemptFailed``;
    so does a ``gate`` that refuses the connect's SYNs (asked with ``SYN_BYTES``; the caller's
    gate knows how long the connect may retransmit)."""
    if gate is not None and not gate(SYN_BYTES):
        raise AttemptFailed(f"tcp {host}:{port}: {NOT_SENT}")
    try:
        async with asyncio.timeout(GATED_CONNECT if gate is not None else None):
            reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
    except TimeoutError:
        raise AttemptFailed(f"tcp {host}:{port}: no answer to the SYNs in {GATED_CONNECT:.0f} s") from None
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
    allow: Callable[[bytes], bool] | None = None,
) -> None:
    """Server side of one accepted TCP connection (``asyncio.start_server`` callback); a HELLO
    whose key ``allow`` refuses ends it before we sign anything."""
    resp = handshake.Responder(identity, allow=allow)
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            while not resp.done:
                writer.write(frames.tcp_frame(Kind.HANDSHAKE, resp.receive(await _read_handshake(reader))))
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, RemoteProtocolError) as exc:
        log.debug("incoming tcp %s dropped: %s", writer.get_extra_info("peername"), exc)
        writer.close()
        return
    pipe = _responded(reader, writer, resp, queue_size)
    on_incoming(pipe, pipe.conn_id)


# -- UDP -------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Dial:
    """One handshake this socket is dialling towards one peer address."""

    init: handshake.Initiator
    fut: asyncio.Future[Pipe]
    kick: Kick = field(default_factory=Kick)
    yielded: bool = False
    """The peer dialled us on the same path and our key is greater: we answer as responder."""
    heard: bool = False
    """Some handshake message arrived from the peer on this path."""


class UdpEndpoint(UdpSocket):
    """One UDP socket carrying any number of pipes, demultiplexed by remote address.

    It both dials (``connect``) and answers handshakes from unknown addresses. The node's
    listening socket is one of these; so is each ephemeral socket of a direct UDP attempt. When
    both ends dial each other on the same path at once (hole punching), the handshake's key order
    decides who answers (``handshake.yields``), so exactly one channel comes out of it.
    """

    def __init__(
        self, identity: Identity, on_incoming: IncomingHandler | None, queue_size: int = 1024
    ) -> None:
        super().__init__()
        self.identity = identity
        self.on_incoming = on_incoming
        self.queue_size = queue_size
        self.pipes: dict[HostPort, Pipe] = {}
        self.cookies = Cookies(asyncio.get_running_loop().time())
        """When new handshakes come faster than ``cookies.threshold`` a second, a HELLO must
        bring a cookie (``warpgate.proto.cookie``) before we sign anything."""
        self._responders: dict[HostPort, handshake.Responder] = {}
        self.allow: Callable[[bytes], bool] | None = None
        """The node's connection gate: a new HELLO from a key it refuses is dropped before any
        handshake work (``drops["not_allowed"]``)."""
        self._dialing: dict[HostPort, _Dial] = {}

    def connection_lost(self, exc: Exception | None) -> None:
        for pipe in list(self.pipes.values()):
            pipe._shutdown(self.lost_reason(exc))
        for dial in self._dialing.values():
            if not dial.fut.done():
                dial.fut.set_exception(AttemptFailed("udp socket closed"))
        super().connection_lost(exc)

    def lost_reason(self, exc: Exception | None) -> str:
        """Why this endpoint's pipes closed when the endpoint did."""
        return "the udp socket closed" + (f" ({exc})" if exc else "")

    def error_received(self, exc: Exception) -> None:
        # A connected socket (one dial) hears ICMP port unreachable: nobody listens there, so the
        # dial fails now instead of retransmitting until the race's deadline.
        if isinstance(exc, ConnectionRefusedError):
            for peer in list(self._dialing):
                self._fail_dial(peer, RemoteProtocolError("port unreachable (ICMP)"))
        super().error_received(exc)

    def frame_received(self, data: bytes, peer: HostPort) -> None:
        try:
            kind, payload = frames.udp_parse(data)
        except RemoteProtocolError:
            self.drops["malformed"] += 1
            return
        if kind is Kind.HANDSHAKE:
            if len(payload) > handshake.MAX_MESSAGE:
                self.drops["handshake_oversize"] += 1  # bounded before any parsing or signature
                return
            try:
                self._on_handshake(peer, payload)
            except RemoteProtocolError as exc:
                log.debug("udp handshake from %s:%s failed: %s", peer[0], peer[1], exc)
                self.drops["handshake"] += 1
                self._fail_dial(peer, exc)
            return
        if kind is Kind.PROBE:
            # random_probe: the peer's probe came in on a path we dial, so its NAT lets our HELLO
            # in now. Only a probe naming our dial's conn_id hurries it (a stranger cannot make us
            # send); anything else is counted and dropped.
            dial = self._dialing.get(peer)
            if dial is not None and payload == dial.init.hello.conn_id:
                dial.heard = True  # the path answers: our sends to it are no reflection
                dial.kick()
            else:
                self.drops["probe"] += 1
            return
        pipe = self.pipes.get(peer)
        if pipe is None:
            self.drops["no_pipe"] += 1
            return
        dropped = pipe._on_udp_datagram(data)
        if dropped is not None:
            self.drops[dropped] += 1

    def _on_handshake(self, peer: HostPort, payload: bytes) -> None:
        dial = self._dialing.get(peer)
        msg = handshake.decode(payload)
        if dial is not None:
            dial.heard = True
            if msg.conn_id != dial.init.hello.conn_id:
                # Another channel on this path (another plugin's dial riding a hole we punched):
                # answered on its own, never mixed into our handshake.
                dial = None
        if dial is not None and not dial.yielded:
            if not isinstance(msg, handshake.Hello):
                reply = dial.init.receive(payload)
                if reply is not None:
                    self.sendto(frames.udp_frame(Kind.HANDSHAKE, reply), peer)
                if dial.init.done and not dial.fut.done():
                    init = dial.init
                    assert init.keys is not None
                    dial.fut.set_result(
                        self._make_pipe(
                            peer, init.expected_key, init.hello.conn_id, init.hello.purpose, init.keys
                        )
                    )
                return
            # Simultaneous open: the peer dials us on the path we dial it on.
            if msg.key != dial.init.expected_key or not handshake.yields(self.identity.public_key, msg.key):
                dial.kick()  # the path is open now; our HELLO is the one that must get through
                return
            dial.yielded = True
        elif self.on_incoming is None and dial is None:
            self.drops["unsolicited"] += 1
            return
        resp = self._responders.get(peer)
        if resp is not None and isinstance(msg, handshake.Hello) and msg != resp.hello:
            if not resp.done:
                self.drops["handshake_busy"] += 1  # one handshake per path at a time
                return
            resp = None  # a new channel on a path whose last handshake is over
        if resp is None and isinstance(msg, handshake.Hello) and dial is None:
            if self.allow is not None and not self.allow(msg.key):
                self.drops["not_allowed"] += 1
                return
            # a new handshake from an address we do not dial: under load, prove the address first
            now = asyncio.get_running_loop().time()
            if self.cookies.under_load(now) and not self.cookies.valid(peer, msg, now):
                cookie = handshake.Cookie(msg.conn_id, self.cookies.make(peer, msg, now))
                self.sendto(frames.udp_frame(Kind.HANDSHAKE, handshake.encode(cookie)), peer)
                self.drops["hello_without_cookie"] += 1
                return
            if self.cookies.under_load(now) and not self.cookies.source_admits(peer[0], now):
                self.drops["hello_source_rate"] += 1  # a proved address, but its share is spent
                return
            self.cookies.started(now)
        if resp is None:
            resp = self._responders[peer] = handshake.Responder(self.identity)
            asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._expire_responder, peer, resp)
        was_done = resp.done
        self.sendto(frames.udp_frame(Kind.HANDSHAKE, resp.receive(payload)), peer)
        if not resp.done or was_done:
            return
        assert resp.hello is not None
        old = self.pipes.get(peer)
        if old is not None:
            # Only an authenticated channel from the same key replaces a live pipe on this path.
            if old.peer_key != resp.peer_key:
                self.drops["path_taken"] += 1
                return
            old._shutdown("replaced by a new channel from the same peer")
        assert resp.keys is not None
        new = self._make_pipe(peer, resp.peer_key, resp.hello.conn_id, resp.hello.purpose, resp.keys)
        new.answered = True
        if dial is not None and dial.yielded:
            if not dial.fut.done():
                dial.fut.set_result(new)
            return
        assert self.on_incoming is not None
        self.on_incoming(new, resp.hello.conn_id)

    def heard(self, peer: HostPort) -> bool:
        """Whether the handshake we are dialling towards ``peer`` has heard from it (a handshake
        message, or a probe naming its conn_id)."""
        dial = self._dialing.get(peer)
        return dial is not None and dial.heard

    def _expire_responder(self, peer: HostPort, resp: handshake.Responder) -> None:
        # Keep a finished responder for its lifetime so a retransmitted PROOF still gets DONE.
        if self._responders.get(peer) is resp:
            del self._responders[peer]

    def _fail_dial(self, peer: HostPort, exc: Exception) -> None:
        dial = self._dialing.get(peer)
        if dial is not None and not dial.fut.done():
            dial.fut.set_exception(AttemptFailed(f"udp {peer[0]}:{peer[1]}: {exc}"))

    def _make_pipe(
        self, peer: HostPort, peer_key: bytes, conn_id: bytes, purpose: str, keys: handshake.Keys
    ) -> Pipe:
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
            keys=keys,
            queue_size=self.queue_size,
        )
        self.pipes[peer] = pipe
        return pipe

    async def connect(
        self,
        peer: HostPort,
        *,
        expected_key: bytes,
        conn_id: bytes,
        purpose: str,
        backoff: Backoff = timers.HANDSHAKE,
        unclaimed: Callable[[Pipe], None] | None = None,
        gate: Gate | None = None,
    ) -> Pipe:
        """Dial ``peer`` from this socket; retransmits on ``backoff`` until the handshake ends.

        The caller bounds the time (the race's deadline); expected failures raise ``AttemptFailed``.
        If the peer dials this socket from ``peer`` at the same time, one of the two handshakes
        completes (key order) and its channel is returned either way. A channel completed in the
        same wake-up as this dial's cancellation goes to ``unclaimed`` (default: closed without a
        word): the peer may have picked it, and only the dialling plugin knows whether it must
        be kept. ``gate``: asked before each send with its size; a send it refuses is skipped
        (``drops["reflection_bound"]``) and the dial waits on for the peer's own packets.
        """
        if peer in self._dialing:
            raise AttemptFailed(f"udp {peer[0]}:{peer[1]}: already dialling from this socket")
        # One channel per path: the peer may have completed (or begun) its handshake towards us
        # on this very path already (it started punching first).
        existing = self.pipes.get(peer)
        if existing is not None and not existing.closed and existing.peer_key == expected_key:
            if existing.conn_id == conn_id:
                return existing
            # Another attempt's live pipe to this peer holds the path. A second handshake on it
            # would make the peer replace that pipe by ours (its rule for a restarted peer): a
            # loser of a race, or a callee still punching back, would kill the winner.
            self.drops["dial_path_busy"] += 1
            raise AttemptFailed(f"udp {peer[0]}:{peer[1]}: the path already carries a pipe to this peer")
        init = handshake.Initiator(self.identity, expected_key, conn_id, purpose)
        dial = _Dial(init, asyncio.get_running_loop().create_future())
        resp = self._responders.get(peer)
        if resp is not None and not resp.done and resp.hello is not None:
            # We are answering this peer's HELLO on this path: that handshake is ours too.
            dial.yielded = (resp.hello.key, resp.hello.conn_id) == (expected_key, conn_id)
        self._dialing[peer] = dial

        def send() -> None:
            if dial.yielded:
                return
            frame = frames.udp_frame(Kind.HANDSHAKE, dial.init.last)
            if gate is None or gate(len(frame)):
                self.sendto(frame, peer)
            else:
                self.drops["reflection_bound"] += 1

        try:
            return await retransmit(backoff, send, dial.fut, kick=dial.kick)
        except TimeoutError:
            raise AttemptFailed(f"udp {peer[0]}:{peer[1]}: no answer") from None
        except HandshakeError as exc:
            raise AttemptFailed(f"udp {peer[0]}:{peer[1]}: {exc}") from exc
        except BaseException:
            if dial.fut.done() and not dial.fut.cancelled() and dial.fut.exception() is None:
                pipe = dial.fut.result()  # made in the same wake-up as our cancellation
                if unclaimed is None:
                    pipe._shutdown("dial cancelled")
                else:
                    unclaimed(pipe)
            raise
        finally:
            del self._dialing[peer]


async def udp_connect(
    host: str,
    port: int,
    identity: Identity,
    *,
    expected_key: bytes,
    conn_id: bytes,
    purpose: str,
    queue_size: int = 1024,
    gate: Gate | None = None,
) -> Pipe:
    """Dial from a fresh ephemeral socket that the pipe then owns."""
    family_local = ("::", 0) if ":" in host else ("0.0.0.0", 0)
    try:
        ep = await UdpEndpoint.bind(family_local, identity, None, queue_size, remote=(host, port))
    except OSError as exc:
        raise AttemptFailed(f"udp {host}:{port}: cannot bind: {exc.strerror}") from exc
    return await udp_dial_from(
        ep, (host, port), expected_key=expected_key, conn_id=conn_id, purpose=purpose, gate=gate
    )


async def udp_dial_from(
    ep: UdpEndpoint,
    peer: HostPort,
    *,
    expected_key: bytes,
    conn_id: bytes,
    purpose: str,
    gate: Gate | None = None,
) -> Pipe:
    """Dial ``peer`` from a socket of its own that the pipe then owns (closed with it, or now if
    the dial fails)."""
    try:
        pipe = await ep.connect(peer, expected_key=expected_key, conn_id=conn_id, purpose=purpose, gate=gate)
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
    gate: Gate | None = None,
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
        gate=gate,
    )
