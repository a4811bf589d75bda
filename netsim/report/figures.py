"""A run's figures: success, agreement with theory, winner shares, time to connect (per winner,
per cell, as a heatmap, as an attempt timeline), reach per plugin, wire cost and sweeps.

Each plugin keeps one colour in every figure of every run (``style.colour_of``); cells come in
the scenario's matrix order.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.patches import Patch, Rectangle

from netsim.model.verdict import disagrees
from netsim.report import style
from netsim.report.style import Rendered
from netsim.report.tables import _rank, matrix_order, sweep_table, wire_per_run

AGREEMENT = {"ok": style.OK, "MISMATCH": style.BAD, "no theory": style.NONE, "no data": style.NONE}


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


def _size(values: pd.DataFrame) -> tuple[float, float]:
    return 1.4 + 1.2 * len(values.columns), 1.0 + 0.8 * len(values.index)


def _winner_shares(
    trials: pd.DataFrame, rows: list[str], cols: list[str], flags: pd.DataFrame, title: str
) -> Rendered:
    """Each cell split into its winners' shares of the connected trials (one colour per plugin,
    grey for trials that did not connect), the most frequent winner named with its count, and
    (!) on a cell that disagrees with theory: a mixed cell shows as mixed."""
    grid = pd.DataFrame(index=rows, columns=cols)
    fig, ax = plt.subplots(figsize=_size(grid))
    seen: set[str] = set()
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            t = trials[(trials["a"] == a) & (trials["b"] == b)]
            judged = t[t["outcome"] != "error"]
            if judged.empty:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="#FFFFFF", ec="#666666"))
                continue
            wins = judged.loc[judged["outcome"] == "connected", "winner"].astype(str).value_counts()
            left = j - 0.5
            for name, count in [*wins.items(), ("", len(judged) - int(wins.sum()))]:
                if not count:
                    continue
                width = count / len(judged)
                ax.add_patch(Rectangle((left, i - 0.5), width, 1, color=style.colour_of(name or None), lw=0))
                left += width
                seen.add(name)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#666666"))
            top = f"{wins.index[0]} {int(wins.iloc[0])}/{len(judged)}" if len(wins) else "none"
            flag = " (!)" if bool(flags.loc[a, b]) else ""
            ax.text(j, i, top + flag, ha="center", va="center", fontsize=6, bbox=style.LABEL_BOX)
    ax.set_xlim(-0.5, len(cols) - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    _axes(ax, grid, title)
    names = sorted(n for n in seen if n)
    handles = [Patch(color=style.colour_of(n)) for n in names] + [Patch(color=style.NO_WINNER)]
    ax.legend(handles, [*names, "no connection"], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    return style.render(fig)


def _agreement(agrees: pd.DataFrame, success: pd.DataFrame, expected: pd.DataFrame, title: str) -> Rendered:
    """Each cell against theory: agrees, disagrees (red, with what was expected and measured),
    or has no theory to judge it by."""
    fig, ax = plt.subplots(figsize=_size(agrees))
    for i, a in enumerate(agrees.index):
        for j, b in enumerate(agrees.columns):
            v = agrees.loc[a, b]
            kind = (
                "no data" if pd.isna(v) else next((k for k in AGREEMENT if str(v).startswith(k)), "no data")
            )
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color=AGREEMENT[kind], ec="#666666"))
            if kind == "MISMATCH":
                e = expected.loc[a, b]
                want = "?" if e is None or pd.isna(e) else ("yes" if bool(e) else "no")
                text = f"expected {want}\nmeasured {success.loc[a, b]:.0%}"
            else:
                text = {"ok": "agrees", "no theory": "no theory", "no data": ""}[kind]
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=6,
                color="white" if kind == "MISMATCH" else "black",
            )
    ax.set_xlim(-0.5, len(agrees.columns) - 0.5)
    ax.set_ylim(len(agrees.index) - 0.5, -0.5)
    _axes(ax, agrees, title)
    handles = [Patch(color=AGREEMENT[k]) for k in ("ok", "MISMATCH", "no theory")]
    ax.legend(
        handles, ["agrees", "disagrees", "no theory"], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7
    )
    return style.render(fig)


def _median_heatmap(median: pd.DataFrame, title: str) -> Rendered:
    """Median time to connect per cell on a log colour scale (ms), blank where nothing connected."""
    fig, ax = plt.subplots(figsize=_size(median))
    values = median.to_numpy(dtype=float)
    finite = values[~pd.isna(values)]
    lo = max(0.1, float(finite.min())) if finite.size else 0.1
    hi = max(lo * 10, float(finite.max())) if finite.size else 1.0
    im = ax.imshow(values, cmap=style.TIME_CMAP, norm=LogNorm(vmin=lo, vmax=hi))
    _axes(ax, median, title)
    for i, a in enumerate(median.index):
        for j, b in enumerate(median.columns):
            v = median.loc[a, b]
            if not pd.isna(v):
                dark = math.log(float(v) / lo) > 0.55 * math.log(hi / lo)  # viridis_r: dark when slow
                ax.text(
                    j,
                    i,
                    style.ms(float(v)),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.04, label="median time to connect (ms, log)")
    return style.render(fig)


def _timeline(trials: pd.DataFrame, attempts: pd.DataFrame, title: str, most: int = 8) -> Rendered | None:
    """The slowest trials of a run, each plugin's attempt a bar from its start to its end,
    coloured by outcome and labelled with the plugin, the winner outlined: why a race took as
    long as it did. Plugins that ruled themselves out (not applicable) are left off."""
    key = ["a", "b", "run", "trial"]
    if attempts.empty or not set(key) <= set(attempts.columns) or "start_ms" not in attempts.columns:
        return None
    ran = attempts[attempts["outcome"] != "not_applicable"]
    if ran.empty:
        return None
    t = trials.assign(_when=trials["ttc_ms"].fillna(trials.get("total_ms", trials["ttc_ms"])).fillna(0))
    slowest = t.sort_values("_when", ascending=False).head(most)
    rows: list[tuple[str, Any]] = []
    for trial in slowest.itertuples():
        mine = ran[
            (ran["a"] == trial.a)
            & (ran["b"] == trial.b)
            & (ran["run"] == trial.run)
            & (ran["trial"] == trial.trial)
        ]
        for k, att in enumerate(mine.sort_values("start_ms").itertuples()):
            rows.append((f"{trial.a} <- {trial.b} #{trial.trial}" if k == 0 else "", att))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.22 * len(rows)))
    for y, (_, att) in enumerate(rows):
        start, end = float(att.start_ms), float(att.end_ms)
        won = bool(getattr(att, "won", False)) and att.outcome == "connected"
        ax.barh(
            y,
            max(end - start, 0.05),
            left=start,
            color=style.OUTCOME.get(str(att.outcome), style.NONE),
            edgecolor="black" if won else "none",
            linewidth=1.2 if won else 0,
        )
        ax.text(end, y, f" {att.plugin}" + (" (winner)" if won else ""), va="center", fontsize=6)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=6)
    for y, (label, _) in enumerate(rows):
        if label and y:  # a rule between trials
            ax.axhline(y - 0.5, color="#666666", lw=0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("ms since auto_connect was called")
    ax.set_title(title)
    handles = [Patch(color=c) for c in style.OUTCOME.values()]
    ax.legend(handles, list(style.OUTCOME), fontsize=6, loc="lower right")
    return style.render(fig)


def cdf(ax: Any, ms: pd.Series, label: str, colour: str | None = None) -> None:
    """One empirical CDF of times to connect (a step per trial), labelled with its n."""
    xs = ms.dropna().sort_values().to_numpy()
    if len(xs):
        steps = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.plot(xs, steps, drawstyle="steps-post", label=f"{label} (n={len(xs)})", color=colour)


def cdf_axes(ax: Any, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("time to connect (ms, log)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)


def figures(
    cells: pd.DataFrame,
    plugins: pd.DataFrame,
    trials: pd.DataFrame,
    attempts: pd.DataFrame | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Rendered]:
    meta = meta or {}
    out: dict[str, Rendered] = {}
    rows, cols = matrix_order(meta, cells["a"], "a"), matrix_order(meta, cells["b"], "b")
    for run, c in cells.groupby("run", sort=False):
        label = run or "all plugins"
        name = str(run).replace(",", "+") or "race"
        in_run = trials[trials["run"] == run]

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
        out[f"success-{name}"] = _heatmap(
            success, f"success rate, n and 95 % Wilson interval ({label})", labels
        )
        agrees = grid("agrees")
        flags = agrees.map(disagrees)
        out[f"agreement-{name}"] = _agreement(
            agrees, success, grid("expected"), f"agreement with theory ({label})"
        )
        out[f"winners-{name}"] = _winner_shares(
            in_run, rows, cols, flags, f"winners per cell ({label}); (!) = disagrees with theory"
        )
        median = grid("median_ttc_ms")
        if median.notna().any().any():
            out[f"median-ttc-{name}"] = _median_heatmap(median, f"median time to connect ({label})")
        expected = grid("expected")
        out[f"expected-{name}"] = _heatmap(
            expected.astype(float),
            f"expected by theory ({label})",
            labels=expected.map(lambda v: "?" if v is None or pd.isna(v) else ("yes" if v else "no")),
            bar="expected to connect (1) or not (0)",
        )
        if attempts is not None:
            timeline = _timeline(
                in_run,
                attempts[attempts["run"] == run] if "run" in attempts else attempts,
                f"attempt timeline of the slowest trials ({label})",
            )
            if timeline is not None:
                out[f"timeline-{name}"] = timeline
    raced = "mode" in trials and (trials["mode"] == "race").any()
    observed = "observe" in trials and (trials["observe"].fillna(0) > 0).all()
    note = "" if not raced or observed else "\n(a lower bound: the race cancelled losers while pending)"
    for plugin, p in plugins.groupby("plugin"):
        m = p.pivot(index="a", columns="b", values="connected").reindex(index=rows, columns=cols)
        seen = p.pivot(index="a", columns="b", values="observed").reindex(index=rows, columns=cols)
        never = seen.fillna(0) == 0
        labels = m.map(lambda v: "" if pd.isna(v) else f"{v:.0%}").where(~never, "not observed")
        out[f"plugin-{plugin}"] = _heatmap(
            m.where(~never),
            f"{plugin}: share of the trials it ran in where it connected{note}",
            labels,
            bar="share of its trials",
        )
    ok = trials[trials["outcome"] == "connected"]
    if not ok.empty:
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        groups = [(w, g["ttc_ms"].dropna().to_numpy()) for w, g in ok.groupby("winner")]
        ax.boxplot([g for _, g in groups], tick_labels=[w for w, _ in groups], showfliers=False)
        for i, (w, g) in enumerate(groups):  # every trial as a point over its box
            jitter = [(k % 7 - 3) * 0.03 for k in range(len(g))]
            ax.scatter([i + 1 + x for x in jitter], g, s=6, alpha=0.5, color=style.colour_of(str(w)))
        ax.set_yscale("log")
        ax.set_ylabel("time to connect (ms, log)")
        ax.set_title("time to connect, by winning plugin (every trial a point)")
        out["time-to-connect"] = style.render(fig)
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        for w, g in ok.groupby("winner"):
            cdf(ax, g["ttc_ms"], str(w), style.colour_of(str(w)))
        cdf_axes(ax, "share of its successful trials", "time to connect, CDF per winning plugin")
        out["time-to-connect-cdf"] = style.render(fig)
        out["time-to-connect-cells"] = _ttc_per_cell(ok)
    wire = _wire_per_run(trials)
    if wire is not None:
        out["wire-cost"] = wire
    points = sweep_table(trials)
    if points is not None and points["odds"].notna().any():
        out["sweep"] = _sweep_figure(points)
    # a run's label may hold a swept value ("random_probe budget=64"): no spaces in file names
    return {name.replace(" ", "_"): fig for name, fig in out.items()}


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


def _ttc_per_cell(ok: pd.DataFrame) -> Rendered:
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
            color=style.colour_of(str(winner)),
            label=f"{winner} over {transport}",
        )
    ax.set_xticks(range(len(cells)), [f"{a} <- {b}" for a, b in cells], rotation=90, fontsize=6)
    ax.set_yscale("log")
    ax.set_ylabel("time to connect (ms, log)")
    ax.set_title("time to connect per cell (A <- B), by winner and transport")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    return style.render(fig)


def _wire_per_run(trials: pd.DataFrame) -> Rendered | None:
    med = wire_per_run(trials)
    if med is None:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.45 * len(med.index) + 1.0))
    left = pd.Series(0.0, index=med.index)
    for cls in med.columns:  # disjoint classes: the bar's length is the whole wire cost
        ax.barh(
            [str(r) or "race" for r in med.index], med[cls], left=left, color=style.WIRE.get(cls), label=cls
        )
        left += med[cls].fillna(0)
    ax.set_xlabel("median bytes on the caller's WAN per trial")
    ax.set_title("wire cost per run (solo: per plugin), by class")
    ax.legend(fontsize=7, loc="lower right")
    return style.render(fig)
