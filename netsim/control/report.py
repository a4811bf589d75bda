"""Records -> tables, figures, ``report.html`` (self-contained) and ``report.md``; ``compare``; ``merge``.

Reads only what the runner wrote (``records.jsonl``, ``meta.json``); nothing is scraped from logs.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import Rectangle

from netsim.control import style
from netsim.control.style import Rendered
from netsim.errors import NetsimError, UsageError
from netsim.model import records
from netsim.model.nat import PROFILES
from netsim.model.stats import Problem, Thresholds, wilson, within_flake

ORDER = list(PROFILES)


def load(run: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    path = run / records.RECORDS
    if not path.exists():
        raise UsageError(f"{run}: no {records.RECORDS} (is this a run directory?)")
    trial_rows, attempt_rows = records.read(path)
    trials = pd.DataFrame(trial_rows)
    attempts = pd.DataFrame(attempt_rows)
    meta = json.loads((run / "meta.json").read_text()) if (run / "meta.json").exists() else {}
    if trials.empty:
        raise NetsimError(f"{run}: no finished trial yet")
    return trials, attempts, meta


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
    winners = t[t["ok"]].groupby(["a", "b", "run"])["winner"].agg(lambda s: s.value_counts().index[0])
    cells = cells.merge(winners.rename("winner").reset_index(), on=["a", "b", "run"], how="left")

    def verdict(row: pd.Series) -> str:
        if row["judged"] == 0:
            return "no data (every trial an agent error)"
        if row["expected"] is None or pd.isna(row["expected"]):
            return "no theory"
        n, hits = int(row["judged"]), int(row["hits"])
        if bool(row["expected"]) and not within_flake(n - hits, n, flake):
            return "MISMATCH (expected to connect)"
        if not bool(row["expected"]) and not within_flake(hits, n, flake):
            return "MISMATCH (expected to fail)"
        if not pd.isna(row["survives_expected"]) and not pd.isna(row["survived"]):
            want = float(row["survives_expected"])
            if row["survived"] != want:
                return f"MISMATCH (pipe expected to {'survive' if want else 'break under'} the fault)"
        return "ok"

    cells["agrees"] = cells.apply(verdict, axis=1)
    return cells.drop(columns=["hits", "judged", "relayed_hits"])


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
    counts as not connected, and the share is a lower bound."""
    if attempts.empty:
        return pd.DataFrame(columns=["plugin", "a", "b", "n", "connected", "median_ms"])
    a = attempts.assign(ok=attempts["outcome"] == "connected", ms=attempts["end_ms"] - attempts["start_ms"])
    g = a.groupby(["plugin", "a", "b"]).agg(
        n=("ok", "size"), hits=("ok", "sum"), median_ms=("ms", lambda s: s[a.loc[s.index, "ok"]].median())
    )
    g = g.reset_index()
    g["connected"] = g["hits"] / g["n"]
    return g[["plugin", "a", "b", "n", "connected", "median_ms"]]


def wire_table(trials: pd.DataFrame) -> pd.DataFrame | None:
    """Median packets and bytes per class on the caller's (B's) WAN per cell, beside time to connect."""
    cols = [c for c in trials.columns if c.startswith("wire_b_") and c != "wire_b_path"]
    if not cols:
        return None
    g = trials.groupby(["a", "b", "run"])
    table = g[["ttc_ms", *cols]].median().reset_index()
    paths = g["wire_b_path"].agg(lambda s: ",".join(sorted({str(v) for v in s.dropna()})))
    table = table.merge(paths.rename("path seen").reset_index(), on=["a", "b", "run"])
    return table.rename(columns={c: c.removeprefix("wire_b_") for c in cols})


# -- figures ---------------------------------------------------------------------------------


def _heatmap(
    values: pd.DataFrame,
    title: str,
    labels: pd.DataFrame | None = None,
    *,
    bar: str = "success rate",
) -> Rendered:
    fig, ax = plt.subplots(figsize=(1.4 + 1.2 * len(values.columns), 1.0 + 0.8 * len(values.index)))
    im = ax.imshow(values.to_numpy(dtype=float), cmap=style.RATE_CMAP, vmin=0, vmax=1)
    _axes(ax, values, title)
    for i, row in enumerate(values.index):
        for j, col in enumerate(values.columns):
            v = values.loc[row, col]
            text = labels.loc[row, col] if labels is not None else ("" if pd.isna(v) else f"{v:.0%}")
            dark = not pd.isna(v) and float(v) < 0.55  # cividis is dark at the low end
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(im, ax=ax, fraction=0.04, label=bar)
    return style.render(fig)


