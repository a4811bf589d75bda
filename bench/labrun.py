"""Helpers shared by the lab benchmarks: run a scenario built in code, read back its trials."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from netsim.control import runner
from netsim.model.scenario import Scenario, SiteSpec
from netsim.model.topology import Impairment


def arguments(doc: str | None) -> argparse.Namespace:
    """The options every lab benchmark takes: trials per row and the delayed run's one-way delay."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--delay", type=float, default=20.0, help="one-way WAN delay of the second run (ms)")
    return parser.parse_args()


def run(
    name: str,
    a: list[str],
    b: list[str],
    plugins: tuple[str, ...],
    *,
    trials: int,
    delay_ms: float = 0.0,
    mode: str = "solo",
    timeout: float = 3.0,
    sites: dict[str, SiteSpec] | None = None,
    portmap: str = "start",
    workers: int = 0,
) -> list[dict[str, Any]]:
    """Run one scenario in a fresh lab (cells one after another per router; ``workers``: at most
    that many cells at once, 0 as many as allowed) and return its trials."""
    scenario = Scenario(
        sites=sites or {},
        portmap=portmap,
        name=name,
        a=tuple(a),
        b=tuple(b),
        plugins=plugins,
        trials=trials,
        timeout=timeout,
        mode=mode,
        impairment=Impairment(delay_ms=delay_ms),
        workers=workers,
    )
    out = Path(tempfile.mkdtemp(prefix=f"wg-bench-{name}-"))
    runner.run(scenario, out)
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return [r for r in rows if r["type"] == "trial"]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def data_rtt(rows: list[dict[str, Any]]) -> float:
    """The round trip between the two sites, from each node's STUN round trip (the emulated internet
    adds no delay: the path between two NATs costs the sum of both)."""
    return median(
        [r["a_stun_rtt_ms"] + r["b_stun_rtt_ms"] for r in rows if r["a_stun_rtt_ms"] and r["b_stun_rtt_ms"]]
    )


def signal_rtt(rows: list[dict[str, Any]]) -> float:
    return median([r["signal_rtt_ms"] for r in rows if r.get("signal_rtt_ms")])
