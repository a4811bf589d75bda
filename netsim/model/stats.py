"""Statistics and thresholds of the reports, pure (no pandas): loaded by the CLI at once."""

from __future__ import annotations

import math
from dataclasses import dataclass


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % with z = 1.96); (nan, nan) for n = 0.
    Unlike the normal approximation it stays inside [0, 1] and is honest at 0 and n successes."""
    if n <= 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Thresholds:
    """What ``netsim compare`` calls a regression, defined once (the CLI's defaults are these).

    - ``max_drop``: a cell's new success rate may fall this far below the lower end of the base
      rate's 95 % Wilson interval (so 9 of 10 after 10 of 10 is noise, 0 of 10 is not);
    - ``max_slowdown`` and ``min_ms``: the new median time to connect may be this many times the
      base's, or this many ms slower, whichever is more (machines differ; a CI runner is not the
      baseline's machine);
    - a cell that agreed with its expected outcome and now disagrees is always a regression, and
      so is a cell missing from either run.
    """

    max_drop: float = 0.0
    max_slowdown: float = 2.0
    min_ms: float = 50.0


@dataclass(frozen=True)
class Problem:
    cell: str
    kind: str  # missing | success_drop | slower | new_disagreement
    detail: str

    def __str__(self) -> str:
        return f"{self.cell}: {self.detail}"


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely k or more flukes are at a flake rate p."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def within_flake(flukes: int, n: int, flake: float, level: float = 0.05) -> bool:
    """Whether ``flukes`` outcomes against the expectation, of ``n``, fit a declared flake rate: a
    one-sided binomial test at ``level`` (0 flukes always fit; with no flake rate, none more do).
    Under 2 % loss, 1 lost trial of 100 fits a declared 2 %; 20 do not."""
    return flukes == 0 or binomial_tail(flukes, n, flake) >= level