def _axes(ax: Any, values: pd.DataFrame, title: str) -> None:
    ax.set_xticks(range(len(values.columns)), values.columns, rotation=35, ha="right")
    ax.set_yticks(range(len(values.index)), values.index)
    ax.set_xlabel("B (caller)")
    ax.set_ylabel("A (callee)")
    ax.set_title(title)


def _winners(winner: pd.DataFrame, flags: pd.DataFrame, title: str, plugins: list[str]) -> Rendered:
    """Winners as categories: one colour per plugin (Okabe-Ito), none in grey, (!) on a cell that
    disagrees with theory."""
    fig, ax = plt.subplots(figsize=(1.4 + 1.2 * len(winner.columns), 1.0 + 0.8 * len(winner.index)))
    for i, row in enumerate(winner.index):
        for j, col in enumerate(winner.columns):
            w = winner.loc[row, col]
            colour = style.colour_of(w, plugins) if w != "-" else "#FFFFFF"
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color=colour, ec="#666666"))
            ax.text(j, i, w + (" (!)" if flags.loc[row, col] else ""), ha="center", va="center", fontsize=7)
    ax.set_xlim(-0.5, len(winner.columns) - 0.5)
    ax.set_ylim(len(winner.index) - 0.5, -0.5)
    _axes(ax, winner, title)
    handles = [Rectangle((0, 0), 1, 1, color=style.colour_of(p, plugins)) for p in plugins]
    ax.legend(handles, plugins, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, title="winner")
    return style.render(fig)


def figures(cells: pd.DataFrame, plugins: pd.DataFrame, trials: pd.DataFrame) -> dict[str, Rendered]:
    out: dict[str, Rendered] = {}
    rows, cols = _order(cells["a"]), _order(cells["b"])
    names = sorted({str(w) for w in trials["winner"].dropna()} | set(plugins["plugin"]))
    for run, c in cells.groupby("run"):
        label = run or "all plugins"
        run = str(run).replace(",", "+")

        def grid(column: str, c: pd.DataFrame = c) -> pd.DataFrame:
            return c.pivot(index="a", columns="b", values=column).reindex(index=rows, columns=cols)

        success, n, lo, hi = grid("success"), grid("n"), grid("success_low"), grid("success_high")
        labels = success.copy().astype(object)
        for r in rows:
            for k in cols:
                v = success.loc[r, k]
                labels.loc[r, k] = (
                    ""
                    if pd.isna(v)
                    else f"{v:.0%}\nn={int(n.loc[r, k])}\n[{lo.loc[r, k]:.0%}, {hi.loc[r, k]:.0%}]"
                )
        out[f"success-{run or 'race'}"] = _heatmap(
            success, f"success rate, n and 95 % Wilson interval ({label})", labels
        )
        exp = grid("agrees")
        flags = ~(exp.isna() | (exp == "ok") | (exp == "no theory"))
        out[f"winners-{run or 'race'}"] = _winners(
            grid("winner").fillna("-"),
            flags,
            f"winner per cell ({label}); (!) = disagrees with theory",
            names,
        )
        expected = grid("expected")
        out[f"expected-{run or 'race'}"] = _heatmap(
            expected.astype(float),
            f"expected by theory ({label})",
            labels=expected.map(lambda v: "?" if v is None or pd.isna(v) else ("yes" if v else "no")),
            bar="expected to connect (1) or not (0)",
        )
    raced = "mode" in trials and (trials["mode"] == "race").any()
    observed = "observe" in trials and (trials["observe"].fillna(0) > 0).all()
    note = "" if not raced or observed else "\n(a lower bound: the race cancelled losers while pending)"
    for plugin, p in plugins.groupby("plugin"):
        m = p.pivot(index="a", columns="b", values="connected").reindex(index=rows, columns=cols)
        out[f"plugin-{plugin}"] = _heatmap(
            m,
            f"{plugin}: share of the trials it ran in where it connected{note}",
            bar="share of its trials",
        )
    ok = trials[trials["outcome"] == "connected"]
    if not ok.empty:
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        groups = [(w, g["ttc_ms"].dropna().to_numpy()) for w, g in ok.groupby("winner")]
        ax.boxplot([g for _, g in groups], tick_labels=[w for w, _ in groups], showfliers=False)
        for i, (w, g) in enumerate(groups):  # every trial as a point over its box
            jitter = [(k % 7 - 3) * 0.03 for k in range(len(g))]
            ax.scatter([i + 1 + x for x in jitter], g, s=6, alpha=0.5, color=style.colour_of(w, names))
        ax.set_yscale("log")
        ax.set_ylabel("time to connect (ms, log)")
        ax.set_title("time to connect, by winning plugin (every trial a point)")
        out["time-to-connect"] = style.render(fig)
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        for w, g in ok.groupby("winner"):
            xs = g["ttc_ms"].dropna().sort_values().to_numpy()
            ax.plot(
                xs,
                [(i + 1) / len(xs) for i in range(len(xs))],
                drawstyle="steps-post",
                label=f"{w} (n={len(xs)})",
                color=style.colour_of(str(w), names),
            )
        ax.set_xscale("log")
        ax.set_xlabel("time to connect (ms, log)")
        ax.set_ylabel("share of its successful trials")
        ax.set_title("time to connect, CDF per winning plugin")
        ax.legend(fontsize=7)
        out["time-to-connect-cdf"] = style.render(fig)
        out["time-to-connect-cells"] = _ttc_per_cell(ok, names)
    wire = _wire_per_run(trials)
    if wire is not None:
        out["wire-cost"] = wire
    points = sweep_table(trials)
    if points is not None and points["odds"].notna().any():
        out["sweep"] = _sweep_figure(points)
    # a run's label may hold a swept value ("random_probe budget=64"): no spaces in file names
    return {name.replace(" ", "_"): fig for name, fig in out.items()}


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


