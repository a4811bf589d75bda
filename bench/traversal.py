"""Traversal benchmark (root, lab): node start-up with NAT discovery, and udp_punch's time to connect
against the round-trip floor measured in the same trials.

    .venv/bin/python bench/traversal.py [--trials 20] [--delay 20]

Targets: node start-up behind a NAT, discovery included, median <= 300 ms; udp_punch
port-restricted <-> port-restricted, median <= 15 ms in the zero-delay lab; with 20 ms one-way WAN
delay, <= 1.5x the plugin's round-trip bound.

The floor comes from the nodes' own measurements in every trial: the STUN round trip of each side
(the internet hub adds no delay, so the data path between the two NATs takes the sum of both
round trips) and the signalling round trip of the caller's acknowledged requests. udp_punch's bound
(its docstring): 1 signalling round trip + 2 data-path round trips.
"""

from __future__ import annotations

import time

from labrun import arguments, data_rtt, median, run, signal_rtt

from netsim.control.signals import torn_down

PROFILES = ["port-restricted-cone", "full-cone", "symmetric", "symmetric-sequential"]


def main() -> int:
    args = arguments(__doc__)
    print(f"# traversal benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    # Start-up behind each NAT: every trial starts two fresh nodes (callee A, caller B).
    rows = run("startup", PROFILES, ["port-restricted-cone"], ("udp_punch",), trials=args.trials)
    print("\n| NAT | node start-up, median / p90 (ms) | discovered | n |")
    print("|---|---|---|---|")
    for p in PROFILES:
        mine = [r for r in rows if r["a"] == p]
        starts = sorted(r["a_start_ms"] for r in mine if r["a_start_ms"] is not None)
        p90 = starts[int(0.9 * (len(starts) - 1))] if starts else float("nan")
        seen = sorted({str(r["a_nat"]) for r in mine})
        print(f"| {p} | {median(starts):.0f} / {p90:.0f} | {', '.join(seen)} | {len(starts)} |")

    print("\n| one-way delay | udp_punch prc-prc, median ms | bound: signal + 2 data RTT (ms) | ratio | n |")
    print("|---|---|---|---|---|")
    for delay in (0.0, args.delay):
        rows = run(
            f"punch-{int(delay)}",
            ["port-restricted-cone"],
            ["port-restricted-cone"],
            ("udp_punch",),
            trials=args.trials,
            delay_ms=delay,
        )
        ok = [r for r in rows if r["outcome"] == "connected"]
        ttc = median([r["ttc_ms"] for r in ok])
        data, signal = data_rtt(ok), signal_rtt(ok)
        bound = signal + 2 * data
        print(
            f"| {delay:.0f} ms | {ttc:.1f} | {bound:.1f} ({signal:.1f} + 2 x {data:.1f}) | "
            f"{ttc / bound:.2f} | {len(ok)}/{args.trials} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(torn_down(main))
