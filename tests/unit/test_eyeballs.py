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


def _dual_stack_peer():
    import ipaddress

    from warpgate.identity import Identity
    from warpgate.proto.address import Address, Interface

    iface = Interface(
        private4=ipaddress.IPv4Address("10.0.0.2"),
        public4=ipaddress.IPv4Address("203.0.113.7"),
        public6=ipaddress.IPv6Address("2001:db8:5::10"),
    )
    return Address(Identity.generate().public_key, 4000, 4000, (iface,))


@pytest.mark.parametrize("prefer6", [True, False])
async def test_one_family_leads_the_other(prefer6):
    """RFC 8305: with both IPv6 paths confirmed, IPv6 endpoints start first and IPv4 ones
    ``IPV6_LEAD`` later; otherwise IPv4 leads and the unconfirmed IPv6 path waits (two handshakes
    at once cost the winner its CPU)."""
    from warpgate.eyeballs import happy_eyeballs

    dialled = []

    async def dial(ep):
        dialled.append((ep.proto, ":" in ep.host))
        await asyncio.Event().wait()

    task = asyncio.ensure_future(happy_eyeballs(_dual_stack_peer(), dial, prefer6=prefer6))
    for _ in range(20):
        await asyncio.sleep(0)  # every attempt due now has started; none due later has
    tcp = [six for proto, six in dialled if proto == "tcp"]
    assert tcp and set(tcp) == {prefer6}  # only the leading family has started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
