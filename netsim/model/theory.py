"""What should connect, derived from the profiles' RFC 4787 axes (the "expected" of every cell).

Each plugin owns its rule (``Plugin.reach(caller, callee)`` over a site's UDP and TCP behaviour):
``direct`` works when the callee is reachable from the caller, ``reverse`` when the caller is
reachable from the callee, ``udp_punch`` when both mappings can be predicted (or one side is a cone
that lets in any port of the other's address). A plugin without a rule gives ``None`` (not
deterministic, or not modelled): reports show it as observed only. Side A is the callee, B the
caller. A side is a preset's name or any ``Profile`` (a scenario's site, as the internet sees it).
"""

from __future__ import annotations

from typing import Any

from netsim.model.nat import Profile, profile
from warpgate import plugins
from warpgate.proto.nat import Behaviours

Side = str | Profile | Behaviours


def behaviours(side: Side) -> Behaviours:
    """A preset or profile as reach rules see it (no gateway mapping); ``Behaviours`` as given
    (a scenario's site with its port mapping: ``SiteSpec.behaviours``)."""
    if isinstance(side, Behaviours):
        return side
    p = profile(side)
    return Behaviours(p.udp, p.tcp)


def expected(plugin: str, a: Side, b: Side) -> bool | None:
    """Should ``plugin`` alone connect B (caller) to A (callee)? None: no theory for it."""
    cls = plugins.available().get(plugin)
    if cls is None:
        return None
    return cls.reach(behaviours(b), behaviours(a))


def expected_race(names: tuple[str, ...], a: Side, b: Side) -> bool | None:
    """A race succeeds when any plugin would; unknown when none is known to and one is unknown."""
    verdicts = [expected(p, a, b) for p in names]
    if any(v is True for v in verdicts):
        return True
    if any(v is None for v in verdicts):
        return None
    return False


def needs_signal(plugin: str) -> bool:
    """Does ``plugin`` send signal messages (so cannot work without a broker)?"""
    cls = plugins.available().get(plugin)
    return cls is not None and bool(cls.messages)


def odds(
    plugin: str, a: Side, b: Side, options: dict[str, Any], pools: tuple[tuple[int, int], tuple[int, int]]
) -> float | None:
    """The chance that ``plugin`` alone connects B (caller) to A (callee), for plugins whose
    success is a chance (``Plugin.odds``); None for the others. ``pools``: the external port
    ranges of B's and A's routers."""
    cls = plugins.available().get(plugin)
    odds_of = getattr(cls, "odds", None) if cls is not None else None
    if odds_of is None:
        return None
    result: float | None = odds_of(behaviours(b), behaviours(a), options, pools)
    return result
