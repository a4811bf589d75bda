"""Retransmission schedules, stepped with a fake clock (no sleeping)."""

import pytest

from warpgate.errors import LocalProtocolError
from warpgate.proto.timers import Action, Backoff


def test_sends_at_once_then_doubles_then_gives_up():
    s = Backoff(initial=0.1, tries=3).schedule(now=10.0)
    assert s.handle_timer(10.0) is Action.SEND
    assert s.get_timer() == pytest.approx(10.1)
    assert s.handle_timer(10.05) is Action.WAIT
    assert s.handle_timer(10.1) is Action.SEND
    assert s.get_timer() == pytest.approx(10.3)
    assert s.handle_timer(10.3) is Action.SEND
    assert s.get_timer() == pytest.approx(10.7)
    assert s.handle_timer(10.69) is Action.WAIT
    assert s.handle_timer(s.get_timer()) is Action.GIVE_UP
    assert s.sent == 3


def test_cap_and_limit():
    s = Backoff(initial=0.1, cap=0.2, limit=1.0).schedule(now=0.0)
    times = []
    now = 0.0
    while (a := s.handle_timer(now)) is not Action.GIVE_UP:
        if a is Action.SEND:
            times.append(round(now, 3))
        now = s.get_timer()
    assert times == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]
    assert now == pytest.approx(1.0)


def test_hurry_sends_now_without_growing_the_interval():
    s = Backoff(initial=0.4, tries=10).schedule(now=0.0)
    assert s.handle_timer(0.0) is Action.SEND
    s.hurry(0.05)
    assert s.get_timer() == 0.05
    assert s.handle_timer(0.05) is Action.SEND
    assert s.get_timer() == pytest.approx(0.05 + 0.8)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(initial=0.1),
        dict(initial=0, tries=1),
        dict(initial=0.1, tries=0),
        dict(initial=1, cap=0.5, tries=1),
    ],
)
def test_bad_policies_are_refused(kwargs):
    with pytest.raises(LocalProtocolError):
        Backoff(**kwargs)


def test_liveness_pings_a_silent_peer_then_gives_up():
    from warpgate.proto.timers import Liveness

    watch = Liveness(idle=5.0, interval=1.0, dead=15.0).watch(100.0)
    assert watch.get_timer() == 105.0 and watch.handle_timer(104.9) is Action.WAIT
    assert watch.handle_timer(105.0) is Action.SEND  # silent for idle: ping
    assert watch.get_timer() == 106.0 and watch.handle_timer(105.5) is Action.WAIT
    assert watch.handle_timer(106.0) is Action.SEND  # still silent: again after interval
    watch.heard(106.2)  # the pong
    assert watch.get_timer() == 111.2 and watch.handle_timer(107.0) is Action.WAIT
    sends = [t for t in range(112, 121) if watch.handle_timer(float(t)) is Action.SEND]
    assert sends == list(range(112, 121))  # one ping a second while silent
    assert watch.handle_timer(121.2) is Action.GIVE_UP  # dead: 15 s after the last thing heard
    with pytest.raises(LocalProtocolError):
        Liveness(idle=5.0, interval=6.0, dead=15.0)
    with pytest.raises(LocalProtocolError):
        Liveness(idle=5.0, interval=1.0, dead=5.0)
