"""``Pipe``: one authenticated channel to a peer, the same interface over TCP and UDP.

Receiving works through subscriptions. Every subscription has a bounded inbox; each incoming
message goes to every subscription whose filter matches. ``SUB_ALL`` (everything) is subscribed
when the pipe is made; unsubscribe it if you only read filtered subscriptions.

Overflow policy (an inbox holds ``queue_size`` messages, default 1024):

- TCP: the pipe stops reading the socket until the full inbox has room. Nothing is lost; the
  peer's ``send`` slows down through TCP flow control.
- UDP: the oldest message of the full inbox is dropped and counted in ``pipe.dropped``. UDP makes
  no delivery promise either, and a stalled reader must not stall the node's shared socket.

An inbox is full at ``queue_size`` messages or ``INBOX_BYTES`` bytes, whichever comes first, so
a peer's large messages into a pipe nobody reads cost bounded memory; and all the pipes of a
node share one budget (``warpgate.budget``, 64 MiB, TCP frames being read included): when it is
short, the pipe holding the most unread bytes is closed to make room, unless the one asking
holds as much (then it waits, or a UDP message is dropped).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from warpgate.budget import InboxBudget
from warpgate.errors import PipeClosed, RemoteProtocolError
from warpgate.identity import node_id_of
from warpgate.proto import frames, record, timers
from warpgate.proto.frames import Kind
from warpgate.proto.handshake import Keys
from warpgate.proto.timers import Action, Liveness
from warpgate.retry import retransmit

log = logging.getLogger(__name__)

HostPort = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Sub:
    """A subscription: messages matching ``pattern`` (a bytes regex, searched) from ``peer``."""

    pattern: bytes | None = None
    peer: HostPort | None = None

    def matches(self, data: bytes, peer: HostPort) -> bool:
        if self.peer is not None and (self.peer[0], self.peer[1]) != (peer[0], peer[1]):
            return False
        return self.pattern is None or re.search(self.pattern, data) is not None


SUB_ALL = Sub()
_EOF = object()


INBOX_BYTES = 8 * 1024 * 1024
"""Bytes an inbox holds at most (besides ``queue_size`` messages); one larger message is still
taken into an empty inbox (a TCP frame may carry up to 16 MiB)."""


class _Inbox:
    def __init__(self, maxsize: int, owner: Pipe | None = None, max_bytes: int = INBOX_BYTES) -> None:
        self.owner = owner
        """The pipe whose node's inbox budget (``warpgate.budget``) this inbox draws on."""
        self.items: deque[bytes] = deque()
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.size = 0  # bytes held
        self.closed = False
        self.reason = "pipe closed"
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def _wake(self, attr: str) -> None:
        fut = getattr(self, attr)
        if fut is not None and not fut.done():
            fut.set_result(None)
        setattr(self, attr, None)

    def _full_for(self, item: bytes) -> bool:
        return bool(self.items) and (
            len(self.items) >= self.maxsize or self.size + len(item) > self.max_bytes
        )

    def _budget(self) -> InboxBudget | None:
        return None if self.owner is None else self.owner._budget

    def _refund(self, n: int) -> None:
        budget = self._budget()
        if budget is not None and self.owner is not None:
            budget.refund(self.owner, n)

    def put_nowait(self, item: bytes) -> int:
        """Append; while full (messages or bytes), drop the oldest. Returns how many were dropped
        (the new one too, when the node's inbox budget has no room for it)."""
        budget = self._budget()
        if budget is not None and self.owner is not None and not budget.try_take(self.owner, len(item)):
            return 1
        dropped = 0
        while self._full_for(item):
            old = self.items.popleft()
            self.size -= len(old)
            self._refund(len(old))
            dropped += 1
        self.items.append(item)
        self.size += len(item)
        self._wake("_readable")
        return dropped

    async def put(self, item: bytes, *, charged: bool = False) -> None:
        """Append, waiting for room (in this inbox, then in the node's budget unless the item is
        ``charged`` to it already)."""
        while self._full_for(item) and not self.closed:
            self._writable = asyncio.get_running_loop().create_future()
            await self._writable
        budget = self._budget()
        if budget is not None and self.owner is not None and not charged:
            await budget.take(self.owner, len(item))  # PipeClosed: the pipe went meanwhile
        self.items.append(item)
        self.size += len(item)
        self._wake("_readable")

    async def get(self) -> bytes:
        while not self.items:
            if self.closed:
                raise PipeClosed(self.reason)
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
        item = self.items.popleft()
        self.size -= len(item)
        self._refund(len(item))
        self._wake("_writable")
        return item

    def discard(self) -> int:
        """Drop every unread message (an evicted pipe's); returns how many."""
        count = len(self.items)
        self._refund(self.size)
        self.items.clear()
        self.size = 0
        return count

    def close(self, reason: str) -> None:
        self.closed = True
        self.reason = reason
        self._wake("_readable")
        self._wake("_writable")


