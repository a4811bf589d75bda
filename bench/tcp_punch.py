"""tcp_punch latency benchmark (root, lab): time to connect against its round-trip bound.

    .venv/bin/python bench/tcp_punch.py [--trials 20] [--delay 20]

tcp_punch alone, port-restricted cone <-> port-restricted cone, at zero delay and at ``--delay``
ms one way on every WAN. The floor is measured in the same trials: the data-path round trip
between the two sites (from each node's STUN round trip) and the caller's signalling round trip
through mosquitto. The bound (tcp_punch's docstring): 1 signalling round trip (offer, answer),
then 1 data round trip for the crossing SYNs and 2 for the handshake.

Targets: median <= 25 ms in the zero-delay lab; <= 1.5x the bound with 20 ms one way.
"""

from __future__ import annotations

import time

from labrun import arguments, data_rtt, median, run, signal_rtt

from netsim.control.signals import torn_down

CELL = ("port-restricted-cone", "port-restricted-cone")


def main() -> int:
    args = arguments(__doc__)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# tcp_punch latency, {when}, {args.trials} trials per row")
    print(
        "\n| one-way delay | cell | median / p90 | connected | data / signal RTT | bound | median / bound |"
    )
    print("|---|---|---|---|---|---|---|")
    for delay in (0.0, args.delay):
        rows = run("tcp-punch", [CELL[0]], [CELL[1]], ("tcp_punch",), trials=args.trials, delay_ms=delay)
        ok = [r for r in rows if r["outcome"] == "connected"]
        times = sorted(r["ttc_ms"] for r in ok)
        p90 = times[int(0.9 * (len(times) - 1))] if times else float("nan")
        data, signal = data_rtt(ok), signal_rtt(ok)
        bound = signal + 3 * data
        print(
            f"| {delay:.0f} ms | {CELL[0]} <-> {CELL[1]} | {median(times):.1f} / {p90:.1f} ms"
            f" | {len(ok)}/{len(rows)} | {data:.1f} / {signal:.1f} ms | {bound:.1f} ms"
            f" | {median(times) / bound:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(torn_down(main))
