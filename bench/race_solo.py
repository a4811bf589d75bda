"""Race against solo: is a race of all seven built-in plugins as fast as its winner alone?

    .venv/bin/python bench/race_solo.py [--trials 5] [--connects 100] [--loopback-only]

Two parts, each measured in one run against its own floor:

- Loopback (no root): two nodes on ``lo`` with a real mosquitto broker, IPv4 only and dual stack.
  ``direct`` alone, then all seven racing (``direct`` wins: everything else yields to it).
- The 8 x 8 preset matrix (root, lab): in every trial of every cell, all seven racing
  (``observe = 0``, as a user races) and then every plugin alone, in one lab, cells one after
  another (``workers = 1``: on two cores a neighbouring cell's CPU would be in a cell's time).
  Run apart, in two labs, the two sides differ by more than the target (measured: udp_punch alone
  6.0 ms in one lab, 9.9 in another, for the same cell), so the floor is taken beside the race.

The floor of a cell is its fastest plugin alone among those with the path the race prefers: a
direct one where any plugin alone connects the cell directly (the relay yields to them by policy),
the relay otherwise. Target: each race median within 2 ms or 10 % of its floor. random_probe's
time to a hit is a chance (about R / (N x rate), exponential: the median of a few trials is
luck), so where it wins, the race and its floor (random_probe alone) are compared on the time
that is not luck, each trial's time less the wait its attempt reports as a chance
(``AttemptEvent.chance_ms``); the waits are shown beside.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo's tests/

from netsim.control.runner import RELAYS
from netsim.control.signals import torn_down
from netsim.model.nat import PROFILES

PRESETS = list(PROFILES)
ALL = ("direct", "reverse", "udp_punch", "tcp_punch", "random_probe", "portmap", "turn")


def within(race: float, floor: float) -> bool:
    return race <= floor + 2.0 or race <= floor * 1.1


async def _loopback(families: list[str], plugins: list[str] | None, n: int, broker: str) -> list[float]:
    from warpgate import Node, auto_connect

    kw = {"interfaces": ["lo"], "families": families, "brokers": [broker]}
    times = []
    async with Node(**kw) as a, Node(**kw) as b:  # type: ignore[arg-type]
        for i in range(n + 5):
            t0 = time.perf_counter()
            pipe, _ = await auto_connect(b, a.address, plugins=plugins)
            took = (time.perf_counter() - t0) * 1000
            if i >= 5:  # the first few warm the broker links and the caches
                times.append(took)
            peer = await a.accept()
            await pipe.close()
            await peer.close()
    return times


def loopback(n: int) -> bool:
    from netsim.control.daemons import Daemon, mosquitto
    from tests.daemons import free_port

    port = free_port()
    daemon = Daemon(mosquitto("127.0.0.1", port), Path(tempfile.mkdtemp(prefix="race-solo-")) / "mqtt")
    daemon.start()
    ok = True
    try:
        print("\n| loopback | direct alone, ms | all seven racing, ms | within |")
        print("|---|---|---|---|")
        for families in (["ipv4"], ["ipv4", "ipv6"]):
            broker = f"mqtt://127.0.0.1:{port}"
            alone = statistics.median(asyncio.run(_loopback(families, ["direct"], n, broker)))
            raced = statistics.median(asyncio.run(_loopback(families, None, n, broker)))
            good = within(raced, alone)
            ok &= good
            print(f"| {' + '.join(families)} | {alone:.2f} | {raced:.2f} | {'yes' if good else 'NO'} |")
    finally:
        daemon.stop()
    return ok


def matrix(trials: int) -> bool:
    import dataclasses
    import json

    from netsim.control import runner
    from netsim.model.scenario import Scenario

    @dataclasses.dataclass(frozen=True)
    class Versus(Scenario):
        """Each trial of a cell runs the race and every plugin alone, one after another in
        the same lab: the floor is measured under the race's own conditions (routers' caches,
        daemons, the cell's neighbours in time)."""

        def runs(self) -> list[tuple[str, ...] | None]:
            return [tuple(self.plugins)] + [(p,) for p in self.plugins]

        def trial_variants(self, trial: int) -> list:
            # each trial starts at another run, so no run always follows the same neighbour
            # (the relay's teardown, a responder's sessions) into the next trial
            runs = self.variants()
            k = trial % len(runs)
            return runs[k:] + runs[:k]

    scenario = Versus(
        name="race-vs-solo",
        a=tuple(PRESETS),
        b=tuple(PRESETS),
        plugins=ALL,
        trials=trials,
        timeout=1.5,
        mode="solo",  # the runner's bookkeeping per run; the first run of each trial races all
        workers=1,
    )
    out = Path(tempfile.mkdtemp(prefix="wg-bench-race-vs-solo-"))
    runner.run(scenario, out)
    print(f"\n(records: {out / 'records.jsonl'})")
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    trials_ = [r for r in rows if r["type"] == "trial"]
    label = ",".join(ALL)
    luck = {
        (r["a"], r["b"], r["trial"], r["run"]): r["chance_ms"]
        for r in rows
        if r["type"] == "attempt" and r["won"]
    }
    for r in trials_:
        r["chance_ms"] = luck.get((r["a"], r["b"], r["trial"], r["run"]), 0.0)
    race = [r for r in trials_ if r["run"] == label]
    solo = [r for r in trials_ if r["run"] != label]
    return judge(solo, race, trials)


