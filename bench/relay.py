"""Relay benchmark over loopback: a relayed pipe's throughput against a direct UDP pipe's, both
measured in the same run, and the relay's time to connect. Starts its own coturn and mosquitto on
127.0.0.1 (stopped by PID at the end).

    .venv/bin/python bench/relay.py [--megabytes 16] [--connects 30]

Target: relayed throughput >= 50 % of a direct UDP pipe's. (Time to connect in the lab
comes from the full matrix: turn's median there is the figure the README gives.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import _UdpBench, throughput_between  # noqa: F401  (_UdpBench registers bench_udp)

from netsim.control.daemons import Daemon, coturn, mosquitto
from netsim.control.signals import torn_down
from tests.daemons import free_port
from warpgate import Node, auto_connect

PASSWORD = "bench-pass"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=16)
    parser.add_argument("--connects", type=int, default=30)
    args = parser.parse_args()
    total = args.megabytes * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="wgbench-"))
    turn = Daemon(coturn("127.0.0.1", "127.0.0.2", password=PASSWORD, loopback_peers=True), work / "coturn")
    port = free_port()
    broker = Daemon(mosquitto("127.0.0.1", port), work / "mosquitto")
    turn.start()
    broker.start()
    try:
        url = f"turn://wg:{PASSWORD}@127.0.0.1:3478"
        kw = {
            "interfaces": ["lo"],
            "families": ["ipv4"],
            "brokers": [f"mqtt://127.0.0.1:{port}"],
            "turn": [url],
        }
        async with Node(**kw) as a, Node(**kw) as b:  # type: ignore[arg-type]
            times = []
            for _ in range(args.connects):
                accepted = asyncio.ensure_future(a.accept())
                t0 = time.perf_counter()
                pipe, _ = await auto_connect(b, a.address, plugins=["turn"])
                times.append((time.perf_counter() - t0) * 1000)
                theirs = await accepted  # nominated: the callee has it before we close
                await pipe.close()
                await theirs.close()
            direct, direct_loss = await throughput_between(a, b, "bench_udp", total, 1200, pace=True)
            relayed, relayed_loss = await throughput_between(a, b, "turn", total, 1200, pace=True)
    finally:
        broker.stop()
        turn.stop()
    print(f"relay benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, loopback, coturn")
    print(f"turn connect ({args.connects} runs): median {statistics.median(times):.1f} ms")
    print(f"{args.megabytes} MiB in 1200-byte datagrams, sender and receiver in one process")
    print(f"  direct UDP pipe {direct:7.1f} MB/s (loss {direct_loss:.1%})")
    print(
        f"  relayed pipe    {relayed:7.1f} MB/s (loss {relayed_loss:.1%})"
        f"   ratio {relayed / direct:5.1%}   target >= 50%"
    )


if __name__ == "__main__":
    raise SystemExit(torn_down(lambda: asyncio.run(main())))
