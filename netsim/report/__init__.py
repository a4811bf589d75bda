"""Reports of lab runs: tables (``tables``), figures (``figures``), the report itself in markdown
and HTML from one list of sections (``render``), and runs against runs (``compare``).

    from netsim import report
    report.write(run_dir)                       # report.md, report.html, figures/, *.csv
    table, problems = report.compare(base, new)  # regressions of NEW against BASE
"""

from __future__ import annotations

from pathlib import Path

from netsim.model import records
from netsim.report.compare import compare, junit, side_by_side, skipped
from netsim.report.figures import figures
from netsim.report.render import sections, write
from netsim.report.tables import (
    LATE_DIRECT,
    Verdict,
    cell_table,
    family_table,
    flake_of,
    judge,
    load,
    plugin_table,
    relayed_table,
    sweep_table,
    wire_per_run,
    wire_table,
)


def merge(runs: list[Path], out: Path) -> Path:
    """Join shards of one scenario into one run (``records.merge``), then write its report."""
    records.merge(runs, out)
    return write(out)


__all__ = [
    "LATE_DIRECT",
    "Verdict",
    "cell_table",
    "compare",
    "family_table",
    "figures",
    "flake_of",
    "judge",
    "junit",
    "load",
    "merge",
    "plugin_table",
    "relayed_table",
    "sections",
    "side_by_side",
    "skipped",
    "sweep_table",
    "wire_per_run",
    "wire_table",
    "write",
]
