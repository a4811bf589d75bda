"""What each cell of a scenario should do, from the plugins' reach rules (``Plugin.reach``) and
odds (``Plugin.odds``), the scenario's sites and its fault: what ``netsim run`` records as
``expected`` per trial and ``netsim expect`` prints without a lab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netsim.model import theory
from netsim.model.faults import Fault
from netsim.model.nat import EPHEMERAL
from netsim.model.scenario import Scenario, Variant


def theory_odds(scenario: Scenario, variant: Variant, cell: tuple[str, str]) -> float | None:
    """A plugin alone whose success is a chance (``Plugin.odds``): that chance for this cell, its
    options, the two routers' port pools and the scenario's timeout; None otherwise."""
    if scenario.mode != "solo" or not variant.plugins:
        return None
    plugin = variant.plugins[0]
    a, b = scenario.site(cell[0]), scenario.site(cell[1])
    return theory.odds(
        plugin,
        a.behaviours(scenario.portmap),
        b.behaviours(scenario.portmap),
        variant.options.get(plugin, {}),
        (b.port_range or EPHEMERAL, a.port_range or EPHEMERAL),
        scenario.timeout,
    )


def expected_outcome(
    scenario: Scenario,
    plugins: tuple[str, ...],
    cell: tuple[str, str],
    options: dict[str, dict[str, Any]] | None = None,
    *,
    ipv6: bool = True,
) -> bool | None:
    """Should this run of the cell connect? The scenario's ``[expect]`` wins; else the theory, over
    the plugins the scenario's fault leaves able to work. A plugin alone whose success is a chance
    (``Plugin.odds``) is expected to connect at >= 99 %, to fail at <= 1 %, and is not judged
    in between (its sweep's figure compares the measured rate with the chance). ``ipv6=False``:
    over IPv4 alone (the report's "rescued by IPv6" compares the two)."""
    exp = scenario.expect.get(cell)
    if exp is not None:
        return bool(exp) if scenario.mode == "race" else bool(plugins) and plugins[0] in exp
    usable = _usable(scenario.fault, plugins)
    # what the internet sees of each side decides (a site behind a carrier: both NATs composed),
    # with the mapping its router grants the node
    pa = scenario.site(cell[0]).behaviours(scenario.portmap)
    pb = scenario.site(cell[1]).behaviours(scenario.portmap)
    if scenario.mode == "race":
        return theory.expected_race(usable, pa, pb, ipv6=ipv6) if usable else False
    if not usable:
        return False
    sa, sb = scenario.site(cell[0]), scenario.site(cell[1])
    pools = (sb.port_range or EPHEMERAL, sa.port_range or EPHEMERAL)  # the caller's, the callee's
    chance = theory.odds(usable[0], pa, pb, (options or {}).get(usable[0], {}), pools, scenario.timeout)
    if chance is not None:
        return True if chance >= 0.99 else False if chance <= 0.01 else None
    return theory.expected(usable[0], pa, pb, ipv6=ipv6)


RELAYS = ("turn",)
"""The built-in plugins whose pipes are relayed (``path = "relayed"``)."""


def expected_direct(scenario: Scenario, plugins: tuple[str, ...], cell: tuple[str, str]) -> bool | None:
    """In a race with a relay: does a rule of the other racing plugins join the cell over a direct
    path? (The report tells a pair relayed because no direct rule exists from one relayed against
    a rule.) None outside such a race."""
    if scenario.mode != "race" or not set(plugins) & set(RELAYS):
        return None
    direct = tuple(p for p in plugins if p not in RELAYS)
    return expected_outcome(scenario, direct, cell) if direct else False


@dataclass(frozen=True)
class Matrix:
    """What one run of a scenario (a variant: the race, or one plugin alone) should do per cell.

    ``cells[(a, b)]``: ``"yes"`` / ``"no"``, or ``"?"`` where no rule decides; a race with a relay
    says ``"direct"`` or ``"relayed"`` for its yes; a plugin alone whose success is a chance
    between 1 and 99 % gives that chance (``"62 %"``), which the run does not judge."""

    label: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    cells: dict[tuple[str, str], str]


def verdict(scenario: Scenario, variant: Variant, cell: tuple[str, str]) -> str:
    plugins = tuple(variant.plugins or ())
    ok = expected_outcome(scenario, plugins, cell, variant.options)
    if ok is None:
        chance = theory_odds(scenario, variant, cell)
        return f"{chance * 100:.0f} %" if chance is not None else "?"
    if not ok:
        return "no"
    direct = expected_direct(scenario, plugins, cell)
    if direct is None:
        return "yes"
    return "direct" if direct else "relayed"


def matrices(scenario: Scenario) -> list[Matrix]:
    """One ``Matrix`` per variant of the scenario, in the order a trial runs them."""
    return [
        Matrix(
            variant.label,
            scenario.a,
            scenario.b,
            {cell: verdict(scenario, variant, cell) for cell in scenario.cells},
        )
        for variant in scenario.variants()
    ]


def _usable(fault: Fault | None, plugins: tuple[str, ...]) -> tuple[str, ...]:
    """The plugins that can still work under ``fault`` (for the theory): without a broker, none
    that sends a signal message. (Without STUN the theory has no rule: such scenarios list their
    expected cells in ``[expect]``.)"""
    if fault is None or fault.what != "stop-brokers":
        return plugins
    return tuple(p for p in plugins if not theory.needs_signal(p))
