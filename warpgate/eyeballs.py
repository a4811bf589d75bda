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
