"""The race policy (``RacePolicy``), tested with plugins whose reach rules lie.

A plugin yields to the cheaper plugins its policy names where their rules say they join the pair:
it starts when they have all ended without a pipe, at the latest after its patience, and never
when one of them wins first. Each fake rule here says "connects"; what the plugin then does is
the lie (it hangs, fails, raises) or the truth (it connects).
"""

import asyncio

import pytest

from tests.conftest import assert_no_tasks
from warpgate import AttemptFailed, Node, Outcome, Plugin, RacePolicy, auto_connect, register
from warpgate.errors import PluginError
from warpgate.pipe import Pipe
from warpgate.plugins.base import HANDSHAKE_CAP, HANDSHAKE_FLOOR
from warpgate.proto.handshake import Keys
from warpgate.race import NEVER_STARTED

began: list[str] = []


def fake_pipe(ctx, name):
    return Pipe(
        "tcp",
        peer_key=ctx.dest.public_key,
        conn_id=ctx.conn_id,
        plugin=name,
        local=("127.0.0.1", 1),
        remote=("127.0.0.1", 2),
        send_raw=lambda d: None,
        close_raw=lambda: None,
        keys=Keys(bytes(32), bytes(32)),
    )


class Claims(Plugin):
    """A rule that always says "connects"."""

    @classmethod
    def reach(cls, caller, callee):
        return True


class Hangs(Claims):
    name = "t_hangs"

    async def attempt(self, ctx):
        began.append(self.name)
        await asyncio.sleep(30)
        raise AssertionError("unreachable")


class Refuses(Claims):
    name = "t_refuses"

    async def attempt(self, ctx):
        began.append(self.name)
        raise AttemptFailed("the peer refused")


class Raises(Claims):
    name = "t_raises"

    async def attempt(self, ctx):
        began.append(self.name)
        raise ZeroDivisionError("a plugin bug")


class Wins(Claims):
    name = "t_wins"
    release: asyncio.Event | None = None

    async def attempt(self, ctx):
        began.append(self.name)
        if Wins.release is not None:
            await Wins.release.wait()
        return fake_pipe(ctx, self.name)


class Unlikely(Plugin):
    """A cheaper plugin whose rule says it cannot join the pair: nobody waits for it."""

    name = "t_unlikely"

    @classmethod
    def reach(cls, caller, callee):
        return False

    async def attempt(self, ctx):
        began.append(self.name)
        await asyncio.sleep(30)
        raise AssertionError("unreachable")


def follower(name, behind, patience="handshake"):
    class Follower(Plugin):
        policy = RacePolicy(behind=behind, patience=patience)

        async def attempt(self, ctx):
            began.append(self.name)
            return fake_pipe(ctx, self.name)

    Follower.name = name
    return Follower


@pytest.fixture(autouse=True)
def fakes(clean_registry):
    for cls in (Hangs, Refuses, Raises, Wins, Unlikely):
        register(cls)
    register(follower("t_after_hangs", ("t_hangs",)))
    register(follower("t_after_refuses", ("t_refuses",)))
    register(follower("t_after_raises", ("t_raises",)))
    register(follower("t_after_wins", ("t_wins",)))
    register(follower("t_after_unlikely", ("t_unlikely",)))
    register(follower("t_relay", "*", "relay"))
    began.clear()
    Wins.release = None


@pytest.fixture
async def nodes():
    async with Node(interfaces=["lo"]) as a, Node(interfaces=["lo"], relay_head_start=20.0) as b:
        yield a, b


async def race(b, a, plugins, **kw):
    events = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    pipe, plugin = await auto_connect(b, a.address, plugins=plugins, on_event=events.append, timeout=30, **kw)
    took = loop.time() - t0
    await pipe.close()
    return plugin.name, {e.plugin: e for e in events}, took


async def test_a_cheaper_plugin_that_claims_reach_and_hangs_delays_the_pair_by_its_head_start_only(nodes):
    a, b = nodes
    won, by, took = await race(b, a, ["t_hangs", "t_after_hangs"])
    assert won == "t_after_hangs"
    # it waited its patience (no STUN here: the floor), and not the liar's 30 s
    assert HANDSHAKE_FLOOR <= took < HANDSHAKE_CAP + 1.0
    assert by["t_hangs"].outcome is Outcome.CANCELLED and by["t_hangs"].reason == "another plugin won"


@pytest.mark.parametrize("liar", ["t_refuses", "t_raises"])
async def test_a_cheaper_plugin_that_fails_ends_the_head_start_at_once(nodes, liar):
    a, b = nodes
    won, by, took = await race(b, a, [liar, f"t_after_{liar[2:]}"])
    assert won == f"t_after_{liar[2:]}"
    assert took < HANDSHAKE_FLOOR  # released by the failure, not by the timer
    assert by[liar].outcome is Outcome.FAILED
    if liar == "t_raises":
        assert (
            by[liar].reason.startswith("bug: ZeroDivisionError")
            and by[liar].error_class == "ZeroDivisionError"
        )


