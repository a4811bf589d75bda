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


def _any(verdicts: list[bool | None]) -> bool | None:
    """True when one is; unknown when none is and one is unknown; else False."""
    if any(v is True for v in verdicts):
        return True
    if any(v is None for v in verdicts):
        return None
    return False


def expected(plugin: str, a: Side, b: Side, *, ipv6: bool = True) -> bool | None:
    """Should ``plugin`` alone connect B (caller) to A (callee)? None: no theory for it.

    Over IPv4, and for a plugin that works over IPv6 (``Plugin.families``) also over IPv6 when
    both sides have a working IPv6 path (``ipv6=False``: IPv4 alone, what IPv6 rescues)."""
    cls = plugins.available().get(plugin)
    if cls is None:
        return None
    ba, bb = behaviours(a), behaviours(b)
    verdicts = [cls.reach(bb, ba)]
    if ipv6 and "ipv6" in cls.families and ba.ipv6 is not None and bb.ipv6 is not None:
        verdicts.append(cls.reach(bb.ipv6, ba.ipv6))
    return _any(verdicts)


def expected_race(names: tuple[str, ...], a: Side, b: Side, *, ipv6: bool = True) -> bool | None:
    """A race succeeds when any plugin would; unknown when none is known to and one is unknown."""
    return _any([expected(p, a, b, ipv6=ipv6) for p in names])


def needs_signal(plugin: str) -> bool:
    """Does ``plugin`` send signal messages (so cannot work without a broker)?"""
    cls = plugins.available().get(plugin)
    return cls is not None and bool(cls.messages)


def odds(
    plugin: str,
    a: Side,
    b: Side,
    options: dict[str, Any],
    pools: tuple[tuple[int, int], tuple[int, int]],
    within: float | None = None,
) -> float | None:
    """The chance that ``plugin`` alone connects B (caller) to A (callee), for plugins whose
    success is a chance (``Plugin.odds``); None for the others. ``pools``: the external port
    ranges of B's and A's routers; ``within``: the seconds the attempt has (None: unbounded)."""
    cls = plugins.available().get(plugin)
    odds_of = getattr(cls, "odds", None) if cls is not None else None
    if odds_of is None:
        return None
    result: float | None = odds_of(behaviours(b), behaviours(a), options, pools, within)
    return result