def _sweep_figure(points: pd.DataFrame) -> Rendered:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for (a, b), g in points.groupby(["a", "b"]):
        ax.errorbar(
            g["value"],
            g["success"],
            yerr=[g["success"] - g["low"], g["high"] - g["success"]],
            fmt="o",
            capsize=3,
            label=f"measured, {a} <- {b} (95 % Wilson)",
        )
        ax.plot(g["value"], g["odds"], "--", label="model: 1 - (1 - N/R)^k")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("swept option (random_probe: probe budget k)")
    ax.set_ylabel("share of trials connected")
    ax.set_title("success per swept value, beside the plugin's model")
    ax.legend(fontsize=7)
    return style.render(fig)


def _ttc_per_cell(ok: pd.DataFrame, names: list[str]) -> Rendered:
    """Every successful trial's time to connect per cell (log axis), coloured by winner, TCP as
    circles and UDP as triangles: the groups of one cell stay apart instead of pooling."""
    cells = sorted(
        {(a, b) for a, b in zip(ok["a"], ok["b"], strict=True)}, key=lambda c: (_rank(c[0]), _rank(c[1]))
    )
    x = {cell: i for i, cell in enumerate(cells)}
    fig, ax = plt.subplots(figsize=(max(6.5, 0.28 * len(cells) + 1.5), 3.8))
    transports = ok["transport"] if "transport" in ok.columns else pd.Series("?", index=ok.index)
    for (winner, transport), g in ok.assign(transport=transports).groupby(["winner", "transport"]):
        xs = [x[(a, b)] for a, b in zip(g["a"], g["b"], strict=True)]
        ax.scatter(
            xs,
            g["ttc_ms"],
            s=10,
            alpha=0.7,
            marker="^" if transport == "udp" else "o",
            color=style.colour_of(str(winner), names),
            label=f"{winner} over {transport}",
        )
    ax.set_xticks(range(len(cells)), [f"{a} <- {b}" for a, b in cells], rotation=90, fontsize=6)
    ax.set_yscale("log")
    ax.set_ylabel("time to connect (ms, log)")
    ax.set_title("time to connect per cell (A <- B), by winner and transport")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    return style.render(fig)


def _rank(profile: str) -> int:
    return ORDER.index(profile) if profile in ORDER else len(ORDER)


def wire_per_run(trials: pd.DataFrame) -> pd.DataFrame | None:
    """Median bytes per class on the caller's WAN per trial, per run: in solo mode a run is one
    plugin, so this is each plugin's wire cost (in a race the attempts share the wire)."""
    cols = [c for c in trials.columns if c.startswith("wire_b_") and c.endswith("_bytes")]
    if not cols:
        return None
    return trials.groupby("run")[cols].median().rename(columns=lambda c: c[len("wire_b_") : -len("_bytes")])


