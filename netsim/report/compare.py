"""Runs against runs: ``compare`` (the regressions of NEW against BASE, as text, JSON or JUnit
with one test case per cell) and ``side_by_side`` (several runs in one report)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import html

import matplotlib.pyplot as plt
import pandas as pd

from netsim.errors import UsageError
from netsim.model.stats import Problem, Thresholds
from netsim.model.verdict import disagrees
from netsim.report import style
from netsim.report.figures import _axes, cdf, cdf_axes
from netsim.report.render import figure_tags, md_table, save_figures
from netsim.report.tables import _late_direct_cells, cell_table, flake_of, in_matrix_order, load, matrix_order


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
    metas = []
    for name, run in zip(names, runs, strict=True):
        trials, _, meta = load(run)
        metas.append(meta)
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
    order_a, order_b = matrix_order(metas[0], cells["a"], "a"), matrix_order(metas[0], cells["b"], "b")
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
        cdf(ax, trials.loc[trials["outcome"] == "connected", "ttc_ms"], name)
    cdf_axes(ax, "share of successful trials", "time to connect, CDF per run")
    figs["time-to-connect-side-by-side"] = style.render(fig)
    save_figures(figs, out / "figures")
    md = [f"# Side by side: {', '.join(names)}", "", md_table(table), ""]
    md += [f"![{n}](figures/{n}.png)" for n in figs]
    (out / "side-by-side.md").write_text("\n".join(md) + "\n")
    imgs = figure_tags(figs)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>side by side</title></head><body>"
        f"<h1>Side by side: {html.escape(', '.join(names))}</h1>{table.to_html(index=False, na_rep='')}"
        f"{imgs}</body></html>"
    )
    path = out / "side-by-side.html"
    path.write_text(page)
    return path


DEFAULT = Thresholds()


def compare(
    base: Path, new: Path, thresholds: Thresholds = DEFAULT, *, common: bool = False
) -> tuple[pd.DataFrame, list[Problem]]:
    """Per-cell differences between two runs, and the regressions among them (``Thresholds``).
    A cell only one run has is a ``missing`` problem; with ``common`` it is left out (a quick
    run judged against the full matrix's baseline): ``skipped(table)`` counts them."""
    base_trials, _, base_meta = load(base)
    new_trials, new_attempts, new_meta = load(new)
    late = _late_direct_cells(new_trials, new_attempts)  # relayed while a direct plugin was on its way
    b = cell_table(base_trials, flake_of(base_meta))
    n = cell_table(new_trials, flake_of(new_meta))
    m = b.merge(n, on=["a", "b", "run"], how="outer", suffixes=("_base", "_new"), indicator=True)
    m = in_matrix_order(m, base_meta)
    if common:
        m = m[m["_merge"] == "both"]
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
        if str(r["agrees_base"]) == "ok" and disagrees(r["agrees_new"]):
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
        "_merge",
        "success_base",
        "success_new",
        "winner_base",
        "winner_new",
        "agrees_base",
        "agrees_new",
        "median_ttc_ms_base",
        "median_ttc_ms_new",
    ]
    return m[cols].rename(columns={"_merge": "in"}).reset_index(drop=True), problems


def skipped(base: Path, new: Path) -> int:
    """How many cells only one of the two runs has (what ``compare(common=True)`` leaves out)."""
    b, n = (cell_table(load(r)[0])[["a", "b", "run"]] for r in (base, new))
    both = len(b.merge(n, on=["a", "b", "run"]))
    return len(b) + len(n) - 2 * both


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
