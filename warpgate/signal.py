"""The signal channel: small signed, encrypted control messages between nodes over MQTT brokers.

A node subscribes to ``warpgate/v1/<node_id>`` on each of its brokers (``Node(brokers=[...])``) and
publishes to a peer's topic on every broker it can reach among its own and the peer's address
hints. Several brokers give redundancy: a message goes out through each; the receiver's replay
cache drops the copies (counted as ``replayed``).

Requests are acknowledged; the sender retries with backoff (new message id, same request id) until
an ACK arrives or time runs out, and the receiver answers a repeated request id from its response
cache instead of running the handler twice. A broker that goes away is reconnected with backoff;
while none is reachable, ``request`` fails at once with ``SignalUnavailable`` naming the brokers.

The envelope codec (signature, encryption, replay, age) is ``warpgate.proto.envelope``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import logging
import os
import socket
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from warpgate.errors import AttemptFailed, LocalProtocolError, WarpgateError
from warpgate.identity import Identity
from warpgate.proto import timers
from warpgate.proto.address import Address
from warpgate.proto.envelope import (
    MAX_AGE,
    Envelope,
    MsgType,
    RateLimit,
    ReplayCache,
    SignalRejected,
    check_json_depth,
    open_envelope,
    seal,
)
from warpgate.retry import retransmit

log = logging.getLogger(__name__)

TOPIC_PREFIX = "warpgate/v1/"
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Broker sockets send at once: paho-mqtt leaves Nagle on, so a request's second small write would
wait for the broker's delayed ACK (about 40 ms on Linux). Brokers should set ``set_tcp_nodelay``."""
Handler = Callable[[Address, dict[str, Any]], Awaitable[dict[str, Any] | None]]

REQUEST_BYTES: contextvars.ContextVar[int] = contextvars.ContextVar("warpgate_request_bytes", default=0)
"""Inside a handler: the size on the wire of the envelope it answers (the reflection bound of
``warpgate.proto.reflection`` is a multiple of it)."""


class SignalError(WarpgateError):
    """The signal channel could not deliver a message."""


class SignalUnavailable(SignalError, AttemptFailed):
    """No broker is reachable right now."""


class SignalTimeout(SignalError, AttemptFailed):
    """A request was not acknowledged in time."""


def _raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed.

    Python 3.11's ``asyncio.wait_for`` (aiomqtt waits for PUBACK with it) returns the result and
    drops the cancellation when both arrive together (fixed in 3.12). A lost cancel made a race wait
    for ``reverse`` until its own timeout; found with the lab's packet captures.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def parse_broker(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (port defaults to 1883) -> (host, port); raises ``LocalProtocolError``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or 1883
    except ValueError:  # "mqtt://[bad": an unclosed IPv6 bracket, a port out of range, ...
        raise LocalProtocolError(f"broker {url[:80]!r} is not mqtt://host[:port]") from None
    if parts.scheme != "mqtt" or not host:
        raise LocalProtocolError(f"broker {url[:80]!r} is not mqtt://host[:port]")
    return host, port


def topic_of(node_id: str) -> str:
    return TOPIC_PREFIX + node_id


class BrokerLink:
    """One MQTT connection, kept up with reconnect backoff, subscribed to our own topic."""

    def __init__(self, channel: SignalChannel, url: str) -> None:
        self.channel = channel
        self.url = url
        self.host, self.port = parse_broker(url)
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.tried = asyncio.Event()
        """Set after the first connection attempt, whichever way it went."""
        self.last_error = "not tried yet"
        self.task: asyncio.Task[None] | None = None
        self.used_at = asyncio.get_running_loop().time()
        """When we last published through it (a link to a peer's broker ends when idle)."""

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"warpgate-mqtt-{self.url}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ident = f"wg-{self.channel.identity.node_id[:12]}-{os.urandom(3).hex()}"
        schedule = timers.RECONNECT.schedule(loop.time())
        while True:
            if schedule.handle_timer(loop.time()) is not timers.Action.SEND:
                await asyncio.sleep(max(0.0, schedule.get_timer() - loop.time()))  # reconnect backoff
                continue
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=ident,
                    timeout=3,
                    keepalive=10,
                    socket_options=NODELAY,
                    queue_type=self.channel.inbound_queue,
                ) as client:
                    await client.subscribe(topic_of(self.channel.identity.node_id), qos=1)
                    self.client = client
                    self.connected.set()
                    self.tried.set()
                    schedule = timers.RECONNECT.schedule(loop.time())
                    log.info("signal: connected to %s", self.url)
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            self.channel.receive(bytes(payload))
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.info("signal: broker %s: %s", self.url, self.last_error)
            finally:
                self.client = None
                self.connected.clear()
            self.tried.set()