def _wire_per_run(trials: pd.DataFrame) -> Rendered | None:
    med = wire_per_run(trials)
    if med is None:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.45 * len(med.index) + 1.0))
    left = pd.Series(0.0, index=med.index)
    for i, cls in enumerate(med.columns):
        ax.barh(
            [str(r) or "race" for r in med.index],
            med[cls],
            left=left,
            color=style.OKABE_ITO[i % len(style.OKABE_ITO)],
            label=cls,
        )
        left += med[cls].fillna(0)
    ax.set_xlabel("median bytes on the caller's WAN per trial")
    ax.set_title("wire cost per run (solo: per plugin), by class")
    ax.legend(fontsize=7, loc="lower right")
    return style.render(fig)


# -- documents -------------------------------------------------------------------------------


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


CAPTIONS = {
    "success": "success rate per cell",
    "winners": "winner per cell",
    "expected": "expected by theory",
    "plugin": "share of trials in which the plugin connected",
    "time-to-connect-cdf": "time to connect (CDF)",
    "time-to-connect-cells": "time to connect per cell and transport",
    "wire-cost": "wire cost per run (per plugin in solo mode)",
    "time-to-connect": "time to connect by winning plugin",
    "sweep": "success per swept value beside the model (the birthday figure for random_probe)",
}


def caption(name: str) -> str:
    for prefix, text in CAPTIONS.items():
        if name == prefix or name.startswith(prefix + "-"):
            rest = name[len(prefix) + 1 :]
            return f"{text}: {rest}" if rest and not prefix.startswith("time") else text
    return name


def _save(figs: dict[str, Rendered], figdir: Path) -> None:
    """Each figure as PNG (300 dpi), SVG and PDF: vector for papers, PNG for everything else."""
    figdir.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        for fmt in ("png", "svg", "pdf"):
            (figdir / f"{name}.{fmt}").write_bytes(getattr(fig, fmt))