def judge(solo: list[dict], race: list[dict], trials: int) -> bool:
    """Print each cell's race median beside its floor; True when every cell is within. Where
    random_probe wins, both sides are its time less its wait on a chance (``chance_ms``)."""
    ok = True
    failed = 0
    print("\n| callee A | caller B | race winner | race, ms | floor (plugin alone), ms | ratio | within |")
    print("|---|---|---|---|---|---|---|")
    for a in PRESETS:
        for b in PRESETS:
            won = [r for r in race if (r["a"], r["b"]) == (a, b) and r["outcome"] == "connected"]
            if not won:
                ok = False
                print(f"| {a} | {b} | none | | | | NO |")
                continue
            winner = statistics.mode(r["winner"] for r in won)
            lucky = winner == "random_probe"
            alone: dict[str, list[float]] = {}
            for r in solo:
                if (r["a"], r["b"]) == (a, b) and r["outcome"] == "connected":
                    alone.setdefault(r["run"], []).append(r["ttc_ms"] - (r["chance_ms"] if lucky else 0.0))
            raced = statistics.median(r["ttc_ms"] - (r["chance_ms"] if lucky else 0.0) for r in won)
            # plugins that connect the cell alone in most trials
            reliable = {p: ts for p, ts in alone.items() if len(ts) * 2 > trials}
            direct = {p: ts for p, ts in reliable.items() if p not in RELAYS}
            pool = {winner: reliable[winner]} if lucky and winner in reliable else None
            pool = pool or direct or reliable
            if not pool:
                ok = False
                print(f"| {a} | {b} | {winner} | {raced:.1f} | none | | NO |")
                continue
            best = min(pool, key=lambda p: statistics.median(pool[p]))
            floor = statistics.median(pool[best])
            good = within(raced, floor)
            spread = ""
            if lucky:
                waits = statistics.median(r["chance_ms"] for r in won)
                alone_waits = statistics.median(
                    r["chance_ms"] for r in solo if (r["a"], r["b"], r["run"]) == (a, b, best)
                )
                spread = f" less luck (waits: median {waits:.0f} ms raced, {alone_waits:.0f} ms alone)"
            failed += not good
            ok &= good
            print(
                f"| {a} | {b} | {winner} | {raced:.1f}{spread} | {floor:.1f} ({best}) | "
                f"{raced / floor:.2f} | {'yes' if good else 'NO'} |"
            )
    print(f"\n{64 - failed} of 64 cells within 2 ms or 10 % of their floor")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5, help="trials per cell and plugin (matrix)")
    parser.add_argument("--connects", type=int, default=100, help="connects per loopback row")
    parser.add_argument("--loopback-only", action="store_true", help="skip the lab matrix (no root needed)")
    args = parser.parse_args()
    print(f"# race against solo, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    ok = loopback(args.connects)
    if not args.loopback_only:
        ok &= matrix(args.trials)
    print("\nverdict:", "every row within its floor" if ok else "some rows slower than their floor")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(torn_down(main))
