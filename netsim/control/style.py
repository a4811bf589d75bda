"""One style for every figure of the reports: colour-blind-safe colours, labelled colour bars,
and the three formats a paper needs (SVG and PDF, vector; PNG at 300 dpi)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from cycler import cycler

RATE_CMAP = "cividis"
"""Rates (0..1): perceptually uniform and readable with every common colour-vision deficiency."""

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
"""Categories (plugins): the Okabe-Ito palette, distinguishable under colour-vision deficiencies."""

DPI = 300

plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.prop_cycle": cycler(color=OKABE_ITO),
        "figure.dpi": 100,
        "savefig.bbox": "tight",
        "svg.fonttype": "none",  # text stays text in SVG
        "pdf.fonttype": 42,  # TrueType in PDF, as journals ask
    }
)


@dataclass(frozen=True)
class Rendered:
    png: bytes
    svg: bytes
    pdf: bytes


def render(fig: Any) -> Rendered:
    """The figure in all three formats; the figure is closed."""
    out = {}
    for fmt in ("png", "svg", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=DPI)
        out[fmt] = buf.getvalue()
    plt.close(fig)
    return Rendered(**out)


def colour_of(plugin: str, plugins: list[str]) -> str:
    return OKABE_ITO[plugins.index(plugin) % len(OKABE_ITO)] if plugin in plugins else "#BBBBBB"