def _html_figures(figs: dict[str, Rendered], captions: Any = None) -> str:
    """The figures inline (SVG), for a self-contained HTML page."""
    parts = []
    for name, fig in figs.items():
        text = html.escape(captions(name) if captions else name)
        data = base64.b64encode(fig.svg).decode()
        parts.append(
            f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    return "".join(parts)


def write(run: Path) -> Path:
    """Tables (CSV, Parquet), figures (PNG) and both reports; returns the HTML report's path."""
    trials, attempts, meta = load(run)
    cells = cell_table(trials, flake_of(meta))
    plugins = plugin_table(attempts, trials)
    trials.to_csv(run / "trials.csv", index=False)
    attempts.to_csv(run / "attempts.csv", index=False)
    cells.to_csv(run / "cells.csv", index=False)
    for name, df in (("trials", trials), ("attempts", attempts)):
        df.astype({c: "string" for c in df.columns if df[c].dtype == object}).to_parquet(
            run / f"{name}.parquet"
        )
    figs = figures(cells, plugins, trials)
    _save(figs, run / "figures")
    sc = meta.get("scenario", {})
    mismatches = cells[cells["agrees"].str.startswith("MISMATCH")]
    relayed = relayed_table(cells, trials, attempts)
    connected = int((trials["outcome"] == "connected").sum())
    judged = int((trials["outcome"] != "error").sum())
    summary = {
        "scenario": sc.get("name", "?"),
        "run": meta.get("run_id", "?"),
        "trials": len(trials),
        "success": f"{connected / max(1, judged):.1%}",
        "agent errors (not counted as failures)": int((trials["outcome"] == "error").sum()),
        "cells disagreeing with theory": len(mismatches),
        "pairs relayed": 0 if relayed is None else len(relayed),
        "pairs relayed against a direct rule": 0
        if relayed is None
        else int((relayed["reason"] == "against a direct rule").sum()),
        "pairs relayed while a direct plugin was still on its way": 0
        if relayed is None
        else int((relayed["reason"] == LATE_DIRECT).sum()),
        "median time to connect (ms)": _fmt(trials["ttc_ms"].median()),
        "median lab overhead per trial (ms)": _fmt(trials["overhead_ms"].median()),
        "kernel": meta.get("kernel", "?"),
        "impairments": json.dumps(meta.get("impairments", [])),
    }
    show = cells[
        [
            "a",
            "b",
            "run",
            "trials",
            "errors",
            "success",
            "expected",
            "agrees",
            "winner",
            "relayed",
            "median_ttc_ms",
            "p90_ttc_ms",
        ]
        + (["survived", "survives_expected"] if cells["survives_expected"].notna().any() else [])
    ]
    validation = pd.DataFrame(meta.get("validation", []))
    md = [f"# warpgate NAT matrix: {summary['scenario']}", "", sc.get("description", ""), ""]
    md += [f"- **{k}**: {v}" for k, v in summary.items()]
    md += ["", "## Cells (A = callee, B = caller)", "", _md_table(show), ""]
    if not mismatches.empty:
        md += ["## Cells that disagree with theory", "", _md_table(mismatches[show.columns]), ""]
    if relayed is not None:
        relayed.to_csv(run / "relayed.csv", index=False)
        md += ["## Relayed pairs (and why no direct path)", "", _md_table(relayed), ""]
    wire = wire_table(trials)
    if wire is not None:
        wire.to_csv(run / "wire.csv", index=False)
        md += ["## Wire cost on the caller's WAN (medians per trial)", "", _md_table(wire), ""]
    points = sweep_table(trials)
    if points is not None:
        points.to_csv(run / "sweep.csv", index=False)
        md += ["## Sweep: success per value beside the model (95 % Wilson)", "", _md_table(points), ""]
    families = family_table(trials, meta)
    family_title = "By address family (rescued: connected over IPv6 where IPv4 alone cannot)"
    if families is not None:
        families.to_csv(run / "families.csv", index=False)
        md += [f"## {family_title}", "", _md_table(families), ""]
    md += ["## Figures", ""] + [f"![{n}](figures/{n}.png)" for n in figs]
    if not validation.empty:
        md += ["", "## Router self-validation (RFC 5780)", "", _md_table(validation)]
    (run / "report.md").write_text("\n".join(md) + "\n")
    imgs = _html_figures(figs, caption)
    css = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        "figure{display:inline-block;margin:.5em}img{max-width:560px}.bad{background:#fdd}"
    )
    cells_html = show.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="")
    cells_html = cells_html.replace("<td>MISMATCH", '<td class="bad">MISMATCH')
    title = html.escape(summary["scenario"])
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>warpgate: {title}"
        f"</title><style>{css}</style></head><body><h1>warpgate NAT matrix: {title}"
        f"</h1><p>{html.escape(sc.get('description', ''))}</p><ul>"
        + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in summary.items())
        + "</ul><h2>Figures</h2>"
        + imgs
        + "<h2>Cells (A = callee, B = caller)</h2>"
        + cells_html
        + (
            "<h2>Wire cost on the caller's WAN (medians per trial)</h2>"
            + wire.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="")
            if wire is not None
            else ""
        )
        + (
            f"<h2>{html.escape(family_title)}</h2>" + families.to_html(index=False, na_rep="")
            if families is not None
            else ""
        )
        + (
            "<h2>Sweep: success per value beside the model (95 % Wilson)</h2>"
            + points.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="")
            if points is not None
            else ""
        )
        + (
            "<h2>Router self-validation (RFC 5780)</h2>" + validation.to_html(index=False)
            if not validation.empty
            else ""
        )
        + "</body></html>"
    )
    (run / "report.html").write_text(doc)
    return run / "report.html"


# -- compare and merge ---------------------------------------------------------------------------


