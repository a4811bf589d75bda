"""Latency benchmark (root, lab): each plugin's time to connect against its round-trip bound.

    .venv/bin/python bench/latency.py [--trials 20] [--delay 20]

For a fixed set of cells, each plugin runs alone (solo) and then all race, at zero delay and at
``--delay`` ms one way on every WAN. The floor is measured in the same trials: the data-path round
trip between the two sites (from each node's STUN round trip) and the caller's signalling round
trip through mosquitto. Each plugin's bound comes from its docstring:

- direct (TCP): 1 round trip to open the stream + 2 for the handshake = 3 data RTT;
- reverse: the request reaches the callee (half a signalling RTT), then 3 data RTT back;
- udp_punch: 1 signalling RTT + 2 data RTT.

Targets: zero delay: direct <= 3 ms to an open host and <= 5 ms into a full cone,
reverse <= 8 ms, a race's winner no slower than the same plugin alone + 2 ms; with 20 ms one way,
every plugin <= 1.5x its bound.
"""

from __future__ import annotations

import time
from collections import Counter

from labrun import arguments, data_rtt, median, run, signal_rtt

from netsim.control.signals import torn_down

# (label, callee A, caller B, plugin): the plugin that must win the cell
CELLS = [
    ("direct to an open host", "open", "port-restricted-cone", "direct"),
    ("direct into a full cone", "full-cone", "port-restricted-cone", "direct"),
    ("reverse from behind a NAT", "port-restricted-cone", "open", "reverse"),
    ("udp_punch, cone to cone", "port-restricted-cone", "port-restricted-cone", "udp_punch"),
]


PLUGINS = ("direct", "reverse", "udp_punch")


def bound(plugin: str, data: float, signal: float) -> float:
    return {"direct": 3 * data, "reverse": signal / 2 + 3 * data, "udp_punch": signal + 2 * data}[plugin]


def main() -> int:
    args = arguments(__doc__)
    print(f"# latency benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.trials} trials")
    print("\n| delay | cell | plugin | alone, ms | race (winner; alone) | data/signal RTT | bound | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for delay in (0.0, args.delay):
        solo: dict[str, list[dict]] = {}
        race: dict[str, list[dict]] = {}
        for label, a, b, _plugin in CELLS:
            # every plugin alone in the cell (one lab; each trial runs each plugin on its own)
            solo[label] = run("solo", [a], [b], PLUGINS, trials=args.trials, delay_ms=delay, timeout=1.5)
            race[label] = run("race", [a], [b], PLUGINS, trials=args.trials, delay_ms=delay, mode="race")
        # the signalling floor: udp_punch always waits for its acknowledged offer
        signal = signal_rtt([r for rows in solo.values() for r in rows if r["run"] == "udp_punch"])
        for label, _a, _b, plugin in CELLS:
            alone = {
                p: median([r["ttc_ms"] for r in solo[label] if r["run"] == p and r["outcome"] == "connected"])
                for p in PLUGINS
            }
            ok = [r for r in solo[label] if r["run"] == plugin and r["outcome"] == "connected"]
            won = [r for r in race[label] if r["outcome"] == "connected"]
            raced = median([r["ttc_ms"] for r in won])
            top = Counter(r["winner"] for r in won).most_common(1)[0][0] if won else "-"
            data = data_rtt(ok)
            b = bound(plugin, data, signal)
            print(
                f"| {delay:.0f} ms | {label} | {plugin} | {alone[plugin]:.1f} ({len(ok)}/{args.trials}) | "
                f"{raced:.1f} ({top}; {alone.get(top, float('nan')):.1f}) | {data:.1f} / {signal:.1f} | "
                f"{b:.1f} | {alone[plugin] / b:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(torn_down(main))
