"""One style for every figure of the reports: colour-blind-safe colours, labelled colour bars,
and the three formats a paper needs (SVG and PDF, vector; PNG at 300 dpi)."""

from __future__ import annotations

import io
import zlib
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


BUILT_IN = {
    "direct": "#0072B2",
    "reverse": "#E69F00",
    "udp_punch": "#009E73",
    "tcp_punch": "#CC79A7",
    "random_probe": "#56B4E9",
    "portmap": "#D55E00",
    "turn": "#F0E442",
}
"""The seven built-in plugins' colours (Okabe-Ito): the same in every figure of every run."""
OTHERS = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#882255", "#AA4499", "#661100"]
"""Any other plugin: one of these by a stable hash of its name (Paul Tol's muted scheme)."""
NO_WINNER = "#BBBBBB"
TIME_CMAP = "viridis_r"
"""Times (log scale): light is fast."""
OK, BAD, NONE = "#009E73", "#D55E00", "#DDDDDD"
OUTCOME = {
    "connected": OK,
    "failed": BAD,
    "timeout": "#E69F00",
    "cancelled": "#999999",
}
"""Attempt outcomes in the timeline."""
WIRE = {
    "signal": "#0072B2",
    "stun": "#56B4E9",
    "relay": "#F0E442",
    "names": "#CC79A7",
    "attempts": "#E69F00",
    "winner": "#009E73",
}
LABEL_BOX = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75}
"""Behind a label drawn over colours, so it stays readable on any of them."""


def colour_of(plugin: str | None) -> str:
    """A plugin's colour, whatever else ran: built-ins fixed, others by a stable hash (CRC-32 of
    the name, not Python's salted ``hash``); grey for no winner."""
    if not plugin or plugin in ("nan", "None"):
        return NO_WINNER
    if plugin in BUILT_IN:
        return BUILT_IN[plugin]
    return OTHERS[zlib.crc32(plugin.encode()) % len(OTHERS)]


def ms(value: float) -> str:
    """A duration for people: ``0.42 ms``, ``12.3 ms``, ``187 ms``, ``1.24 s``."""
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    return f"{value:.2g} ms" if value < 1 else f"{value:.3g} ms"