@pytest.mark.parametrize("observe", [0.0, 0.5])
async def test_a_plugin_held_back_never_starts_when_the_cheaper_one_wins(nodes, observe):
    a, b = nodes
    Wins.release = asyncio.Event()
    task = asyncio.ensure_future(race(b, a, ["t_wins", "t_after_wins"], observe=observe))
    while "t_wins" not in began:
        await asyncio.sleep(0)  # let the race start: t_wins runs, the follower waits
    Wins.release.set()
    won, by, _ = await task
    assert won == "t_wins"
    assert "t_after_wins" not in began  # not even in observe mode: it spent nothing
    assert by["t_after_wins"].outcome is Outcome.CANCELLED and by["t_after_wins"].reason == NEVER_STARTED
    await asyncio.gather(*[t for t in asyncio.all_tasks() if t.get_name() == "warpgate-observe-losers"])
    assert_no_tasks()


async def test_nobody_waits_for_a_plugin_whose_rule_says_no(nodes):
    a, b = nodes
    won, by, took = await race(b, a, ["t_unlikely", "t_after_unlikely"])
    assert won == "t_after_unlikely" and took < HANDSHAKE_FLOOR
    assert by["t_unlikely"].outcome is Outcome.CANCELLED


async def test_a_long_shot_yields_to_any_plugin_whose_rule_says_it_connects(nodes, clean_registry):
    class LongShot(Plugin):  # first in cost, but its rule says it does not join the pair
        name = "t_long_shot"

        @classmethod
        def reach(cls, caller, callee):
            return False

        async def attempt(self, ctx):
            began.append(self.name)
            raise AttemptFailed("as its rule said")

    class Costly(Wins):  # a likely plugin that yields to the long shot by order: it must not
        name = "t_costly"
        policy = RacePolicy(behind=("t_long_shot",))

    register(LongShot)
    register(Costly)
    a, b = nodes
    Wins.release = asyncio.Event()
    task = asyncio.ensure_future(race(b, a, ["t_long_shot", "t_costly"]))
    while "t_costly" not in began:
        await asyncio.sleep(0)
    Wins.release.set()
    won, by, took = await task
    assert won == "t_costly" and took < HANDSHAKE_FLOOR
    assert "t_long_shot" not in began and by["t_long_shot"].reason == NEVER_STARTED


async def test_a_relay_waits_for_every_likely_plugin_and_starts_when_they_have_failed(nodes):
    a, b = nodes  # the caller's relay head start is 20 s
    won, by, took = await race(b, a, ["t_refuses", "t_relay"])
    assert won == "t_relay" and took < 5.0
    won, by, took = await race(b, a, ["t_hangs", "t_unlikely", "t_relay", "t_after_hangs"])
    assert won == "t_after_hangs"  # the relay still waits behind the hanging liar: 20 s
    assert by["t_relay"].reason == NEVER_STARTED


async def test_a_plugin_whose_applicable_or_rule_raises_is_isolated(nodes, clean_registry):
    class BadCheck(Plugin):
        name = "t_bad_check"

        def applicable(self, ctx):
            raise ZeroDivisionError("a plugin bug")

        async def attempt(self, ctx):
            raise AssertionError("never started")

    class BadRule(Claims):
        name = "t_bad_rule"

        @classmethod
        def reach(cls, caller, callee):
            raise KeyError("a broken rule")

        async def attempt(self, ctx):
            began.append(self.name)
            raise AttemptFailed("no")

    register(BadCheck)
    register(BadRule)
    register(follower("t_after_bad_rule", ("t_bad_rule",)))
    a, b = nodes
    won, by, took = await race(b, a, ["t_bad_check", "t_bad_rule", "t_after_bad_rule"])
    assert won == "t_after_bad_rule"
    assert (
        by["t_bad_check"].outcome is Outcome.FAILED and by["t_bad_check"].error_class == "ZeroDivisionError"
    )
    assert took < HANDSHAKE_FLOOR  # a rule that raises says nothing: nobody waits for it


def test_a_malformed_policy_is_refused_at_registration():
    for bad in (RacePolicy(behind="direct"), RacePolicy(patience="forever"), "soon"):  # type: ignore[arg-type]

        class Bad(Plugin):
            name = "t_bad_policy"
            policy = bad

            async def attempt(self, ctx):
                raise AttemptFailed("never")

        with pytest.raises(PluginError, match="policy"):
            register(Bad)


def test_the_builtin_policy_orders_the_plugins_by_cost():
    from warpgate.plugins import available

    builtins = available()
    order = ["direct", "udp_punch", "reverse", "tcp_punch", "portmap", "random_probe"]
    for i, name in enumerate(order):
        assert builtins[name].policy.behind == tuple(order[:i]), name
    assert builtins["turn"].policy == RacePolicy(behind="*", patience="relay")
