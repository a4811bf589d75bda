"""Happy eyeballs among one plugin's candidate channels (RFC 8305 §5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from warpgate.errors import AttemptFailed
from warpgate.pipe import Pipe

log = logging.getLogger(__name__)


async def first_success(starts: Iterable[tuple[float, Callable[[], Awaitable[Pipe]]]]) -> Pipe:
    """Happy eyeballs (RFC 8305 §5): start each factory after its delay; the first pipe wins.

    The rest are cancelled and awaited; a pipe one of them still produced is closed. When all fail,
    raises ``AttemptFailed`` with every reason.
    """

    async def delayed(delay: float, factory: Callable[[], Awaitable[Pipe]]) -> Pipe:
        if delay > 0:
            await asyncio.sleep(delay)  # a start offset, not synchronisation
        return await factory()

    tasks = [asyncio.ensure_future(delayed(d, f)) for d, f in starts]
    if not tasks:
        raise AttemptFailed("nothing to try")
    reasons: list[str] = []
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    return task.result()
                if not isinstance(exc, AttemptFailed):
                    raise exc
                reasons.append(exc.reason)
        raise AttemptFailed("; ".join(reasons))
    finally:
        for task in pending:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                continue
            try:
                late = await task
            except (asyncio.CancelledError, AttemptFailed):
                continue
            except Exception as exc:  # logged with traceback; the winner (if any) stands
                log.error("happy-eyeballs branch failed while being cancelled", exc_info=exc)
                continue
            await late.close()
        # A branch that finished in the same wake-up as the winner also made a pipe: close it.
        winners = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is None]
        for extra in winners[1:]:
            await extra.result().close()