MAX_KIND = 64
"""Characters of a message's kind and request id (the built-in kinds are about 20)."""
MAX_QUEUED = 4096
"""Messages a broker link holds before we read them; beyond, new ones are dropped (``queue_full``)."""
MAX_HANDLING = 256
"""Requests handled at once; more are dropped (``handlers_busy``) and their senders retry."""
MAX_LINKS = 16
"""Broker links at most: our own brokers and those the peers we call list."""
LINK_IDLE = 300.0
"""Seconds a link to a peer's broker stays up unused."""


class ResponseCache:
    """Answers by (sender, request id): a retransmitted request (a new message id, the same
    request id) is answered again without running its handler twice.

    Each sender keeps at most ``per_sender`` answers (its own oldest go first, so a sender can
    only push out its own); past ``limit`` in all, new answers are not kept rather than someone
    else's evicted. An answer is kept ``keep`` seconds: a request is retransmitted for at most
    ``timers.SIGNAL.limit``, and its envelopes are accepted for ``MAX_AGE``.
    """

    def __init__(self, per_sender: int = 64, limit: int = 10_000, keep: float = 2 * MAX_AGE) -> None:
        self.per_sender = per_sender
        self.limit = limit
        self.keep = keep
        self._by_sender: dict[str, OrderedDict[str, tuple[float, dict[str, Any]]]] = {}
        self._order: deque[tuple[float, str, str]] = deque()
        self._size = 0
        self.refused = 0
        """Answers not kept because the cache was full."""

    def __len__(self) -> int:
        return self._size

    def _expire(self, now: float) -> None:
        while self._order and self._order[0][0] < now - self.keep:
            t, sender, rid = self._order.popleft()
            own = self._by_sender.get(sender)
            if own is not None and rid in own and own[rid][0] == t:
                del own[rid]
                self._size -= 1
                if not own:
                    del self._by_sender[sender]

    def get(self, sender: str, rid: str, now: float) -> dict[str, Any] | None:
        self._expire(now)
        own = self._by_sender.get(sender)
        entry = None if own is None else own.get(rid)
        return None if entry is None else entry[1]

    def put(self, sender: str, rid: str, response: dict[str, Any], now: float) -> None:
        self._expire(now)
        own = self._by_sender.get(sender)
        if own is None:
            if self._size >= self.limit:
                self.refused += 1
                return
            own = self._by_sender[sender] = OrderedDict()
        if rid not in own:
            if len(own) >= self.per_sender:
                own.popitem(last=False)
                self._size -= 1
            elif self._size >= self.limit:
                self.refused += 1
                return
            self._size += 1
        own[rid] = (now, response)
        self._order.append((now, sender, rid))


