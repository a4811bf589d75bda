"""random_probe's rule, its options and its model."""

import asyncio

import pytest

from warpgate import AttemptFailed, ConnectError, Node, Plugin, auto_connect, register
from warpgate.errors import LocalProtocolError
from warpgate.plugins.random_probe import RandomProbe, curve, options, waiting
from warpgate.proto.nat import PRESETS, Behaviours


def side(name):
    return Behaviours(PRESETS[name], PRESETS[name])


def test_a_cone_and_a_random_port_nat_in_either_role():
    assert RandomProbe.reach(side("port-restricted-cone"), side("symmetric"))
    assert RandomProbe.reach(side("symmetric"), side("full-cone"))
    for a, b in [
        ("symmetric", "symmetric"),
        ("port-restricted-cone", "port-restricted-cone"),
        ("symmetric-sequential", "port-restricted-cone"),
        ("udp-blocked", "symmetric"),
    ]:
        assert not RandomProbe.reach(side(a), side(b)), (a, b)


def test_options_are_bounded_and_named():
    assert options({})["sockets"] == 256 and options({"budget": 64})["budget"] == 64
    for bad, match in [
        ({"colour": 1}, "no option 'colour'"),
        ({"sockets": 5000}, "sockets must be an integer in 1..1024"),
        ({"rate": True}, "rate must be an integer"),
        ({"low": 40000, "high": 40010, "budget": 64}, "must hold at least budget ports"),
    ]:
        with pytest.raises(LocalProtocolError, match=match):
            options(bad)


def test_tailscales_figures():
    """256 ports open among 64512: 256 probes about 64 %, 1024 about 98 %, 2048 about 99.9 %."""
    assert curve(256, 64512, 256) == pytest.approx(0.64, abs=0.01)
    assert curve(256, 64512, 1024) == pytest.approx(0.98, abs=0.01)
    assert curve(256, 64512, 2048) > 0.999


@pytest.mark.parametrize(("easy_side", "lucky"), [("port-restricted-cone", True), ("restricted-cone", False)])
async def test_the_wait_for_a_hit_is_reported_as_luck_only_where_it_is_one(clean_registry, easy_side, lucky):
    """``chance_ms``: the part of an attempt a race cannot shorten or lengthen (a probe finding
    one of many ports); against a cone that filters by address, the first probe opens the way."""
    waited = 0.05

    @register
    class Waits(Plugin):
        name = "t_waits"

        async def attempt(self, ctx):
            with waiting(ctx, PRESETS[easy_side]):
                await asyncio.sleep(waited)  # the hit's arrival
            raise AttemptFailed("no hit")

    events = []
    async with Node(interfaces=["lo"]) as a, Node(interfaces=["lo"]) as b:
        with pytest.raises(ConnectError):
            await auto_connect(b, a.address, plugins=["t_waits"], on_event=events.append, timeout=5)
    (ev,) = [e for e in events if e.plugin == "t_waits"]
    if lucky:
        assert waited * 1000 <= ev.chance_ms <= ev.end_ms - ev.start_ms
    else:
        assert ev.chance_ms == 0