def side_by_side(runs: list[Path], out: Path) -> Path:
    """Several runs in one report (two engine versions, solo against race, two machines): per cell,
    each run's n, success with its Wilson interval, winner and median time to connect side by
    side; the success matrices next to each other; the time-to-connect CDFs on one plot. Returns
    the HTML report's path."""
    if len(runs) < 2:
        raise UsageError("a side-by-side report needs at least two runs")
    names = [r.name or str(r) for r in runs]
    if len(set(names)) != len(names):
        names = [str(r) for r in runs]
    tables = []
    all_trials = []
    for name, run in zip(names, runs, strict=True):
        trials, _, meta = load(run)
        cells = cell_table(trials, flake_of(meta)).assign(label=name)
        tables.append(cells)
        all_trials.append(trials.assign(label=name))
    cells = pd.concat(tables, ignore_index=True)
    wide = cells.pivot_table(
        index=["a", "b"],
        columns="label",
        values=["n", "success", "success_low", "success_high", "median_ttc_ms"],
        aggfunc="first",
    )
    winners = cells.pivot_table(index=["a", "b"], columns="label", values="winner", aggfunc="first")

    def get(frame: pd.DataFrame, cell: tuple[str, str], column: Any) -> Any:
        return frame.loc[cell, column] if column in frame.columns else float("nan")

    rows = []
    for cell in wide.index:
        row: dict[str, Any] = {"a": cell[0], "b": cell[1]}
        for name in names:
            succ = get(wide, cell, ("success", name))
            lo, hi, n = (get(wide, cell, (k, name)) for k in ("success_low", "success_high", "n"))
            row[f"{name}: success"] = "-" if pd.isna(succ) else f"{succ:.0%} [{lo:.0%}, {hi:.0%}] n={int(n)}"
            row[f"{name}: winner"] = get(winners, cell, name)
            row[f"{name}: median ms"] = get(wide, cell, ("median_ttc_ms", name))
        rows.append(row)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "side-by-side.csv", index=False)
    order_a, order_b = _order(cells["a"]), _order(cells["b"])
    fig, axes = plt.subplots(
        1, len(names), figsize=(1.0 + (1.2 * len(order_b) + 0.6) * len(names), 1.2 + 0.8 * len(order_a))
    )
    for ax, name in zip(axes, names, strict=True):
        c = cells[cells["label"] == name].groupby(["a", "b"])["success"].mean().unstack()
        c = c.reindex(index=order_a, columns=order_b)
        im = ax.imshow(c.to_numpy(dtype=float), cmap=style.RATE_CMAP, vmin=0, vmax=1)
        _axes(ax, c, name)
    fig.colorbar(im, ax=list(axes), fraction=0.03, label="success rate")
    figs = {"success-side-by-side": style.render(fig)}
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for name, trials in zip(names, all_trials, strict=True):
        xs = trials.loc[trials["outcome"] == "connected", "ttc_ms"].dropna().sort_values().to_numpy()
        if len(xs):
            ax.plot(
                xs,
                [(i + 1) / len(xs) for i in range(len(xs))],
                drawstyle="steps-post",
                label=f"{name} (n={len(xs)})",
            )
    ax.set_xscale("log")
    ax.set_xlabel("time to connect (ms, log)")
    ax.set_ylabel("share of successful trials")
    ax.set_title("time to connect, CDF per run")
    ax.legend(fontsize=7)
    figs["time-to-connect-side-by-side"] = style.render(fig)
    _save(figs, out / "figures")
    md = [f"# Side by side: {', '.join(names)}", "", _md_table(table), ""]
    md += [f"![{n}](figures/{n}.png)" for n in figs]
    (out / "side-by-side.md").write_text("\n".join(md) + "\n")
    imgs = _html_figures(figs)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>side by side</title></head><body>"
        f"<h1>Side by side: {html.escape(', '.join(names))}</h1>{table.to_html(index=False, na_rep='')}"
        f"{imgs}</body></html>"
    )
    path = out / "side-by-side.html"
    path.write_text(page)
    return path


DEFAULT = Thresholds()