class SignalChannel:
    """Signed, encrypted, acknowledged messages to other nodes. Owned by a ``Node``."""

    def __init__(
        self,
        identity: Identity,
        address: Callable[[], Address],
        brokers: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self._address = address
        self.clock = clock
        self.links: dict[str, BrokerLink] = {}
        self.own = list(brokers)
        for url in brokers:
            parse_broker(url)
        self.handlers: dict[str, Handler] = {}
        self.stats: Counter[str] = Counter()
        """``received``, ``accepted``, and one count per rejection reason (``replayed``, ...)."""
        self.rtt: float | None = None
        """Seconds from the first send of the last acknowledged request to its acknowledgement."""
        self.min_rtt: float | None = None
        """The smallest such round trip seen: the signalling path's floor (broker included)."""
        self.replay = ReplayCache()
        self.limit = RateLimit()
        self.allow: Callable[[bytes], bool] | None = None
        """The node's connection gate (``warpgate.proto.gater``): an envelope whose sender it
        refuses is dropped before its signature is checked (``stats["not_allowed"]``)."""
        """Envelopes per claimed sender and in all, taken before the signature is checked."""
        stats = self.stats

        class Inbound(asyncio.Queue):  # type: ignore[type-arg]
            """aiomqtt's incoming queue, bounded; a drop is counted (aiomqtt would log each)."""

            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(MAX_QUEUED)

            def put_nowait(self, item: Any) -> None:
                if self.full():
                    stats["queue_full"] += 1
                    return
                super().put_nowait(item)

        self.inbound_queue = Inbound
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._responses = ResponseCache()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handling = 0  # requests and notices being handled now

    async def start(self, wait: float = 3.0) -> None:
        """Connect to our brokers; return once each was tried once (or after ``wait`` seconds)."""
        for url in self.own:
            self._link(url)
        tried = [asyncio.ensure_future(link.tried.wait()) for link in self.links.values()]
        if tried:
            await asyncio.wait(tried, timeout=wait)
            for t in tried:
                t.cancel()
            await asyncio.gather(*tried, return_exceptions=True)

    async def stop(self) -> None:
        for link in self.links.values():
            await link.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fut in self._pending.values():
            fut.cancel()

    def _link(self, url: str) -> BrokerLink:
        link = self.links.get(url)
        if link is None:
            self._reap()
            if len(self.links) >= MAX_LINKS:
                raise LocalProtocolError(f"{MAX_LINKS} broker links already")
            link = self.links[url] = BrokerLink(self, url)
            link.start()
        return link

    def _reap(self) -> None:
        """End links to peers' brokers unused for ``LINK_IDLE`` s; when the table is full, the
        least recently used of them too (our own brokers' links stay)."""
        now = asyncio.get_running_loop().time()
        hinted = sorted(
            (lk for lk in self.links.values() if lk.url not in self.own), key=lambda lk: lk.used_at
        )
        for i, link in enumerate(hinted):
            if link.used_at < now - LINK_IDLE or (i == 0 and len(self.links) >= MAX_LINKS):
                del self.links[link.url]
                self.stats["link_expired"] += 1
                task = asyncio.get_running_loop().create_task(link.stop())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @property
    def connected(self) -> bool:
        return any(link.connected.is_set() for link in self.links.values())

    def unreachable(self, dest: Address) -> str | None:
        """Why no message can reach ``dest`` now, when that is known without trying: none of our
        links is up and every broker ``dest`` lists has a link here that tried and failed. None
        when a message may get through (or when only trying can tell)."""
        if self.connected or not dest.brokers:
            return None
        links = [self.links.get(url) for url in dest.brokers]
        if any(link is None or not link.tried.is_set() for link in links):
            return None
        return "no signal broker reachable: " + "; ".join(
            f"{link.url} ({link.last_error})" for link in links if link is not None
        )

    def on(self, kind: str, handler: Handler) -> None:
        """Answer requests (and notices) of ``kind``; the handler's dict is the ACK's response."""
        if kind in self.handlers:
            raise LocalProtocolError(f"a handler for {kind!r} is already installed")
        self.handlers[kind] = handler

    # -- sending ---------------------------------------------------------------------------------

    async def _publish(
        self, dest: Address, mtype: MsgType, payload: dict[str, Any], *, follow_hints: bool = True
    ) -> None:
        """Publish on every link that is up; first link the brokers ``dest`` lists, unless this
        answers a sender (``follow_hints=False``): a stranger's hints must not make us open links
        (they used to, one permanent link per hint). The sender reached us through a broker we
        are linked to, and listens there, so the answer goes back the same way."""
        for url in dest.brokers if follow_hints else ():
            try:
                self._link(url)
            except LocalProtocolError as exc:
                self.stats["hint_ignored"] += 1
                log.debug("signal: ignoring broker hint %r of %s: %s", url, dest.node_id, exc)
        links = [link for link in self.links.values() if link.connected.is_set() and link.client is not None]
        if not links:
            tried = (
                "; ".join(f"{lk.url} ({lk.last_error})" for lk in self.links.values()) or "none configured"
            )
            raise SignalUnavailable(f"no signal broker reachable: {tried}")
        data = seal(
            self.identity, self._address(), dest, mtype, json.dumps(payload).encode(), now=self.clock()
        )
        sent = 0
        for link in links:
            client = link.client
            if client is None:
                continue
            link.used_at = asyncio.get_running_loop().time()
            try:
                await client.publish(topic_of(dest.node_id), data, qos=1, timeout=3)
                sent += 1
                _raise_if_cancelling()
            except aiomqtt.MqttError as exc:
                log.info("signal: publish via %s failed: %s", link.url, exc)
        if not sent:
            raise SignalUnavailable("no signal broker accepted the message")

    async def request(
        self, dest: Address, kind: str, body: dict[str, Any], *, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Send a request and wait for its acknowledgement; retries with backoff."""
        rid = os.urandom(8).hex()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        policy = dataclasses.replace(timers.SIGNAL, limit=timeout)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await retransmit(
                policy,
                lambda: self._publish(dest, MsgType.REQUEST, {"kind": kind, "rid": rid, "body": body}),
                fut,
            )
            self.rtt = loop.time() - started
            self.min_rtt = self.rtt if self.min_rtt is None else min(self.min_rtt, self.rtt)
            return answer
        except TimeoutError:
            raise SignalTimeout(
                f"{kind} to {dest.node_id[:12]} not acknowledged within {timeout:.1f} s"
            ) from None
        finally:
            self._pending.pop(rid, None)

    async def notify(self, dest: Address, kind: str, body: dict[str, Any]) -> None:
        """Fire and forget (still signed, encrypted, and sent through every broker)."""
        await self._publish(dest, MsgType.NOTICE, {"kind": kind, "rid": os.urandom(8).hex(), "body": body})

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """One message from a broker. Nothing in it may end the broker link: whatever it raises is
        counted (``stats["error"]``) and logged with its traceback, and the link reads on."""
        try:
            self._on_raw(data)
        except Exception as exc:  # a bug reached by hostile input: counted, never fatal
            self.stats["error"] += 1
            log.error("signal: message dropped by an internal error", exc_info=exc)

    def _on_raw(self, data: bytes) -> None:
        self.stats["received"] += 1
        try:
            env = open_envelope(
                data, self.identity, now=self.clock(), replay=self.replay, limit=self.limit, allow=self.allow
            )
            check_json_depth(env.payload)
            msg = json.loads(env.payload)
            if (
                not isinstance(msg, dict)
                or not isinstance(msg.get("kind"), str)
                or not isinstance(msg.get("rid"), str)
                or not isinstance(msg.get("body"), dict)
            ):
                raise SignalRejected("malformed", "payload is not {kind, rid, body}")
            if len(msg["kind"]) > MAX_KIND or len(msg["rid"]) > MAX_KIND:
                # both are echoed in the acknowledgement: a long one would make it too large to send
                raise SignalRejected("malformed", f"kind or request id longer than {MAX_KIND}")
        except SignalRejected as exc:
            self.stats[exc.reason] += 1
            log.debug("signal: dropped envelope: %s", exc)
            return
        except ValueError:  # JSON
            self.stats["malformed"] += 1
            return
        self.stats["accepted"] += 1
        if env.type is MsgType.ACK:
            fut = self._pending.get(msg["rid"])
            if fut is not None and not fut.done():
                fut.set_result(msg["body"])
            else:
                # an answer after its request gave up (the attempt ended), or a copy through a
                # second broker: dropped, counted
                self.stats["ack_unmatched"] += 1
            return
        if self._handling >= MAX_HANDLING:
            self.stats["handlers_busy"] += 1  # the sender retries; its request id is not spent
            return
        self._handling += 1
        task = asyncio.get_running_loop().create_task(self._handle(env, msg, len(data)))
        self._tasks.add(task)
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._handling -= 1

    async def _handle(self, env: Envelope, msg: dict[str, Any], size: int) -> None:
        sender, rid = env.sender.node_id, msg["rid"]
        REQUEST_BYTES.set(size)  # this task's own context: what the handler's sends are bounded by
        response = self._responses.get(sender, rid, self.clock())
        if response is None:
            handler = self.handlers.get(msg["kind"])
            if handler is None:
                response = {"error": f"no handler for {msg['kind']!r}"}
            else:
                try:
                    response = await handler(env.sender, msg["body"]) or {}
                except WarpgateError as exc:
                    self.stats["request_" + getattr(exc, "reason", "refused")] += 1
                    response = {"error": str(exc)}
                except (KeyError, ValueError, TypeError) as exc:
                    self.stats["request_bad_request"] += 1
                    response = {"error": f"bad request: {exc!r}"[:200]}
                except Exception as exc:  # a handler's bug: the request is answered, the bug logged
                    self.stats["request_handler_error"] += 1
                    log.error("signal: handler for %s failed", msg["kind"], exc_info=exc)
                    response = {"error": "internal error"}
            self._responses.put(sender, rid, response, self.clock())
        if env.type is MsgType.REQUEST:
            try:
                await self._publish(
                    env.sender,
                    MsgType.ACK,
                    {"kind": msg["kind"], "rid": msg["rid"], "body": response},
                    follow_hints=False,
                )
            except SignalUnavailable as exc:
                log.info("signal: cannot acknowledge %s: %s", msg["kind"], exc)
            except ValueError as exc:  # the answer does not fit an envelope: counted, not a dead task
                self.stats["answer_too_large"] += 1
                log.warning("signal: answer to %s not sent: %s", msg["kind"], exc)
