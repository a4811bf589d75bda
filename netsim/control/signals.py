"""Signals on a process that runs labs: the first tears every lab down, the second forces it.

The netsim CLI and the benchmarks run inside ``signals_tear_down()``; without it SIGTERM and
SIGHUP kill the process where it stands, and the daemons, agents and namespaces of a lab in
start-up or in a run outlive it. ``exit_code_of`` turns the unwound signal into the exit
status a shell expects (128 + its number).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from netsim.control import spawn
from netsim.control.lab import Interrupted, clean, tearing_down


@contextlib.contextmanager
def signals_tear_down() -> Iterator[None]:
    """While inside: SIGINT, SIGTERM and SIGHUP tear the lab down (``Interrupted``); a second
    signal forces it: every process carrying our marker is killed, our namespaces and links are
    removed (``clean()``), and the process exits with 128 + the signal's number."""
    hits: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        hits.append(signum)
        name = signal.Signals(signum).name
        if len(hits) == 1:
            print(
                f"netsim: {name}: tearing the lab down (send it again to force)", file=sys.stderr, flush=True
            )
            if not tearing_down():
                raise Interrupted(signum)
            return  # a teardown is running: cutting it would leak what it has not stopped yet
        print(f"netsim: {name} again: forcing the teardown", file=sys.stderr, flush=True)
        spawn.close()  # the runner's threads start no process the scan below would miss
        for line in clean():
            print(f"netsim: {line}", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def torn_down(main: Callable[[], int | None]) -> int:
    """Run ``main`` inside ``signals_tear_down()``: its exit code, or 128 + the signal that
    interrupted it once every lab on the way out was torn down."""
    try:
        with signals_tear_down():
            return main() or 0
    except Interrupted as exc:
        print(f"interrupted by {signal.Signals(exc.signum).name}: the lab was torn down", file=sys.stderr)
        return 128 + exc.signum
