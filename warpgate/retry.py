"""Drive a ``warpgate.proto.timers.Schedule`` on the event loop: send until answered or given up.

The one retransmission loop of the engine (STUN, UDP handshakes, nomination, punching, signal
requests all use it). Waiting uses ``asyncio.wait``, which neither cancels the awaited future on
timeout nor swallows a cancellation of the caller (Python 3.11's ``wait_for`` can).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from warpgate.proto.timers import Action, Backoff, Schedule

T = TypeVar("T")


class Kick:
    """Wakes a waiting ``retransmit`` so that it sends at once (``Schedule.hurry``)."""

    def __init__(self) -> None:
        self._fut: asyncio.Future[None] | None = None
        self.pending = False

    def __call__(self) -> None:
        self.pending = True
        if self._fut is not None and not self._fut.done():
            self._fut.set_result(None)

    def arm(self) -> asyncio.Future[None]:
        self._fut = asyncio.get_running_loop().create_future()
        if self.pending:
            self._fut.set_result(None)
        return self._fut


async def retransmit(
    policy: Backoff | Schedule,
    send: Callable[[], object],
    answer: asyncio.Future[T],
    *,
    kick: Kick | None = None,
) -> T:
    """Call ``send`` on the schedule until ``answer`` resolves; ``TimeoutError`` when it gives up.

    ``send`` may be a coroutine function (awaited). ``answer`` is not cancelled on give-up: it
    belongs to the caller.
    """
    loop = asyncio.get_running_loop()
    schedule = policy if isinstance(policy, Schedule) else policy.schedule(loop.time())
    while not answer.done():
        if kick is not None and kick.pending:
            kick.pending = False
            schedule.hurry(loop.time())
        action = schedule.handle_timer(loop.time())
        if action is Action.GIVE_UP:
            raise TimeoutError
        if action is Action.SEND:
            result = send()
            if isinstance(result, Awaitable):
                await result
            continue
        waits: list[asyncio.Future[object]] = [answer]  # type: ignore[list-item]
        if kick is not None:
            waits.append(kick.arm())  # type: ignore[arg-type]
        await asyncio.wait(
            waits, timeout=max(0.0, schedule.get_timer() - loop.time()), return_when="FIRST_COMPLETED"
        )
        if kick is not None and len(waits) == 2 and not waits[1].done():
            waits[1].cancel()
    return answer.result()
