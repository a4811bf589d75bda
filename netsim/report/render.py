"""A run's report: one list of sections, rendered twice, as ``report.md`` and as a self-contained
``report.html``; the tables as CSV and Parquet, the figures as PNG, SVG and PDF.

Both documents open with the verdict (``verdict: PASS`` or ``FAIL`` with its counts) and the cells
that disagree with theory, each with what was expected and what was measured.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from netsim.model.verdict import disagrees
from netsim.report import style
from netsim.report.figures import figures
from netsim.report.style import Rendered
from netsim.report.tables import (
    LATE_DIRECT,
    Verdict,
    cell_table,
    family_table,
    flake_of,
    in_matrix_order,
    judge,
    load,
    pct,
    plugin_table,
    relayed_table,
    success_text,
    sweep_table,
    wire_table,
)


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading with text, a list of facts, a table or figures."""

    title: str
    text: str = ""
    facts: tuple[tuple[str, str], ...] = ()
    table: pd.DataFrame | None = None
    figures: dict[str, Rendered] = field(default_factory=dict)


CAPTIONS = {
    "success": "success rate per cell",
    "agreement": "agreement with theory",
    "winners": "winner per cell, with each winner's share",
    "median-ttc": "median time to connect per cell",
    "timeline": "attempt timeline of the slowest trials",
    "expected": "expected by theory",
    "plugin": "share of trials in which the plugin connected",
    "time-to-connect-cdf": "time to connect (CDF)",
    "time-to-connect-cells": "time to connect per cell and transport",
    "wire-cost": "wire cost per run (per plugin in solo mode)",
    "time-to-connect": "time to connect by winning plugin",
    "sweep": "success per swept value beside the model (the birthday figure for random_probe)",
}


def caption(name: str) -> str:
    for prefix in sorted(CAPTIONS, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "-"):
            rest = name[len(prefix) + 1 :]
            text = CAPTIONS[prefix]
            return f"{text}: {rest}" if rest and not prefix.startswith("time-to-connect") else text
    return name


# -- what the tables show ------------------------------------------------------------------------


def _yes_no(v: Any) -> str:
    return "?" if v is None or pd.isna(v) else ("yes" if bool(v) else "no")


def _ms(v: Any) -> str:
    return "" if v is None or pd.isna(v) else style.ms(float(v))


def _pct(v: Any) -> str:
    return "" if v is None or pd.isna(v) else pct(float(v))


def cells_view(cells: pd.DataFrame) -> pd.DataFrame:
    """The cell table for people: success as ``k/n · pct [interval]``, times in ms or s."""
    view = pd.DataFrame(
        {
            "A (callee)": cells["a"],
            "B (caller)": cells["b"],
            "run": cells["run"],
            "trials": cells["trials"],
            "agent errors": cells["errors"],
            "success": [
                success_text(k, n, lo, hi)
                for k, n, lo, hi in zip(
                    cells["connected"], cells["n"], cells["success_low"], cells["success_high"], strict=True
                )
            ],
            "expected": cells["expected"].map(_yes_no),
            "agrees": cells["agrees"],
            "winner": [
                "" if pd.isna(w) else f"{w} {int(k)}/{int(c)}"
                for w, k, c in zip(cells["winner"], cells["winner_wins"], cells["connected"], strict=True)
            ],
            "relayed": cells["relayed"].map(_pct),
            "median": cells["median_ttc_ms"].map(_ms),
            "p90": cells["p90_ttc_ms"].map(_ms),
        }
    )
    if cells["survives_expected"].notna().any():
        view["survived"] = cells["survived"].map(_pct)
        view["survives expected"] = cells["survives_expected"].map(_yes_no)
    if not cells["run"].astype(str).str.len().any() or cells["run"].nunique() == 1:
        view = view.drop(columns=["run"])
    return view


def _rounded(cells: pd.DataFrame) -> pd.DataFrame:
    """cells.csv to what the instruments resolve: rates to 0.01 %, times to 0.01 ms."""
    out = cells.copy()
    for c in out.columns:
        if out[c].dtype.kind == "f":
            out[c] = out[c].round(2 if c.endswith("_ms") else 4)
    return out


