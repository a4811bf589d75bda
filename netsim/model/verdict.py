"""A cell's verdict: what its judged trials say against what theory expected, as a type.

A cell agrees with theory when its trials did what the plugins' rules predict, within the
scenario's declared flake rate (``stats.within_flake``); trials whose agent crashed are not judged
(they say nothing about the NAT), so a cell of only such trials has no data, and a cell no rule
decides has no theory. With a mid-pipe fault, the pipe's survival is judged too. The report, its
run verdict, ``netsim.testing`` and ``netsim compare`` all read this one judgement.
"""

from __future__ import annotations

import enum
import math

from netsim.model.stats import within_flake


class Verdict(enum.Enum):
    """How a cell stands against theory; the value is what tables and reports print."""

    OK = "ok"
    NO_THEORY = "no theory"
    NO_DATA = "no data (every trial an agent error)"
    EXPECTED_TO_CONNECT = "MISMATCH (expected to connect)"
    EXPECTED_TO_FAIL = "MISMATCH (expected to fail)"
    EXPECTED_TO_SURVIVE = "MISMATCH (pipe expected to survive the fault)"
    EXPECTED_TO_BREAK = "MISMATCH (pipe expected to break under the fault)"

    @property
    def disagrees(self) -> bool:
        return self.value.startswith("MISMATCH")


def _known(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def judge(
    judged: int,
    hits: int,
    expected: bool | None,
    flake: float = 0.0,
    *,
    survived: float | None = None,
    survives_expected: float | None = None,
) -> Verdict:
    """The verdict of a cell with ``judged`` trials (agent errors left out), ``hits`` of them
    connected, against ``expected``; ``survived`` is the share of connected trials whose pipe
    still carried data after a mid-pipe fault, ``survives_expected`` what theory says of it."""
    if judged == 0:
        return Verdict.NO_DATA
    if not _known(expected):
        return Verdict.NO_THEORY
    if expected and not within_flake(judged - hits, judged, flake):
        return Verdict.EXPECTED_TO_CONNECT
    if not expected and not within_flake(hits, judged, flake):
        return Verdict.EXPECTED_TO_FAIL
    if _known(survives_expected) and _known(survived) and survived != float(survives_expected):  # type: ignore[arg-type]
        return Verdict.EXPECTED_TO_SURVIVE if float(survives_expected) else Verdict.EXPECTED_TO_BREAK  # type: ignore[arg-type]
    return Verdict.OK


def disagrees(agrees: object) -> bool:
    """Whether a table's ``agrees`` value (a ``Verdict``'s) says the cell disagrees with theory."""
    return isinstance(agrees, str) and agrees in _DISAGREEING


_DISAGREEING = {v.value for v in Verdict if v.disagrees}
