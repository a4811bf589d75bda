"""Race semantics with fake plugins: first winner, cancellation, slow loser closed, all-fail error."""

import asyncio
import os

import pytest

from tests.conftest import assert_no_tasks
from warpgate import AttemptFailed, ConnectError, Node, NotApplicable, Outcome, Plugin, auto_connect, register
from warpgate.errors import LocalProtocolError, PluginError
from warpgate.pipe import Pipe
from warpgate.proto.handshake import Keys

log: list[str] = []
made: list[Pipe] = []


def fake_pipe(ctx, name):
    pipe = Pipe(
        "tcp",
        peer_key=ctx.dest.public_key,
        conn_id=os.urandom(16),
        plugin=name,
        local=("127.0.0.1", 1),
        remote=("127.0.0.1", 2),
        send_raw=lambda d: None,
        close_raw=lambda: log.append(f"{name} closed"),
        keys=Keys(bytes(32), bytes(32)),
    )
    made.append(pipe)
    return pipe


class Fast(Plugin):
    name = "t_fast"

    async def attempt(self, ctx):
        await asyncio.sleep(0)
        return fake_pipe(ctx, self.name)


class Slow(Plugin):
    name = "t_slow"

    async def attempt(self, ctx):
        try:
            await asyncio.sleep(30)
        finally:
            log.append("slow cleaned up")
        raise AssertionError("unreachable")


class Stubborn(Plugin):
    """Ignores cancellation and still returns a pipe: the race must close it."""

    name = "t_stubborn"

    async def attempt(self, ctx):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass
        return fake_pipe(ctx, self.name)


class Fails(Plugin):
    name = "t_fails"

    async def attempt(self, ctx):
        raise AttemptFailed("port 9 is closed")


class Buggy(Plugin):
    name = "t_buggy"

    async def attempt(self, ctx):
        raise ZeroDivisionError("oops")


class Never(Plugin):
    name = "t_never"

    def applicable(self, ctx):
        return "needs a signal channel"

    async def attempt(self, ctx):
        raise NotApplicable("unreachable")


class Impostor(Plugin):
    """Returns a pipe authenticated to some other key: must never reach the user."""

    name = "t_impostor"

    async def attempt(self, ctx):
        pipe = fake_pipe(ctx, self.name)
        pipe.peer_key = os.urandom(33)
        return pipe


class Deaf(Plugin):
    """Swallows the first cancellation (as a lost cancel would) and honours the next."""

    name = "t_deaf"

    async def attempt(self, ctx):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass
        try:
            await asyncio.sleep(30)
        finally:
            log.append("deaf reaped")
        raise AssertionError("unreachable")


class Late(Plugin):
    """Connects once the test lets it: after the winner."""

    name = "t_late"
    release: asyncio.Event | None = None

    async def attempt(self, ctx):
        assert Late.release is not None
        await Late.release.wait()
        return fake_pipe(ctx, self.name)


ALL = [Fast, Slow, Stubborn, Fails, Buggy, Never, Impostor, Deaf, Late]


@pytest.fixture(autouse=True)
def fakes(clean_registry):
    for cls in ALL:
        register(cls)
    log.clear()
    made.clear()


@pytest.fixture
async def nodes():
    async with Node(interfaces=["lo"]) as a, Node(interfaces=["lo"]) as b:
        yield a, b


async def test_first_winner_cancels_and_awaits_the_rest(nodes):
    a, b = nodes
    events = []
    pipe, plugin = await auto_connect(
        b, a.address, plugins=["t_slow", "t_fast", "t_fails"], on_event=events.append
    )
    assert plugin.name == "t_fast" and pipe.plugin == "t_fast"
    assert "slow cleaned up" in log  # the loser ran its finally before auto_connect returned
    by = {e.plugin: e for e in events}
    assert by["t_fast"].outcome is Outcome.CONNECTED and by["t_fast"].won
    assert by["t_slow"].outcome is Outcome.CANCELLED
    assert by["t_fails"].outcome is Outcome.FAILED and by["t_fails"].reason == "port 9 is closed"
    assert all(e.end_ms >= e.start_ms >= 0 for e in events)
    assert_no_tasks()


async def test_slow_loser_pipe_is_closed(nodes):
    a, b = nodes
    events = []
    pipe, plugin = await auto_connect(b, a.address, plugins=["t_stubborn", "t_fast"], on_event=events.append)
    assert plugin.name == "t_fast"
    assert "t_stubborn closed" in log and "t_fast closed" not in log
    assert not pipe.closed
    assert {e.plugin: e.outcome for e in events}["t_stubborn"] is Outcome.CANCELLED
    assert_no_tasks()


async def test_all_fail_lists_every_reason(nodes):
    a, b = nodes
    with pytest.raises(ConnectError) as info:
        await auto_connect(b, a.address, plugins=["t_fails", "t_buggy", "t_never", "t_impostor"])
    text = str(info.value)
    assert "port 9 is closed" in text
    assert "ZeroDivisionError" in text
    assert "needs a signal channel" in text
    assert "unusable pipe" in text
    outcomes = {e.plugin: e.outcome for e in info.value.attempts}
    assert outcomes == {
        "t_fails": Outcome.FAILED,
        "t_buggy": Outcome.FAILED,
        "t_never": Outcome.NOT_APPLICABLE,
        "t_impostor": Outcome.FAILED,
    }
    assert_no_tasks()