class Pipe:
    """An authenticated channel. Made by plugins through ``AttemptContext``; never built by users."""

    def __init__(
        self,
        proto: Literal["tcp", "udp"],
        *,
        peer_key: bytes,
        conn_id: bytes,
        plugin: str,
        local: HostPort,
        remote: HostPort,
        send_raw: Callable[[bytes], None],
        close_raw: Callable[[], None],
        keys: Keys,
        queue_size: int = 1024,
        path: str = "direct",
    ) -> None:
        self.proto = proto
        self.peer_key = peer_key
        self.peer_id = node_id_of(peer_key)
        self.conn_id = conn_id
        self.plugin = plugin
        self.local = local
        self.remote = remote
        self.path = path
        self.released: Callable[[], Awaitable[None]] | None = None
        """Awaited at the end of ``close()``: what the transport frees on the way out (bounded)."""
        self.dropped = 0
        self._send_raw = send_raw
        # the record layer (warpgate.proto.record): every frame sealed with the handshake's keys
        self._udp_seal = record.UdpSealer(keys.send) if proto == "udp" else None
        self._udp_open = record.UdpOpener(keys.recv) if proto == "udp" else None
        self._tcp_seal = record.TcpSealer(keys.send) if proto == "tcp" else None
        self._tcp_open = record.TcpOpener(keys.recv) if proto == "tcp" else None
        self._close_raw = close_raw
        self._queue_size = queue_size
        self._budget: InboxBudget | None = None
        """The node's inbox budget, set when the node takes the pipe (``Node.track``)."""
        self._subs: dict[Sub, _Inbox] = {SUB_ALL: _Inbox(queue_size, self)}
        self._closed = False
        self._drain: Callable[[], object] | None = None
        self._on_nominated: Callable[[Pipe], None] | None = None
        self.nominated = False
        """The dialling side picked this pipe (set on the side that accepts it)."""
        self.chosen = False
        """We picked this pipe (set on the dialling side by ``nominate``)."""
        self._nominate_ack: asyncio.Future[None] | None = None
        self._nominate_task: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._heard = 0  # frames received; the liveness watch compares it between wake-ups
        self._stalled = False
        """The reader waits for room (a full inbox, the node's budget): it hears nothing because
        it reads nothing, so silence means nothing (a slow reader is not a silent peer)."""
        self._heard_waiter: asyncio.Future[None] | None = None
        self.answered = False
        """We finished this channel's handshake as responder (on UDP): the peer's initiator holds
        the channel only once our last message reached it, which nothing has confirmed yet."""
        self.close_reason: str | None = None
        """Why the pipe closed: by us, by the peer, a silent peer, a lost transport."""
        self.on_closed: Callable[[Pipe], None] | None = None
        self.on_settled: Callable[[Pipe], None] | None = None
        """Called once when the pipe is nominated or chosen (it no longer waits for that)."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        where = f"{self.remote[0]}:{self.remote[1]}"
        return f"<Pipe {self.proto} {self.plugin} peer={self.peer_id[:8]} {where} {state}>"

    @property
    def on_nominated(self) -> Callable[[Pipe], None] | None:
        """Set by the accepting side: called once when the dialling side picks this pipe.

        Set after the nomination already arrived (a punched channel can be nominated by the peer
        before the local plugin has handed it on), it is called at once: no nomination is lost.
        """
        return self._on_nominated

    @on_nominated.setter
    def on_nominated(self, callback: Callable[[Pipe], None] | None) -> None:
        self._on_nominated = callback
        if callback is not None and self.nominated and not self._closed:
            callback(self)

    # -- user API ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, sub: Sub) -> Sub:
        if sub not in self._subs:
            self._subs[sub] = _Inbox(self._queue_size, self)
            if self._closed:
                self._subs[sub].close(self._closed_message())
        return sub

    def unsubscribe(self, sub: Sub) -> None:
        inbox = self._subs.pop(sub, None)
        if inbox is not None:
            inbox.close("unsubscribed")

    @property
    def family(self) -> str:
        """``ipv6`` or ``ipv4``: the address family of the path to the peer (a relayed pipe's: of
        the relay)."""
        return "ipv6" if ":" in self.remote[0] else "ipv4"

    async def send(self, data: bytes) -> None:
        """Send one message; the peer's ``recv`` returns exactly these bytes."""
        if self._closed:
            raise PipeClosed("send on a closed pipe")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"send takes bytes, not {type(data).__name__}")
        if self._tcp_seal is not None:
            header, sealed = self._tcp_seal.seal(Kind.DATA, bytes(data))
            if len(sealed) > 4096:  # two writes beat copying a large payload behind its header
                self._send_raw(header)
                self._send_raw(sealed)
            else:
                self._send_raw(header + sealed)
            if self._drain is not None:
                await self._drain()  # type: ignore[misc]
        else:
            assert self._udp_seal is not None
            self._send_raw(self._udp_seal.seal(Kind.DATA, bytes(data)))

    async def recv(self, sub: Sub = SUB_ALL, timeout: float | None = None) -> bytes:
        """Next message of ``sub`` (subscribed on first use). ``TimeoutError`` after ``timeout`` s;
        ``PipeClosed`` (saying why) once the pipe is closed and the inbox is empty; a silent
        peer closes the pipe (``keep_alive``), so without a timeout this still never hangs."""
        inbox = self._subs.get(sub) or self._subs[self.subscribe(sub)]
        if timeout is None:
            return await inbox.get()
        async with asyncio.timeout(timeout):
            return await inbox.get()

    async def close(self, reason: str = "closed by us") -> None:
        """Close the pipe and tell the peer. Idempotent (a second call still waits for the
        transport to be released, e.g. after the peer closed first)."""
        if self._closed:
            if self._watch_task is not None and self._watch_task is not asyncio.current_task():
                await asyncio.gather(self._watch_task, return_exceptions=True)
            if self.released is not None:
                await self.released()
            return
        try:
            self._send_raw(self._control(Kind.CLOSE))
        except OSError as exc:
            log.debug("close frame not sent on %r: %s", self, exc)
        self._shutdown(reason)
        for task in (self._reader_task, self._watch_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.released is not None:
            await self.released()  # e.g. a relay's allocation deleted on the server

    async def __aenter__(self) -> Pipe:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- plumbing used by the node and plugins ----------------------------------------------

    def keep_alive(self, policy: Liveness) -> None:
        """Ping the peer when it is silent; close the pipe when it stays silent (``Liveness``)."""
        if self._watch_task is None and not self._closed:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch(policy))

    async def _watch(self, policy: Liveness) -> None:
        loop = asyncio.get_running_loop()
        watch = policy.watch(loop.time())
        seen = self._heard
        while not self._closed:
            await asyncio.sleep(max(0.0, watch.get_timer() - loop.time()))
            now = loop.time()
            if self._heard != seen or self._stalled:  # heard since the last wake-up, or not reading
                seen = self._heard
                watch.heard(now)
            action = watch.handle_timer(now)
            if action is Action.SEND:
                try:
                    self._send_raw(self._control(Kind.PING))
                except OSError as exc:
                    log.debug("%r: ping not sent: %s", self, exc)
            elif action is Action.GIVE_UP:
                via = "the relay or the peer" if self.path == "relayed" else "the peer"
                log.info("%r: closing, %s was silent for %.0f s", self, via, policy.dead)
                self._shutdown(f"{via} was silent for {policy.dead:.0f} s")
                return

    def nominate(self) -> None:
        """Tell the peer this is the pipe we chose (it then reaches the peer's ``accept()``).

        On UDP the NOMINATE frame may be lost, so it is repeated in the background until
        acknowledged; the first DATA frame also counts as nomination on the far side, so a lost
        NOMINATE never loses a message.
        """
        self.chosen = True
        self._settle()
        if self.proto == "tcp":
            self._send_raw(self._control(Kind.NOMINATE))
            return
        loop = asyncio.get_running_loop()
        self._nominate_ack = loop.create_future()
        self._nominate_task = loop.create_task(self._repeat_nominate(self._nominate_ack))

    async def _repeat_nominate(self, ack: asyncio.Future[None]) -> None:
        def send() -> None:
            if not self._closed:
                self._send_raw(self._control(Kind.NOMINATE))

        try:
            await retransmit(timers.NOMINATE, send, ack)
        except TimeoutError:
            log.debug("%r: nomination never acknowledged", self)

    async def confirm(self, backoff: timers.Backoff = timers.PUNCH) -> None:
        """Return once the peer has sent an authenticated frame on this pipe; PING until then.

        The controlling side's check (RFC 8445 §7.3.1.4, a triggered check): a channel we only
        answered is valid for nomination once a round trip of ours succeeds on it, because over
        NATs whose paths differ by direction the peer may have completed another channel and
        never this one. ``TimeoutError`` when ``backoff`` gives up."""
        if self._closed:
            raise PipeClosed(self._closed_message())
        if self._heard:
            return
        loop = asyncio.get_running_loop()
        self._heard_waiter = waiter = loop.create_future()

        def send() -> None:
            if not self._closed:
                self._send_raw(self._control(Kind.PING))

        try:
            await retransmit(backoff, send, waiter)
        finally:
            self._heard_waiter = None

    def _deliver_now(self, data: bytes) -> None:
        for sub, inbox in self._subs.items():
            if sub.matches(data, self.remote):
                self.dropped += inbox.put_nowait(data)

    async def _deliver(self, data: bytes, *, charged: bool = False) -> bool:
        """Into every matching inbox, waiting for room. ``charged``: the node's budget holds the
        bytes already (a TCP frame's, charged before it was read), and the first inbox takes that
        charge over; returns whether one did."""
        for sub, inbox in list(self._subs.items()):
            if sub.matches(data, self.remote):
                await inbox.put(data, charged=charged)
                if charged:
                    return True
        return False

    def _on_control(self, kind: Kind) -> None:
        if kind is Kind.CLOSE:
            self._shutdown("closed by the peer")
        elif kind is Kind.PING:
            self._send_raw(self._control(Kind.PONG))
        elif kind is Kind.NOMINATE:
            if self.proto == "udp":
                self._send_raw(self._control(Kind.NOMINATE_ACK))
            self._mark_nominated()
        elif kind is Kind.NOMINATE_ACK and self._nominate_ack is not None and not self._nominate_ack.done():
            self._nominate_ack.set_result(None)

    def _settle(self) -> None:
        if self.on_settled is not None:
            settled, self.on_settled = self.on_settled, None
            settled(self)

    def _mark_nominated(self) -> None:
        if not self.nominated:
            self.nominated = True
            self._settle()
            if self._on_nominated is not None:
                self._on_nominated(self)

    def _control(self, kind: Kind) -> bytes:
        """A sealed control frame (no payload) for this pipe's transport."""
        if self._tcp_seal is not None:
            return b"".join(self._tcp_seal.seal(kind))
        assert self._udp_seal is not None
        return self._udp_seal.seal(kind)

    def _on_udp_datagram(self, datagram: bytes) -> str | None:
        """One datagram from the peer's address; returns the drop reason if it does not open.
        Only a sealed frame counts (as heard, as data, as a CLOSE): a spoofed one changes nothing."""
        assert self._udp_open is not None
        try:
            kind, payload = self._udp_open.open(datagram)
        except record.RecordError as exc:
            return exc.reason
        except RemoteProtocolError:
            return "malformed"
        self._heard += 1
        if self._heard_waiter is not None and not self._heard_waiter.done():
            self._heard_waiter.set_result(None)
        if kind is Kind.DATA:
            self._mark_nominated()
            self._deliver_now(payload)
        elif kind is Kind.HANDSHAKE:
            return "sealed_handshake"
        else:
            self._on_control(kind)
        return None

    async def _read_tcp(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(frames.HEADER_SIZE)
                kind, size = frames.tcp_header(header)
                budget, charged = self._budget, 0
                if budget is not None and size:
                    self._stalled = True
                    try:
                        await budget.take(self, size, flight=True)  # the frame's body is held from here on
                    finally:
                        self._stalled = False
                    charged = size
                try:
                    sealed = await reader.readexactly(size) if size else b""
                    if kind is Kind.HANDSHAKE:
                        raise RemoteProtocolError("handshake frame after the handshake")
                    assert self._tcp_open is not None
                    payload = self._tcp_open.open(header, sealed)
                    self._heard += 1
                    if budget is not None and charged:
                        budget.landed(self, size)
                        budget.refund(self, size - len(payload))  # the record's overhead
                        charged = len(payload)
                    if kind is Kind.DATA:
                        self._mark_nominated()
                        self._stalled = True
                        try:
                            took = await self._deliver(payload, charged=bool(charged))
                        finally:
                            self._stalled = False
                        charged = 0 if took else charged
                finally:
                    if budget is not None and charged:
                        budget.landed(self, charged)
                        budget.refund(self, charged)
                if kind is not Kind.DATA:
                    self._on_control(kind)
                    if kind is Kind.CLOSE:
                        return
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.debug("%r: connection ended: %s", self, exc)
            self._shutdown("the connection ended")
        except RemoteProtocolError as exc:
            log.warning("%r: closing, peer broke the protocol: %s", self, exc)
            self._shutdown(f"the peer broke the protocol: {exc}")
        except PipeClosed:
            pass  # closed while waiting for room in the node's inbox budget (evicted, or closed)
        finally:
            self._shutdown("the connection ended")

    def _evict(self, reason: str) -> None:
        """Close the pipe and drop what it holds unread (the node's inbox budget needs room)."""
        for inbox in self._subs.values():
            self.dropped += inbox.discard()
        self._shutdown(reason)

    def _closed_message(self) -> str:
        return f"pipe closed: {self.close_reason}" if self.close_reason else "pipe closed"

    def _shutdown(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        if self._heard_waiter is not None and not self._heard_waiter.done():
            self._heard_waiter.set_exception(PipeClosed(self._closed_message()))
        if self._nominate_task is not None:
            self._nominate_task.cancel()
        if self._watch_task is not None and self._watch_task is not asyncio.current_task():
            self._watch_task.cancel()
        for inbox in self._subs.values():
            inbox.close(self._closed_message())
        self._close_raw()
        if self.on_closed is not None:
            self.on_closed(self)
