"""Happy eyeballs (RFC 8305 §5) with fake attempts: no waiting out a delay once nothing is in flight."""

import asyncio

import pytest

from warpgate.errors import AttemptFailed
from warpgate.eyeballs import first_success


class FakePipe:
    closed = False

    async def close(self):
        self.closed = True


async def fails():
    raise AttemptFailed("refused")


async def never():
    await asyncio.Event().wait()


async def test_a_failure_with_nothing_in_flight_starts_the_delayed_attempts_at_once():
    pipe = FakePipe()

    async def works():
        return pipe

    # the second attempt waits 30 s unless the first one's failure cuts the delay short
    got = await asyncio.wait_for(first_success([(0.0, fails), (30.0, works)]), 5)
    assert got is pipe


async def test_an_attempt_still_in_flight_keeps_the_delay():
    started = []

    async def late():
        started.append("late")
        raise AttemptFailed("late")

    task = asyncio.ensure_future(first_success([(0.0, fails), (0.0, never), (30.0, late)]))
    for _ in range(20):
        await asyncio.sleep(0)  # let both immediate attempts run; `never` stays in flight
    assert started == [] and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
