"""A userspace delay wire for kernels without ``sch_netem`` (this one has none; docs/nat-behaviour.md).

    python -m netsim.hosts.delay IF_A IF_B --delay-ms 20 [--jitter-ms 2] [--hold]

Forwards every Ethernet frame between two interfaces of one namespace (AF_PACKET raw sockets)
after a fixed one-way delay plus uniform jitter, never reordering a direction. Measured here:
20 ms one-way gives a 40.5 ms ping RTT with 0.1 ms mdev. The interfaces carry no IP address;
every lab interface must have checksum offload and TSO/GSO off (the plan does that), because a
raw socket re-sends frames as they are. Loss is the netdev ``wgloss`` table's job, not this one's.

``--hold``: forward without delay until SIGUSR2 arrives, so the lab can validate its routers on a
clean wire and then impair it without a gap (``Lab.impair()``).
"""

from __future__ import annotations

import argparse
import heapq
import random
import select
import signal
import socket
import sys
import time
from types import FrameType

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23


def open_interface(name: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # our own sends would loop back otherwise
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    return s


def relay(if_a: str, if_b: str, delay: float, jitter: float, *, hold: bool = False) -> None:
    sa, sb = open_interface(if_a), open_interface(if_b)
    other = {sa: sb, sb: sa}
    last_due = {sa: 0.0, sb: 0.0}
    heap: list[tuple[float, int, socket.socket, bytes]] = []
    seq = 0
    running = True
    held = hold

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    def release(signum: int, frame: FrameType | None) -> None:
        nonlocal held
        held = False
        print("delay relay: impairment on", flush=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR2, release)
    state = " (held: no delay until SIGUSR2)" if hold else ""
    print(
        f"delay relay {if_a} <-> {if_b}: {delay * 1000:.1f} ms +- {jitter * 1000:.1f} ms{state}", flush=True
    )
    while running:
        timeout = max(0.0, heap[0][0] - time.monotonic()) if heap else 0.5
        try:
            readable, _, _ = select.select([sa, sb], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for s in readable:
            while True:
                try:
                    frame = s.recv(65535)
                except BlockingIOError:
                    break
                except OSError:  # ENETDOWN while a link-flap fault holds a cable out: read on
                    break
                wait = 0.0 if held else delay + (random.uniform(-jitter, jitter) if jitter else 0.0)
                due = max(now + wait, last_due[s])
                last_due[s] = due  # a direction never reorders
                seq += 1
                heapq.heappush(heap, (due, seq, other[s], frame))
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, out, frame = heapq.heappop(heap)
            try:
                out.send(frame)
            except OSError as exc:  # e.g. EMSGSIZE for a GSO super-frame: count it, keep going
                print(
                    f"delay relay: frame of {len(frame)} bytes not sent: {exc}", file=sys.stderr, flush=True
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m netsim.hosts.delay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("if_a")
    parser.add_argument("if_b")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--hold", action="store_true", help="no delay until SIGUSR2")
    args = parser.parse_args(argv)
    relay(args.if_a, args.if_b, args.delay_ms / 1000, args.jitter_ms / 1000, hold=args.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