def compare(base: Path, new: Path, thresholds: Thresholds = DEFAULT) -> tuple[pd.DataFrame, list[Problem]]:
    """Per-cell differences between two runs, and the regressions among them (``Thresholds``)."""
    base_trials, _, base_meta = load(base)
    new_trials, new_attempts, new_meta = load(new)
    late = _late_direct_cells(new_trials, new_attempts)  # relayed while a direct plugin was on its way
    b = cell_table(base_trials, flake_of(base_meta))
    n = cell_table(new_trials, flake_of(new_meta))
    m = b.merge(n, on=["a", "b", "run"], how="outer", suffixes=("_base", "_new"))
    problems: list[Problem] = []
    for _, r in m.iterrows():
        cell = f"{r['a']}/{r['b']}" + (f" [{r['run']}]" if r["run"] else "")
        if pd.isna(r["success_base"]) or pd.isna(r["success_new"]):
            where = "new" if pd.isna(r["success_base"]) else "base"
            problems.append(Problem(cell, "missing", f"only in {where}"))
            continue
        winners = f"winner {_name(r['winner_base'])} -> {_name(r['winner_new'])}"
        if r["success_new"] < r["success_low_base"] - thresholds.max_drop - 1e-9:
            detail = (
                f"success {r['success_base']:.0%} (n {int(r['n_base'])}, 95 % from "
                f"{r['success_low_base']:.0%}) -> {r['success_new']:.0%} (n {int(r['n_new'])}), {winners}"
            )
            problems.append(Problem(cell, "success_drop", detail))
        if str(r["agrees_base"]) == "ok" and str(r["agrees_new"]).startswith("MISMATCH"):
            problems.append(Problem(cell, "new_disagreement", f"now {r['agrees_new']}, {winners}"))
        # as with success: a share above the base's 95 % interval, so that one relayed trial in
        # ten of a cell whose direct plugin wins by odds (random_probe) is not a regression
        high = 0.0 if pd.isna(r["relayed_high_base"]) else r["relayed_high_base"]
        more = (0.0 if pd.isna(r["relayed_new"]) else r["relayed_new"]) > high + thresholds.max_drop + 1e-9
        rule = r["expected_direct_new"]
        late_only = (r["a"], r["b"], r["run"]) in late
        if more and rule is not None and not pd.isna(rule) and bool(rule) and not late_only:
            detail = (
                f"relayed {r['relayed_base']:.0%} -> {r['relayed_new']:.0%} though a direct rule joins it"
            )
            problems.append(Problem(cell, "relayed_against_rule", f"{detail}, {winners}"))
        tb, tn = r["median_ttc_ms_base"], r["median_ttc_ms_new"]
        if (
            not pd.isna(tb)
            and not pd.isna(tn)
            and tn > tb * thresholds.max_slowdown
            and tn - tb > thresholds.min_ms
        ):
            problems.append(Problem(cell, "slower", f"median time to connect {tb:.1f} -> {tn:.1f} ms"))
    cols = [
        "a",
        "b",
        "run",
        "success_base",
        "success_new",
        "winner_base",
        "winner_new",
        "agrees_base",
        "agrees_new",
        "median_ttc_ms_base",
        "median_ttc_ms_new",
    ]
    return m[cols], problems


def _name(value: Any) -> str:
    return "none" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def junit(problems: list[Problem], table: pd.DataFrame) -> str:
    """The comparison as JUnit XML: one test case per cell, a failure per regression."""
    from xml.etree import ElementTree as ET

    by_cell: dict[str, list[Problem]] = {}
    for p in problems:
        by_cell.setdefault(p.cell, []).append(p)
    cells = [f"{r.a}/{r.b}" + (f" [{r.run}]" if r.run else "") for r in table.itertuples()]
    root = ET.Element("testsuites", name="netsim compare")
    suite = ET.SubElement(
        root,
        "testsuite",
        name="netsim compare",
        tests=str(len(cells)),
        failures=str(len(by_cell)),
        errors="0",
    )
    for cell in cells:
        case = ET.SubElement(suite, "testcase", classname="netsim.compare", name=cell)
        for p in by_cell.get(cell, []):
            failure = ET.SubElement(case, "failure", type=p.kind, message=p.detail)
            failure.text = str(p)
    return ET.tostring(root, encoding="unicode")


def merge(runs: list[Path], out: Path) -> Path:
    """Join shards (or partial runs) of one scenario into one run directory, then write its report."""
    for run in runs:
        for needed in ("meta.json", records.RECORDS):
            if not (run / needed).is_file():
                raise UsageError(f"{run}: no {needed} (is this a run directory?)")
    out.mkdir(parents=True, exist_ok=True)
    seen: set[records.Key] = set()
    lines: list[str] = []
    metas = []
    for run in runs:
        metas.append(json.loads((run / "meta.json").read_text()))
        keep = False
        for line, rec in records.lines(run / records.RECORDS):
            if rec["type"] == "trial":
                key = records.Key.of(rec)
                keep = key not in seen
                seen.add(key)
            if keep:
                lines.append(line)
    names = {m.get("scenario", {}).get("name") for m in metas}
    if len(names) != 1:
        raise UsageError(f"cannot merge runs of different scenarios: {sorted(map(str, names))}")
    meta = dict(metas[0])
    meta["merged_from"] = [str(r) for r in runs]
    meta["shards"] = [m.get("shard") for m in metas]
    (out / records.RECORDS).write_text("\n".join(lines) + "\n")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return write(out)
