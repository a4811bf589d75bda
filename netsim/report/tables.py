"""A run's records as tables: per cell, per plugin, relayed pairs, wire cost, sweeps, families;
and the run's verdict.

Reads only what the runner wrote (``records.jsonl`` or ``records.jsonl.gz``, ``meta.json``);
nothing is scraped from logs. Every table comes in the scenario's matrix order (its ``a`` x ``b``
lists), so a reader finds a cell where the scenario put it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from netsim.errors import UsageError
from netsim.model import records
from netsim.model.nat import PROFILES
from netsim.model.stats import wilson
from netsim.model.verdict import disagrees
from netsim.model.verdict import judge as judge_cell

ORDER = list(PROFILES)
NEEDED = ("a", "b", "run", "outcome")
"""Columns every trial record has: without them a file is not a run's records."""


def load(run: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(trials, attempts, meta) of a run directory; a bad path or a foreign file is bad input."""
    path = records.find(run)
    trial_rows, attempt_rows = records.read(path)
    trials = pd.DataFrame(trial_rows)
    attempts = pd.DataFrame(attempt_rows)
    meta: dict[str, Any] = {}
    if (run / "meta.json").exists():
        try:
            meta = json.loads((run / "meta.json").read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"{run / 'meta.json'}: not a run's meta.json ({exc})") from None
        except OSError as exc:
            raise UsageError(f"{run / 'meta.json'}: cannot read: {exc.strerror or exc}") from None
        if not isinstance(meta, dict):
            raise UsageError(f"{run / 'meta.json'}: not a run's meta.json (not a JSON object)")
    if trials.empty:
        raise UsageError(f"{path}: no trial record in it (not a netsim run, or no trial finished yet)")
    lacking = [c for c in NEEDED if c not in trials.columns]
    if lacking:
        raise UsageError(f"{path}: not a netsim run's records (no {', '.join(lacking)} in its trials)")
    return trials, attempts, meta


def matrix_order(meta: dict[str, Any], values: Any, side: str) -> list[str]:
    """One side's sites in the scenario's order (``meta.scenario.a`` or ``.b``); anything else
    (a run merged from other scenarios, an old run) after it, presets in zoo order."""
    declared = [str(v) for v in (meta.get("scenario", {}) or {}).get(side, []) or []]
    seen = set(map(str, values))
    return [v for v in declared if v in seen] + [v for v in _order(seen) if v not in declared]


def in_matrix_order(frame: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """The rows of a per-cell table sorted as the scenario lists its cells, runs in their order."""
    if frame.empty:
        return frame
    rows = {v: i for i, v in enumerate(matrix_order(meta, frame["a"], "a"))}
    cols = {v: i for i, v in enumerate(matrix_order(meta, frame["b"], "b"))}
    keys = frame.assign(_a=frame["a"].map(rows), _b=frame["b"].map(cols))
    by = ["_a", "_b"] + (["run"] if "run" in frame.columns else [])
    return keys.sort_values(by, kind="stable").drop(columns=["_a", "_b"]).reset_index(drop=True)


def _order(values: Any) -> list[str]:
    return sorted(set(values), key=lambda p: (_rank(p), p))  # presets in zoo order, then sites by name


def flake_of(meta: dict[str, Any]) -> float:
    """The scenario's declared flake rate (``flake`` key), 0 when it declares none."""
    return float(meta.get("scenario", {}).get("flake", 0.0) or 0.0)


def cell_table(trials: pd.DataFrame, flake: float = 0.0) -> pd.DataFrame:
    """One row per cell (A, B, run): trials, errors, success rate, expected, times, most frequent
    winner. A trial whose agent crashed (outcome ``error``) is counted apart: it says nothing about
    the NAT, so success and agreement are over the other trials. With a mid-pipe fault, ``survived``
    is the share of connected trials whose pipe still carried the payload after it."""
    t = trials.assign(ok=trials["outcome"] == "connected", error=trials["outcome"] == "error")
    if "expected_direct" not in t.columns:  # a run recorded before the field existed
        t = t.assign(expected_direct=None)
    if "survived" not in t.columns:
        t = t.assign(survived=None, survives_expected=None)
    relayed = t["path"] == "relayed" if "path" in t.columns else pd.Series(False, index=t.index)
    t = t.assign(
        relayed_f=(relayed & t["ok"]).astype(float),
        judged=~t["error"],
        survived_f=pd.to_numeric(t["survived"], errors="coerce"),
        survives_f=pd.to_numeric(t["survives_expected"], errors="coerce"),
    )
    g = t.groupby(["a", "b", "run"], sort=False)
    cells = g.agg(
        trials=("ok", "size"),
        errors=("error", "sum"),
        hits=("ok", "sum"),
        judged=("judged", "sum"),
        payload_failed=("outcome", lambda s: int((s == "payload_failed").sum())),
        expected=("expected", "first"),
        expected_direct=("expected_direct", "first"),
        survived=("survived_f", "mean"),
        relayed_hits=("relayed_f", "sum"),
        survives_expected=("survives_f", "first"),
        median_ttc_ms=("ttc_ms", "median"),
        p90_ttc_ms=("ttc_ms", lambda s: s.quantile(0.9)),
        median_overhead_ms=("overhead_ms", "median"),
    ).reset_index()
    cells["success"] = cells["hits"] / cells["judged"].where(cells["judged"] > 0)
    cells["n"] = cells["judged"]
    bounds = [wilson(int(h), int(n)) for h, n in zip(cells["hits"], cells["judged"], strict=True)]
    cells["success_low"] = [lo for lo, _ in bounds]
    cells["success_high"] = [hi for _, hi in bounds]
    cells["relayed"] = cells["relayed_hits"] / cells["hits"].where(cells["hits"] > 0)
    """Share of the cell's connections that went through a relay (TURN)."""
    relayed_bounds = [
        wilson(int(r), int(h)) for r, h in zip(cells["relayed_hits"], cells["hits"], strict=True)
    ]
    cells["relayed_high"] = [hi for _, hi in relayed_bounds]
    won = t[t["ok"]].groupby(["a", "b", "run"])["winner"]
    winners = won.agg(lambda s: s.value_counts().index[0]).rename("winner")
    wins = won.agg(lambda s: int(s.value_counts().iloc[0])).rename("winner_wins")
    """How many of the cell's connections its most frequent winner won (a mixed cell shows)."""
    cells = cells.merge(pd.concat([winners, wins], axis=1).reset_index(), on=["a", "b", "run"], how="left")

    cells["agrees"] = [
        judge_cell(
            int(r.judged),
            int(r.hits),
            r.expected,
            flake,
            survived=r.survived,
            survives_expected=r.survives_expected,
        ).value
        for r in cells.itertuples()
    ]
    return cells.rename(columns={"hits": "connected"}).drop(columns=["judged", "relayed_hits"])


LATE_DIRECT = "direct after the relay's head start"


def relayed_table(
    cells: pd.DataFrame, trials: pd.DataFrame | None = None, attempts: pd.DataFrame | None = None
) -> pd.DataFrame | None:
    """The pairs any of whose connections went through a relay, and why: ``no direct rule`` (no
    racing plugin's rule joins them directly: relaying is the theoretical minimum there),
    ``against a direct rule`` (a rule says a direct plugin joins them: a regression), or, where a
    race observed its losers, ``direct after the relay's head start`` (in every relayed trial a
    direct plugin connected after the relay had won: the rule held, but its plugin took longer
    than the relay waits, ``Node(relay_head_start)``; a chance, such as random_probe's). None
    when nothing was relayed."""
    relayed = cells[cells["relayed"].fillna(0) > 0]
    if relayed.empty:
        return None
    late = _late_direct_cells(trials, attempts)

    def why(row: Any) -> str:
        v = row.expected_direct
        if v is None or pd.isna(v):
            return "no theory"
        if not bool(v):
            return "no direct rule"
        return LATE_DIRECT if (row.a, row.b, row.run) in late else "against a direct rule"

    out = relayed[["a", "b", "run", "relayed", "winner"]].copy()
    out["reason"] = [why(r) for r in relayed.itertuples()]
    return out.sort_values(["reason", "a", "b"]).reset_index(drop=True)


def _late_direct_cells(
    trials: pd.DataFrame | None, attempts: pd.DataFrame | None
) -> set[tuple[str, str, str]]:
    """The cells in each of whose relayed trials a plugin connected over a direct path after the
    winner (``won`` false: it completed while the race observed its losers)."""
    if trials is None or attempts is None or attempts.empty or "won" not in attempts.columns:
        return set()
    key = ["a", "b", "run", "trial"]
    relayed = trials[trials.get("path", pd.Series(index=trials.index, dtype=object)) == "relayed"][key]
    late = attempts[
        (attempts["outcome"] == "connected") & (attempts["won"] == False) & (attempts["path"] == "direct")  # noqa: E712
    ][key].drop_duplicates()
    joined = relayed.merge(late.assign(late=True), on=key, how="left")
    per_cell = joined.groupby(["a", "b", "run"])["late"].apply(lambda s: bool(s.fillna(False).all()))
    return {k for k, v in per_cell.items() if v}


def plugin_table(attempts: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per plugin and cell: of the trials the plugin ran in (one attempt each), the share in which
    it connected (winner, or completed after the winner) and its median time when it did. In solo
    mode that is its reach; in a race it is too when the scenario observes the losers
    (``observe``: they run on after the winner); without that a loser cancelled while pending
    counts as not connected, and the share is a lower bound; ``observed`` counts the attempts
    that were not cancelled (0: the race never let the plugin finish in that cell)."""
    if attempts.empty:
        return pd.DataFrame(columns=["plugin", "a", "b", "n", "observed", "connected", "median_ms"])
    a = attempts.assign(
        ok=attempts["outcome"] == "connected",
        seen=attempts["outcome"] != "cancelled",
        ms=attempts["end_ms"] - attempts["start_ms"],
    )
    g = a.groupby(["plugin", "a", "b"]).agg(
        n=("ok", "size"),
        hits=("ok", "sum"),
        observed=("seen", "sum"),
        median_ms=("ms", lambda s: s[a.loc[s.index, "ok"]].median()),
    )
    g = g.reset_index()
    g["connected"] = g["hits"] / g["n"]
    return g[["plugin", "a", "b", "n", "observed", "connected", "median_ms"]]


def disjoint_wire(trials: pd.DataFrame) -> pd.DataFrame:
    """Runs recorded before the wire classes were disjoint have ``pipe``, the attempts *with* the
    winning flow: read as ``attempts`` = pipe - winner, so no figure counts the winner twice."""
    if not any(c.startswith("wire_b_pipe_") for c in trials.columns):
        return trials
    out = trials.copy()
    for side in ("a", "b"):
        for unit in ("packets", "bytes"):
            pipe, winner = f"wire_{side}_pipe_{unit}", f"wire_{side}_winner_{unit}"
            if pipe in out.columns:
                won = out[winner].fillna(0) if winner in out.columns else 0
                out[f"wire_{side}_attempts_{unit}"] = out[pipe] - won
                out = out.drop(columns=[pipe])
    return out


def wire_table(trials: pd.DataFrame) -> pd.DataFrame | None:
    """Median packets and bytes per class on the caller's (B's) WAN per cell, beside time to connect."""
    trials = disjoint_wire(trials)
    cols = [c for c in trials.columns if c.startswith("wire_b_") and c != "wire_b_path"]
    if not cols:
        return None
    g = trials.groupby(["a", "b", "run"])
    table = g[["ttc_ms", *cols]].median().reset_index()
    paths = g["wire_b_path"].agg(lambda s: ",".join(sorted({str(v) for v in s.dropna()})))
    table = table.merge(paths.rename("path seen").reset_index(), on=["a", "b", "run"])
    return table.rename(columns={c: c.removeprefix("wire_b_") for c in cols})


def sweep_table(trials: pd.DataFrame) -> pd.DataFrame | None:
    """Per cell and swept value: trials, measured success with its 95 % Wilson interval, and the
    chance the plugin's own model gives (``odds``, e.g. random_probe's 1 - (1 - N/R)^k)."""
    if "sweep_value" not in trials.columns or trials["sweep_value"].isna().all():
        return None
    t = trials[(trials["outcome"] != "error") & trials["sweep_value"].notna()].copy()
    t["hit"] = t["outcome"] == "connected"
    t["value"] = pd.to_numeric(t["sweep_value"], errors="coerce")
    t["odds_f"] = pd.to_numeric(t.get("odds"), errors="coerce")
    rows = []
    for (a, b, value), g in t.groupby(["a", "b", "value"]):
        n, hits = len(g), int(g["hit"].sum())
        lo, hi = wilson(hits, n)
        odds = g["odds_f"].iloc[0]
        rows.append(
            {"a": a, "b": b, "value": value, "n": n, "success": hits / n, "low": lo, "high": hi, "odds": odds}
        )
    out = pd.DataFrame(rows).sort_values(["a", "b", "value"])
    out["gap_pp"] = (out["success"] - out["odds"]) * 100
    return out


def family_table(trials: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame | None:
    """Per cell: trials connected over IPv4 and over IPv6, what theory expects of IPv4 alone, and
    whether IPv6 rescued the cell (it connected over IPv6 where IPv4 alone cannot). None when no
    site of the run has IPv6."""
    sites = meta.get("scenario", {}).get("sites", {}) or {}
    if not any(s.get("ipv6") for s in sites.values()) or "family" not in trials.columns:
        return None
    t = trials[trials["outcome"] != "error"]
    rows = []
    for (a, b, run_), g in t.groupby(["a", "b", "run"], sort=False):
        ok = g[g["outcome"] == "connected"]
        v6 = int((ok["family"] == "ipv6").sum())
        v4_only = g["expected_v4"].iloc[0] if "expected_v4" in g.columns else None
        rows.append(
            {
                "a": a,
                "b": b,
                "run": run_,
                "trials": len(g),
                "connected": len(ok),
                "ipv4": int((ok["family"] == "ipv4").sum()),
                "ipv6": v6,
                "expected_v4_alone": v4_only,
                "rescued_by_ipv6": bool(v6)
                and v4_only is not None
                and not pd.isna(v4_only)
                and not bool(v4_only),
            }
        )
    return pd.DataFrame(rows)


def wire_per_run(trials: pd.DataFrame) -> pd.DataFrame | None:
    """Median bytes per class on the caller's WAN per trial, per run: in solo mode a run is one
    plugin, so this is each plugin's wire cost (in a race the attempts share the wire)."""
    trials = disjoint_wire(trials)
    cols = [c for c in trials.columns if c.startswith("wire_b_") and c.endswith("_bytes")]
    if not cols:
        return None
    return trials.groupby("run")[cols].median().rename(columns=lambda c: c[len("wire_b_") : -len("_bytes")])


