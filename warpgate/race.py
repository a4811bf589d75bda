"""``auto_connect``: race every applicable plugin at once; keep the first authenticated pipe.

Structured: every attempt is a task owned by one call; when the first pipe arrives the others are
cancelled *and awaited*, any pipe a loser still produced is closed (which tells the peer), and one
``AttemptEvent`` per plugin is emitted. Nothing is left pending when the call returns or raises.

With ``observe=S`` (a lab measuring each plugin's reach while they race) the losers instead run on
for up to S seconds after the winner, in a task the node owns: the call still returns the winner at
once; each loser's event says whether it failed, was cancelled while pending, or completed after
the winner (``connected``, ``won=False``: it would have connected; its pipe is closed at once,
never nominated).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from warpgate.errors import AddressError, AttemptFailed, ConnectError, LocalProtocolError
from warpgate.events import AttemptEvent, Outcome
from warpgate.node import Node
from warpgate.pipe import Pipe
from warpgate.plugins import AttemptContext, Plugin, available, create
from warpgate.proto.address import TEXT_PREFIX, Address, parse

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
NEVER_STARTED = "another plugin won during its head start (never started)"
"""Why an attempt the race policy held back was cancelled: it sent and opened nothing."""
CANCEL_GRACE = 2.0
"""Seconds a cancelled plugin gets to end before the race stops waiting for it."""
EventCallback = Callable[[AttemptEvent], object]


async def resolve(node: Node, dest: Address | bytes | str) -> Address:
    """Turn a destination into an ``Address``: an address (object, bytes, ``wg1…`` text) or a nickname.

    A nickname is looked up on the node's names server and its record verified by signature;
    without a names server, anything that is not an address is an ``AddressError``.
    """
    if isinstance(dest, str) and not dest.strip().lower().startswith(TEXT_PREFIX):
        if node.names is None:
            raise AddressError(
                f"{dest[:40]!r} is not an address (those start with {TEXT_PREFIX!r}) and the node has no"
                " names_server to look it up as a nickname"
            )
        return await node.names.lookup(dest.strip())
    return parse(dest)


async def auto_connect(
    node: Node,
    dest: Address | bytes | str,
    *,
    plugins: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    on_event: EventCallback | None = None,
    observe: float = 0.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Pipe, Plugin]:
    """Connect to ``dest`` with every plugin (or those named in ``plugins``) at once.

    Returns the first authenticated pipe and the plugin that made it. Raises ``ConnectError``
    listing each plugin's reason when none succeeds within ``timeout`` seconds, and
    ``AddressError`` when ``dest`` cannot be read. ``observe``: seconds the losers may run on after
    the winner (within ``timeout``), to record whether they would have connected. ``options``:
    per plugin name, the options its attempt reads (``ctx.options``; e.g. random_probe's budget).
    """
    if not node.started:
        raise LocalProtocolError("start the node before connecting (async with Node(...) as node)")
    # only the families the node runs: a node started IPv4-only never dials an IPv6 address
    address = (await resolve(node, dest)).only(node.families)
    if address.public_key == node.identity.public_key:
        raise LocalProtocolError("cannot connect a node to itself")
    node.gater.dialled(address.public_key, asyncio.get_running_loop().time())  # it may answer
    names = list(plugins) if plugins is not None else list(available())
    if not names:
        raise LocalProtocolError("no plugin to race")

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    deadline = t0 + timeout
    events: list[AttemptEvent] = []

    def ms() -> float:
        return round((loop.time() - t0) * 1000, 3)

    spent: dict[str, Counter[str]] = {}

    def emit(ev: AttemptEvent) -> None:
        cost = spent.get(ev.plugin)
        if cost:
            ev = dataclasses.replace(
                ev, sockets=cost["sockets"], probes=cost["probes"], chance_ms=cost["chance_us"] / 1000
            )
        events.append(ev)
        node.emit(ev)
        if on_event is not None:
            on_event(ev)

    attempts: dict[asyncio.Task[Pipe], tuple[Plugin, float]] = {}
    contexts: list[AttemptContext] = []
    candidates = []
    for plugin in [create(n) for n in names]:
        ctx = AttemptContext(node, address, plugin.name, deadline)
        ctx.options = dict((options or {}).get(plugin.name, {}))
        try:
            reason = plugin.applicable(ctx)
        except LocalProtocolError:
            raise  # the caller's mistake (a bad option): told, not recorded as an attempt
        except Exception as exc:  # a plugin bug: that plugin is out of the race, the rest runs
            log.error("plugin %s raised in applicable()", plugin.name, exc_info=exc)
            now = ms()
            emit(
                AttemptEvent(
                    plugin.name, Outcome.FAILED, now, now, f"bug: {exc!r}", error_class=type(exc).__name__
                )
            )
            continue
        if reason is not None:
            now = ms()
            emit(AttemptEvent(plugin.name, Outcome.NOT_APPLICABLE, now, now, reason))
            continue
        candidates.append((plugin, ctx))
    racing = tuple(plugin.name for plugin, _ in candidates)
    joining = (
        frozenset(name for name in racing if candidates[0][1].likely(name)) if candidates else frozenset()
    )
    held: list[_Held] = []
    """Attempts the race policy holds back: no task yet, only a timer (their patience)."""
    pending: set[asyncio.Task[Pipe]] = set()
    wake: asyncio.Future[None] = loop.create_future()
    """Set when a held attempt starts, so that the wait below takes its task in."""

    def begin(entry: _Held) -> None:
        if entry not in held:
            return
        held.remove(entry)
        if entry.timer is not None:
            entry.timer.cancel()
        task = loop.create_task(entry.plugin.attempt(entry.ctx), name=f"warpgate-{entry.plugin.name}")
        attempts[task] = (entry.plugin, entry.created)
        ctx_of[task] = entry.ctx
        pending.add(task)
        if not wake.done():
            wake.set_result(None)

    ctx_of: dict[asyncio.Task[Pipe], AttemptContext] = {}
    winner: tuple[Pipe, Plugin] | None = None
    observing = False
    try:
        for plugin, ctx in candidates:
            ctx.racing = racing  # head starts count only plugins that really run
            ctx.joining = joining
            contexts.append(ctx)
            spent[plugin.name] = ctx.spent
            try:
                wait = max(0.0, float(plugin.head_start(ctx)))
                waits_for = ctx.waits_for(plugin.policy) if wait > 0 else ()
            except Exception as exc:  # a plugin's broken head start: it runs at once, logged
                log.error("plugin %s raised in head_start()", plugin.name, exc_info=exc)
                wait, waits_for = 0.0, ()
            entry = _Held(plugin, ctx, waits_for, ms())
            held.append(entry)
            if wait > 0:
                entry.timer = loop.call_later(wait, begin, entry)
            else:
                begin(entry)
                await asyncio.sleep(0)  # its first packets leave now, not after the others' set-up
        # nothing runs that the held ones could be waiting for (a custom head start): start them
        _release(held, pending, set(), begin)

        while pending and winner is None:
            if wake.done():
                wake = loop.create_future()
            waiting: set[asyncio.Future[Any]] = {*pending, wake}
            got, _ = await asyncio.wait(
                waiting, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
            if not got:
                break  # the deadline
            done = {t for t in pending if t in got}
            pending -= done
            for task in done:
                plugin, start = attempts[task]
                result = _settle(task, plugin.name, start, ms(), won=winner is None, expected=address)
                emit(result[0])
                if result[1] is not None:
                    if winner is None:
                        winner = (result[1], plugin)
                    elif result[1] is not winner[0]:
                        await result[1].close()
            if winner is None:
                _release(held, pending, {attempts[t][0].name for t in attempts if t not in pending}, begin)
        # what the policy still held back never starts, observed or not: it has spent nothing
        why_held = NEVER_STARTED if winner is not None else "deadline reached"
        for entry in list(held):
            held.remove(entry)
            if entry.timer is not None:
                entry.timer.cancel()
            outcome = Outcome.CANCELLED if winner is not None else Outcome.TIMEOUT
            emit(AttemptEvent(entry.plugin.name, outcome, entry.created, ms(), why_held))
        if winner is not None and pending and observe > 0:
            until = min(deadline, loop.time() + observe)
            losers = [ctx_of[t] for t in pending]
            observer = _observe(pending, until, attempts, losers, winner[0], address, ms, emit, node)
            node.adopt(loop.create_task(observer, name="warpgate-observe-losers"))
            observing = True
    finally:
        for entry in held:  # raised out of the race (a cancelled caller): no timer outlives it
            if entry.timer is not None:
                entry.timer.cancel()
        if not observing:
            why = "another plugin won" if winner else "deadline reached"
            await _wind_down(pending, attempts, why, ms, emit, node)
    for ctx in contexts:  # what attempts acquired and did not hand on ends with them
        if not observing or all(ctx is not ctx_of[t] for t in pending):
            await ctx.resources.aclose()
    if winner is None:
        raise ConnectError(f"could not connect to {address.node_id}: every plugin failed", events)
    winner[0].nominate()
    return winner


async def _observe(
    pending: set[asyncio.Task[Pipe]],
    until: float,
    attempts: dict[asyncio.Task[Pipe], tuple[Plugin, float]],
    contexts: list[AttemptContext],
    winning: Pipe,
    address: Address,
    ms: Callable[[], float],
    emit: Callable[[AttemptEvent], None],
    node: Node,
) -> None:
    """The losers after the winner: each that completes before ``until`` is recorded and its pipe
    closed; the rest are cancelled as in the race."""
    loop = asyncio.get_running_loop()
    try:
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=max(0.0, until - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                break
            for task in done:
                plugin, start = attempts[task]
                event, pipe = _settle(task, plugin.name, start, ms(), won=False, expected=address)
                emit(event)
                if pipe is not None and pipe is not winning:
                    await pipe.close()
    finally:
        await _wind_down(pending, attempts, "another plugin won", ms, emit, node)
        for ctx in contexts:
            await ctx.resources.aclose()


async def _wind_down(
    pending: set[asyncio.Task[Pipe]],
    attempts: dict[asyncio.Task[Pipe], tuple[Plugin, float]],
    why: str,
    ms: Callable[[], float],
    emit: Callable[[AttemptEvent], None],
    node: Node,
) -> None:
    """Cancel what is still pending and await it. A plugin must end promptly when cancelled; one that
    does not is a bug, reported in its event and handed to the node (which cancels and reaps it at
    stop) instead of hanging the caller."""
    for task in pending:
        task.cancel()
    ended, stuck = await asyncio.wait(pending, timeout=CANCEL_GRACE) if pending else (set(), set())
    for task in ended:
        plugin, start = attempts[task]
        if task.cancelled():
            outcome = Outcome.TIMEOUT if why == "deadline reached" else Outcome.CANCELLED
            emit(AttemptEvent(plugin.name, outcome, start, ms(), why))
            continue
        exc = task.exception()
        if isinstance(exc, AttemptFailed):
            emit(
                AttemptEvent(
                    plugin.name, Outcome.FAILED, start, ms(), exc.reason, error_class=type(exc).__name__
                )
            )
        elif exc is not None:  # a plugin bug: reported, with its traceback, never swallowed
            log.error("plugin %s raised while being cancelled", plugin.name, exc_info=exc)
            emit(
                AttemptEvent(
                    plugin.name,
                    Outcome.FAILED,
                    start,
                    ms(),
                    f"bug: {exc!r}",
                    error_class=type(exc).__name__,
                )
            )
        else:
            await task.result().close()  # ignored cancellation but ended: close what it made
            emit(AttemptEvent(plugin.name, Outcome.CANCELLED, start, ms(), why + " (pipe closed)"))
    for task in stuck:
        plugin, start = attempts[task]
        log.error("plugin %s did not stop within %.1f s of being cancelled", plugin.name, CANCEL_GRACE)
        emit(
            AttemptEvent(
                plugin.name,
                Outcome.CANCELLED,
                start,
                ms(),
                f"{why}; ignored cancellation for {CANCEL_GRACE} s (plugin bug)",
                error_class="CancellationIgnored",
            )
        )
        node.adopt(task)


@dataclasses.dataclass(eq=False)
class _Held:
    """An attempt the race policy holds back (``RacePolicy``): it has no task yet, only a timer
    for its patience, and starts early once every plugin of ``waits_for`` has ended without a pipe."""

    plugin: Plugin
    ctx: AttemptContext
    waits_for: tuple[str, ...]
    created: float
    timer: asyncio.TimerHandle | None = None


def _release(
    held: list[_Held], pending: set[asyncio.Task[Pipe]], ended: set[str], begin: Callable[[_Held], None]
) -> None:
    """Start the held attempts whose cheaper plugins have all ended without a pipe, and every one
    when nothing runs any more that they could be waiting for."""
    for entry in list(held):
        if not pending or (entry.waits_for and all(name in ended for name in entry.waits_for)):
            begin(entry)


def _settle(
    task: asyncio.Task[Pipe], plugin: str, start: float, end: float, *, won: bool, expected: Address
) -> tuple[AttemptEvent, Pipe | None]:
    exc = task.exception()
    if exc is None:
        pipe = task.result()
        if pipe.peer_key != expected.public_key or pipe.closed:  # fail closed, whatever the plugin did
            return AttemptEvent(plugin, Outcome.FAILED, start, end, "plugin returned an unusable pipe"), None
        local = f"{pipe.proto}://{pipe.local[0]}:{pipe.local[1]}"
        remote = f"{pipe.proto}://{pipe.remote[0]}:{pipe.remote[1]}"
        reason = "" if won else "completed after the winner (pipe closed)"
        ev = AttemptEvent(plugin, Outcome.CONNECTED, start, end, reason, pipe.path, local, remote, won=won)
        return ev, pipe
    if isinstance(exc, AttemptFailed):
        return AttemptEvent(
            plugin, Outcome.FAILED, start, end, exc.reason, error_class=type(exc).__name__
        ), None
    log.error("plugin %s raised an unexpected error", plugin, exc_info=exc)
    return AttemptEvent(
        plugin, Outcome.FAILED, start, end, f"bug: {exc!r}", error_class=type(exc).__name__
    ), None
