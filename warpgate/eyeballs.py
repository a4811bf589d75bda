"""Happy eyeballs among one plugin's candidate channels (RFC 8305 §5)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

from warpgate.errors import AttemptFailed
from warpgate.pipe import Pipe
from warpgate.proto.address import Address, Endpoint
from warpgate.proto.nat import Filtering

UDP_DELAY = 0.05
"""UDP candidates start this long after TCP ones, so a reachable peer gets a stream."""
IPV6_LEAD = 0.01
"""The second family's candidates start this long after the first's (RFC 8305 §5's Connection
Attempt Delay at its floor): IPv4 after IPv6 when both sides confirmed their IPv6 path at start,
IPv6 after IPv4 otherwise. The lead lets the first family win a tie alone (two handshakes at once
cost the winner its CPU: 4.1 against 2.4 ms on loopback), and a failure of the first ends it."""

log = logging.getLogger(__name__)
_FILTERS_SYNS = (Filtering.ADDRESS_DEPENDENT, Filtering.ADDRESS_PORT_DEPENDENT, Filtering.BLOCKED)


async def first_success(starts: Iterable[tuple[float, Callable[[], Awaitable[Pipe]]]]) -> Pipe:
    """Happy eyeballs (RFC 8305 §5): start each factory after its delay; the first pipe wins.

    The rest are cancelled and awaited; a pipe one of them still produced is closed. When all fail,
    raises ``AttemptFailed`` with every reason.
    """

    starts = list(starts)
    hurry = asyncio.Event()  # RFC 8305 §5: when nothing is in flight any more, start the next now
    in_flight = sum(1 for d, _ in starts if d <= 0)

    async def delayed(delay: float, factory: Callable[[], Awaitable[Pipe]]) -> Pipe:
        nonlocal in_flight
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # a start offset, cut short by a failure
                    await hurry.wait()
            in_flight += 1
        try:
            return await factory()
        except AttemptFailed:
            in_flight -= 1
            if in_flight == 0:
                hurry.set()
            raise

    tasks = [asyncio.ensure_future(delayed(d, f)) for d, f in starts]
    if not tasks:
        raise AttemptFailed("nothing to try")
    reasons: list[str] = []
    chosen: asyncio.Task[Pipe] | None = None
    pending = set(tasks)
    try:
        while pending and chosen is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    chosen = chosen or task
                elif not isinstance(exc, AttemptFailed):
                    raise exc
                else:
                    reasons.append(exc.reason)
        if chosen is None:
            raise AttemptFailed("; ".join(reasons))
        return chosen.result()
    finally:
        for task in pending:
            task.cancel()
        for task in tasks:
            if task is chosen:
                continue
            try:
                extra = await task
            except (asyncio.CancelledError, AttemptFailed):
                continue
            except Exception as exc:  # logged with traceback; the winner (if any) stands
                log.error("happy-eyeballs branch failed", exc_info=exc)
                continue
            await extra.close()  # finished in the same wake-up as the winner, or ignored cancel


async def happy_eyeballs(
    address: Address,
    dial: Callable[[Endpoint], Awaitable[Pipe]],
    *,
    udp_delay: float = UDP_DELAY,
    prefer6: bool = False,
) -> Pipe:
    """Dial every advertised endpoint of ``address``: TCP ones at once, UDP ones ``udp_delay`` later.

    The delay only buys a stream the chance to win; a peer whose NAT filters unsolicited packets
    (its address says so) drops a SYN as surely as a datagram, so UDP then starts at once too.
    ``prefer6``: both sides' IPv6 works, so IPv4 endpoints start ``IPV6_LEAD`` later (RFC 8305);
    otherwise IPv6 endpoints start that much after IPv4 ones (an unconfirmed path goes second).
    """
    if any(i.nat.filtering in _FILTERS_SYNS for i in address.interfaces):
        udp_delay = 0.0

    families = {":" in ep.host for proto in ("tcp", "udp") for ep in address.endpoints(proto)}

    def lead(ep: Endpoint) -> float:  # the second family waits, when there are two
        return IPV6_LEAD if len(families) == 2 and (":" in ep.host) != prefer6 else 0.0

    starts: list[tuple[float, Callable[[], Awaitable[Pipe]]]] = [
        (lead(ep), partial(dial, ep)) for ep in address.endpoints("tcp")
    ]
    starts += [(udp_delay + lead(ep), partial(dial, ep)) for ep in address.endpoints("udp")]
    return await first_success(starts)