async def test_deadline_turns_into_timeouts(nodes):
    a, b = nodes
    with pytest.raises(ConnectError) as info:
        await auto_connect(b, a.address, plugins=["t_slow"], timeout=0.05)
    assert [e.outcome for e in info.value.attempts] == [Outcome.TIMEOUT]
    assert "slow cleaned up" in log
    assert_no_tasks()


async def test_cancelling_auto_connect_cancels_every_attempt(nodes):
    a, b = nodes
    task = asyncio.ensure_future(auto_connect(b, a.address, plugins=["t_slow", "t_stubborn"]))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "slow cleaned up" in log and "t_stubborn closed" in log
    assert_no_tasks()


async def test_node_listeners_see_every_event(nodes):
    a, b = nodes
    seen = []
    b.add_listener(seen.append)
    await auto_connect(b, a.address, plugins=["t_fast", "t_fails"])
    assert sorted(e.plugin for e in seen) == ["t_fails", "t_fast"]


async def test_bad_calls(nodes):
    a, b = nodes
    with pytest.raises(PluginError):
        await auto_connect(b, a.address, plugins=["nope"])
    with pytest.raises(LocalProtocolError):
        await auto_connect(b, b.address)
    with pytest.raises(LocalProtocolError):
        await auto_connect(Node(interfaces=["lo"]), a.address)


async def test_a_plugin_ignoring_cancellation_does_not_hang_the_race():
    from warpgate.race import CANCEL_GRACE

    async with Node(interfaces=["lo"]) as a, Node(interfaces=["lo"]) as b:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        events = []
        pipe, plugin = await auto_connect(b, a.address, plugins=["t_deaf", "t_fast"], on_event=events.append)
        assert plugin.name == "t_fast"
        assert loop.time() - t0 < CANCEL_GRACE + 1
        deaf = next(e for e in events if e.plugin == "t_deaf")
        assert deaf.error_class == "CancellationIgnored" and "plugin bug" in deaf.reason
        assert "deaf reaped" not in log
    assert "deaf reaped" in log  # the node cancelled it again at stop and it ended
    assert_no_tasks()


async def test_an_attempts_resources_are_released_when_the_race_ends(nodes, clean_registry):
    a, b = nodes
    released: list[str] = []

    class Holds(Plugin):
        name = "t_holds"

        async def attempt(self, ctx):
            ctx.resources.add(lambda: released.append("first"), "first")

            async def second():
                released.append("second")

            ctx.resources.add(second, "second")
            raise AttemptFailed("holds but fails")

    register(Holds)
    pipe, plugin = await auto_connect(b, a.address, plugins=["t_holds", "t_fast"])
    assert plugin.name == "t_fast"
    assert released == ["second", "first"]  # released in reverse order, coroutines awaited


async def test_a_failing_release_does_not_stop_the_others():
    from warpgate.resources import Resources

    res = Resources("test")
    out: list[str] = []
    res.add(lambda: out.append("a"))
    res.add(lambda: 1 / 0, "broken")
    res.add(lambda: out.append("c"))
    other = Resources("other")
    other.add(lambda: out.append("moved"))
    other.move_to(res)
    assert len(other) == 0 and len(res) == 4
    await res.aclose()
    assert out == ["moved", "c", "a"]
    with pytest.raises(RuntimeError):
        res.add(lambda: None)


class Patient(Plugin):
    """Waits a long head start behind whatever else races (a relay would)."""

    name = "t_patient"

    def head_start(self, ctx):
        return 20.0

    async def attempt(self, ctx):
        return fake_pipe(ctx, self.name)


async def test_a_head_start_ends_when_every_plugin_it_waited_for_has_failed(nodes):
    register(Patient)
    a, b = nodes
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    pipe, plugin = await auto_connect(b, a.address, plugins=["t_fails", "t_patient"], timeout=30)
    assert plugin.name == "t_patient"
    assert loop.time() - t0 < 5.0  # not its 20 s head start: t_fails failed at once
    await pipe.close()


async def test_observed_losers_say_whether_they_would_have_connected(nodes):
    """Race reach: with ``observe`` the call returns the winner at once; a loser that
    completes later is recorded as connected, not won, and its pipe closed; one still pending when
    the window ends is cancelled."""
    a, b = nodes
    Late.release = asyncio.Event()
    events = []
    pipe, plugin = await auto_connect(
        b, a.address, plugins=["t_fast", "t_late", "t_slow", "t_fails"], on_event=events.append, observe=0.3
    )
    assert plugin.name == "t_fast" and not pipe.closed
    assert {e.plugin for e in events} == {"t_fast", "t_fails"}  # returned while the losers still run
    Late.release.set()
    (observer,) = [t for t in asyncio.all_tasks() if t.get_name() == "warpgate-observe-losers"]
    await observer
    by = {e.plugin: e for e in events}
    assert by["t_late"].outcome is Outcome.CONNECTED and not by["t_late"].won
    assert by["t_late"].reason == "completed after the winner (pipe closed)"
    assert "t_late closed" in log and "t_fast closed" not in log and not pipe.closed
    assert by["t_slow"].outcome is Outcome.CANCELLED and by["t_slow"].reason == "another plugin won"
    assert "slow cleaned up" in log
    assert_no_tasks()


async def test_without_observe_losers_are_cancelled_before_the_call_returns(nodes):
    a, b = nodes
    Late.release = asyncio.Event()
    events = []
    await auto_connect(b, a.address, plugins=["t_fast", "t_late"], on_event=events.append)
    assert {e.plugin: e.outcome for e in events} == {"t_fast": Outcome.CONNECTED, "t_late": Outcome.CANCELLED}
    assert_no_tasks()