def sections(run: Path) -> tuple[Verdict, list[Section], dict[str, pd.DataFrame]]:
    """The verdict, the report's sections in order, and the tables to write as CSV."""
    trials, attempts, meta = load(run)
    cells = in_matrix_order(cell_table(trials, flake_of(meta)), meta)
    plugins = plugin_table(attempts, trials)
    verdict = judge(cells, trials)
    sc = meta.get("scenario", {})
    relayed = relayed_table(cells, trials, attempts)
    wire = wire_table(trials)
    wire = None if wire is None else in_matrix_order(wire, meta)
    points = sweep_table(trials)
    families = family_table(trials, meta)
    families = None if families is None else in_matrix_order(families, meta)
    validation = pd.DataFrame(meta.get("validation", []))
    connected = int((trials["outcome"] == "connected").sum())
    judged = int((trials["outcome"] != "error").sum())

    def count(reason: str) -> str:
        return str(0 if relayed is None else int((relayed["reason"] == reason).sum()))

    facts = (
        ("scenario", str(sc.get("name", "?"))),
        ("run", str(meta.get("run_id", "?"))),
        ("trials", f"{len(trials)} ({connected}/{judged} connected)"),
        ("agent errors (not counted as failures)", str(verdict.agent_errors)),
        ("pairs relayed", str(0 if relayed is None else len(relayed))),
        ("pairs relayed against a direct rule", count("against a direct rule")),
        ("pairs relayed while a direct plugin was still on its way", count(LATE_DIRECT)),
        ("median time to connect", _ms(trials["ttc_ms"].median())),
        ("median lab overhead per trial", _ms(trials["overhead_ms"].median())),
        ("kernel", str(meta.get("kernel", "?"))),
        ("impairments", json.dumps(meta.get("impairments", []))),
    )
    view = cells_view(cells)
    bad = cells["agrees"].map(disagrees) | (cells["n"] == 0)
    out = [
        Section(
            "Cells that disagree with theory",
            "Each with what theory expected and what was measured.",
            table=view[bad.to_numpy()].reset_index(drop=True),
        )
        if bad.any()
        else Section("", "Every cell agrees with theory."),
        Section("Summary", str(sc.get("description", "")), facts=facts),
        Section("Figures", figures=figures(cells, plugins, trials, attempts, meta)),
        Section("Cells (A = callee, B = caller)", table=view),
    ]
    csv = {"trials": trials, "attempts": attempts, "cells": _rounded(cells)}
    if relayed is not None:
        out.append(Section("Relayed pairs (and why no direct path)", table=relayed))
        csv["relayed"] = relayed
    if wire is not None:
        out.append(Section("Wire cost on the caller's WAN (medians per trial)", table=wire))
        csv["wire"] = wire
    if points is not None:
        out.append(Section("Sweep: success per value beside the model (95 % Wilson)", table=points))
        csv["sweep"] = points
    if families is not None:
        title = "By address family (rescued: connected over IPv6 where IPv4 alone cannot)"
        out.append(Section(title, table=families))
        csv["families"] = families
    if not validation.empty:
        out.append(Section("Router self-validation (RFC 5780)", table=validation))
    return verdict, out, csv


# -- the two renderings ----------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"  # 1,580 bytes, not 1.58e+03
    return str(v)


def md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines)


def markdown(title: str, verdict: Verdict, parts: list[Section]) -> str:
    md = [f"# {title}", "", f"**{verdict.line}**", ""]
    for s in parts:
        if s.title:
            md += [f"## {s.title}", ""]
        if s.text:
            md += [s.text, ""]
        if s.facts:
            md += [*(f"- **{k}**: {v}" for k, v in s.facts), ""]
        if s.table is not None:
            md += [md_table(s.table), ""]
        if s.figures:
            md += [*(f"![{caption(n)}](figures/{n}.png)" for n in s.figures), ""]
    return "\n".join(md)


CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
    "figure{display:inline-block;width:48%;margin:.5em 0;vertical-align:top}img{width:100%}"
    "figcaption{font-size:13px;color:#444}"
    ".bad{background:#fdd}.verdict{font-size:1.4em;font-weight:bold;padding:.5em 1em;border-radius:6px}"
    ".PASS{background:#d7f2e6;color:#005b3f}.FAIL{background:#fbe0d3;color:#8a2e00}"
)


def html_page(title: str, verdict: Verdict, parts: list[Section]) -> str:
    state = "PASS" if verdict.passed else "FAIL"
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="verdict {state}">{html.escape(verdict.line)}</p>']
    for s in parts:
        if s.title:
            body.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            body.append(f"<p>{html.escape(s.text)}</p>")
        if s.facts:
            items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in s.facts)
            body.append(f"<ul>{items}</ul>")
        if s.table is not None:
            table = s.table.to_html(index=False, float_format=_fmt, na_rep="")
            body.append(table.replace("<td>MISMATCH", '<td class="bad">MISMATCH'))
        body.append(figure_tags(s.figures, caption))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def save_figures(figs: dict[str, Rendered], figdir: Path) -> None:
    """Each figure as PNG (300 dpi), SVG and PDF: vector for papers, PNG for everything else."""
    figdir.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        for fmt in ("png", "svg", "pdf"):
            (figdir / f"{name}.{fmt}").write_bytes(getattr(fig, fmt))


def figure_tags(figs: dict[str, Rendered], captions: Any = None) -> str:
    """Figures inline (SVG), for a self-contained page."""
    parts = []
    for name, fig in figs.items():
        data = base64.b64encode(fig.svg).decode()
        text = html.escape(captions(name) if captions else name)
        parts.append(
            f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    return "".join(parts)


def write(run: Path) -> Path:
    """Tables (CSV, Parquet), figures (PNG, SVG, PDF) and both reports; returns the HTML's path."""
    verdict, parts, csv = sections(run)
    for name, df in csv.items():
        df.to_csv(run / f"{name}.csv", index=False)
    for name in ("trials", "attempts"):
        df = csv[name]
        df.astype({c: "string" for c in df.columns if df[c].dtype == object}).to_parquet(
            run / f"{name}.parquet"
        )
    for s in parts:
        save_figures(s.figures, run / "figures")
    name = next((v for k, v in parts[1].facts if k == "scenario"), "?")
    title = f"warpgate NAT matrix: {name}"
    (run / "report.md").write_text(markdown(title, verdict, parts) + "\n")
    (run / "report.html").write_text(html_page(title, verdict, parts))
    return run / "report.html"
