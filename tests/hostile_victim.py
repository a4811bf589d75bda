"""The victim of ``tests/loopback/test_hostile_process.py``: a real node in its own process.

    python -m tests.hostile_victim --broker mqtt://127.0.0.1:PORT

Prints its address (text form) on the first line, echoes every message of every pipe it
accepts, and answers each ``stats`` line on stdin with one JSON line: its RSS in kB, the signal
channel's counters, the node's counters, the UDP socket's drops, and how many pipes it holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from warpgate import Node, Pipe, auto_connect
from warpgate.errors import PipeClosed


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def echo(pipe: Pipe) -> None:
    try:
        while True:
            await pipe.send(await pipe.recv())
    except PipeClosed:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--hold", action="store_true", help="keep every pipe and never read it")
    args = parser.parse_args()
    held: list[Pipe] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    on_pipe = held.append if args.hold else echo
    async with Node(interfaces=["lo"], families=["ipv4"], brokers=[args.broker], on_pipe=on_pipe) as node:
        say(node.address.to_text())
        while line := await reader.readline():
            if line.startswith(b"dial "):  # the victim dials a peer: from then on it is known
                pipe, _ = await auto_connect(node, line[5:].decode().strip(), plugins=["direct"], timeout=10)
                await pipe.close()
                say("dialled")
            elif line.strip() == b"stats":
                drops: dict[str, int] = {}
                for ep in node.udp_endpoints:
                    for reason, n in ep.drops.items():
                        drops[reason] = drops.get(reason, 0) + n
                assert node.signal is not None
                report = {
                    "rss_kb": rss_kb(),
                    "fds": len(os.listdir("/proc/self/fd")),
                    "signal": dict(node.signal.stats),
                    "node": dict(node.stats),
                    "udp": drops,
                    "pipes": len(node._pipes),
                    "budget": {"used": node.inbox_budget.used, "evicted": node.inbox_budget.evicted},
                }
                say(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
