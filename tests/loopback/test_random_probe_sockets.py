"""random_probe's sockets on loopback: the hard side opens one socket per probe path, and none
outlives its attempt, whether the attempt connects or is cancelled part-way.

Loopback has no NAT: each node is told what a lab router would have shown it (a cone, a
random-port NAT) by setting what discovery found; the hard side's dials then reach the cone's
socket directly (all of them at once, so few), and the cone's probes go to a narrow range of
ports nobody listens on. Every trial uses a fresh pair of nodes: a cancelled handshake leaves the
cone an unnominated channel for 30 s, and a node keeps at most 8 per peer."""

import asyncio
import os
import stat

from tests.peers import behind
from warpgate import Node, auto_connect

OPTIONS = {"random_probe": {"sockets": 4, "budget": 64, "rate": 2000, "low": 60900, "high": 60999}}


def sockets() -> int:
    """Open sockets of this process (its fds that are sockets)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += stat.S_ISSOCK(os.stat(f"/proc/self/fd/{fd}").st_mode)
        except FileNotFoundError:
            continue
    return count


async def trial(broker: str, cut_after: int | None) -> bool:
    """One attempt between a fresh cone and a fresh random-port node; cancelled after
    ``cut_after`` turns of the event loop, or run to the end. True when it connected."""
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker], portmap="off") as cone,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker], portmap="off") as hard,
    ):
        behind(cone, "port-restricted-cone")
        behind(hard, "symmetric")
        task = asyncio.ensure_future(
            auto_connect(hard, cone.address, plugins=["random_probe"], options=OPTIONS, timeout=5)
        )
        if cut_after is not None:
            for _ in range(cut_after):  # at every stage from the offer to the dials
                await asyncio.sleep(0)
            task.cancel()
        try:
            pipe, plugin = await task
        except asyncio.CancelledError:
            return False
        assert plugin.name == "random_probe"
        incoming = await asyncio.wait_for(cone.accept(), 5)
        await pipe.close()
        await incoming.close()
        return True


async def test_no_probe_socket_outlives_its_attempt(mosquitto_factory):
    broker = mosquitto_factory()
    assert await trial(broker.url, None)  # warm up: imports, the broker
    before = sockets()
    outcomes = [await trial(broker.url, None if i % 2 == 0 else i) for i in range(40)]
    await asyncio.sleep(0)  # let closed transports run their last callbacks
    assert all(outcomes[::2])  # every full attempt connected
    assert outcomes[1::2].count(False) >= 10  # most cancelled ones were cut short
    assert sockets() <= before, (before, sockets())
