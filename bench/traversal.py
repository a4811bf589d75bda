"""Traversal benchmark (root, lab): node start-up with NAT discovery, and udp_punch's time to connect
against the round-trip floor measured in the same trials.

    .venv/bin/python bench/traversal.py [--trials 20] [--delay 20]

Targets (issue 8): node start-up behind a NAT, discovery included, median <= 300 ms; udp_punch
port-restricted <-> port-restricted, median <= 15 ms in the zero-delay lab; with 20 ms one-way WAN
delay, <= 1.5x the plugin's round-trip bound.

The floor comes from the nodes' own measurements in every trial: the STUN round trip of each side
(the internet hub adds no delay, so the data path between the two NATs takes the sum of both
round trips) and the signalling round trip of the caller's acknowledged requests. udp_punch's bound
(its docstring): 1 signalling round trip + 2 data-path round trips.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from netsim import runner
from netsim.scenario import Scenario
from netsim.topology import Impairment

PROFILES = ["port-restricted-cone", "full-cone", "symmetric", "symmetric-sequential"]


def trials(out: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return [r for r in rows if r["type"] == "trial"]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(name: str, delay_ms: float, n: int, a: list[str], b: list[str], plugins: tuple[str, ...]) -> Path:
    scenario = Scenario(
        name=name,
        a=tuple(a),
        b=tuple(b),
        plugins=plugins,
        trials=n,
        timeout=3.0,
        mode="solo",
        impairment=Impairment(delay_ms=delay_ms),
    )
    out = Path(tempfile.mkdtemp(prefix=f"wg-bench-{name}-"))
    runner.run(scenario, out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--delay", type=float, default=20.0, help="one-way WAN delay of the second run (ms)")
    args = parser.parse_args()
    print(f"# traversal benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    # Start-up behind each NAT: every trial starts two fresh nodes (callee A, caller B).
    out = run("startup", 0.0, args.trials, PROFILES, ["port-restricted-cone"], ("udp_punch",))
    rows = trials(out)
    print("\n| NAT | node start-up, median / p90 (ms) | discovered | n |")
    print("|---|---|---|---|")
    for p in PROFILES:
        mine = [r for r in rows if r["a"] == p]
        starts = sorted(r["a_start_ms"] for r in mine if r["a_start_ms"] is not None)
        p90 = starts[int(0.9 * (len(starts) - 1))] if starts else float("nan")
        seen = sorted({str(r["a_nat"]) for r in mine})
        print(f"| {p} | {median(starts):.0f} / {p90:.0f} | {', '.join(seen)} | {len(starts)} |")

    print(
        "\n| one-way delay | udp_punch prc-prc, median ms | bound: signal + 2 data RTT (ms) | ratio | n |"
    )
    print("|---|---|---|---|---|")
    for delay in (0.0, args.delay):
        out = run(
            f"punch-{int(delay)}",
            delay,
            args.trials,
            ["port-restricted-cone"],
            ["port-restricted-cone"],
            ("udp_punch",),
        )
        ok = [r for r in trials(out) if r["outcome"] == "connected"]
        ttc = median([r["ttc_ms"] for r in ok])
        data_rtt = median(
            [r["a_stun_rtt_ms"] + r["b_stun_rtt_ms"] for r in ok if r["a_stun_rtt_ms"] and r["b_stun_rtt_ms"]]
        )
        signal_rtt = median([r["signal_rtt_ms"] for r in ok if r["signal_rtt_ms"]])
        bound = signal_rtt + 2 * data_rtt
        print(
            f"| {delay:.0f} ms | {ttc:.1f} | {bound:.1f} ({signal_rtt:.1f} + 2 x {data_rtt:.1f}) | "
            f"{ttc / bound:.2f} | {len(ok)}/{args.trials} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