def _rank(profile: str) -> int:
    return ORDER.index(profile) if profile in ORDER else len(ORDER)


@dataclass(frozen=True)
class Verdict:
    """A run at a glance: it passes when every cell that could be judged agrees with theory and
    every cell could be judged (a cell whose every trial was an agent error says nothing)."""

    cells: int
    agree: int
    disagree: int
    unjudged: int
    no_theory: int
    agent_errors: int

    @property
    def passed(self) -> bool:
        return self.disagree == 0 and self.unjudged == 0

    @property
    def line(self) -> str:
        judged = self.cells - self.no_theory
        parts = [f"{self.agree}/{judged} cells agree with theory", f"{self.agent_errors} agent errors"]
        if self.unjudged:
            parts.append(f"{self.unjudged} cell(s) with no trial to judge")
        if self.no_theory:
            parts.append(f"{self.no_theory} cell(s) without a theory")
        return f"verdict: {'PASS' if self.passed else 'FAIL'}: " + ", ".join(parts)


def judge(cells: pd.DataFrame, trials: pd.DataFrame) -> Verdict:
    """The run's verdict from its cell table (``cell_table``): the one place that decides."""
    agrees = cells["agrees"].astype(str)
    unjudged = int((cells["n"] == 0).sum())
    return Verdict(
        cells=len(cells),
        agree=int((agrees == "ok").sum()),
        disagree=int(agrees.map(disagrees).sum()),
        unjudged=unjudged,
        no_theory=int((agrees == "no theory").sum()) + unjudged,
        agent_errors=int((trials["outcome"] == "error").sum()),
    )


def success_text(hits: float, n: float, low: float, high: float) -> str:
    """``7/10 · 70 % [40 %, 89 %]``: the count, the share and its 95 % Wilson interval."""
    if pd.isna(n) or not n:
        return "no trial judged"
    return f"{round(hits)}/{int(n)} · {pct(hits / n)} [{pct(low)}, {pct(high)}]"


def pct(share: float) -> str:
    """``70 %``: a share as people write it here (a space before the sign)."""
    return f"{share * 100:.0f} %"
