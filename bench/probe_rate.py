"""random_probe's probe rate on this machine (loopback, no root).

    .venv/bin/python bench/probe_rate.py [--probes 20000]

The cone side's loop (``Context.send_probes``): PROBE frames from a node's UDP socket to distinct
ports of one address, paced in 10 ms slices. Asked for 1,000 to 20,000 probes a second, it
reports what it sustained. Target: >= 1,000 probes/s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from warpgate import Node
from warpgate.plugins.base import AttemptContext


async def main(probes: int) -> None:
    print(f"# probe rate, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {probes} probes per row")
    print("\n| asked, probes/s | sustained, probes/s | ratio |")
    print("|---|---|---|")
    async with (
        Node(interfaces=["lo"], families=["ipv4"]) as a,
        Node(interfaces=["lo"], families=["ipv4"]) as b,
    ):
        for rate in (1000, 5000, 20000):
            n = min(probes, rate * 4)
            ctx = AttemptContext(
                a, b.address, "random_probe", deadline=asyncio.get_running_loop().time() + 60
            )
            ports = random.sample(range(1024, 65536), n)
            t0 = time.perf_counter()
            sent = await ctx.send_probes("127.0.0.2", ports, rate)
            took = time.perf_counter() - t0
            print(f"| {rate} | {sent / took:,.0f} | {sent / took / rate:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probes", type=int, default=20000)
    asyncio.run(main(parser.parse_args().probes))
