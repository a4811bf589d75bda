"""Retransmission schedules as data, with time passed in (aioquic's ``handle_timer(now)`` style).

One schedule serves every request/response exchange of the engine over an unreliable path: STUN
transactions (RFC 8489 §6.2.1: send, wait RTO, double it), UDP handshakes, nominations, punching
and signal-channel requests. The schedule holds no clock and no socket: the caller asks
``get_timer()`` when to wake up and calls ``handle_timer(now)`` then, which says whether to send
now, keep waiting, or give up. ``hurry(now)`` makes the next send due at once (the peer was just
heard, so the path is open and waiting would only add a round trip).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from warpgate.errors import LocalProtocolError


class Action(enum.Enum):
    SEND = "send"
    WAIT = "wait"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Backoff:
    """A retransmission policy: first interval, growth factor, cap, number of sends, total time.

    ``tries`` sends are made (None: no limit); after the last one the schedule waits one more
    interval for an answer, then gives up. ``limit`` bounds the whole exchange in seconds from its
    start (None: only ``tries`` bounds it). At least one of the two must be set.
    """

    initial: float
    factor: float = 2.0
    cap: float = 1.6
    tries: int | None = None
    limit: float | None = None

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.cap < self.initial:
            raise LocalProtocolError(f"bad backoff {self!r}")
        if self.tries is None and self.limit is None:
            raise LocalProtocolError("a backoff needs tries or limit, or it never ends")
        if self.tries is not None and self.tries < 1:
            raise LocalProtocolError("a backoff makes at least one try")

    def schedule(self, now: float) -> Schedule:
        return Schedule(self, now)

    def sends_within(self, seconds: float) -> int:
        """How many sends the schedule makes in its first ``seconds``."""
        sent, at, interval = 0, 0.0, self.initial
        while at < seconds and (self.tries is None or sent < self.tries):
            sent += 1
            at += interval
            interval = min(interval * self.factor, self.cap)
        return sent


class Schedule:
    """One exchange's timer: ``handle_timer(now)`` -> SEND | WAIT | GIVE_UP; ``get_timer()``."""

    def __init__(self, policy: Backoff, now: float) -> None:
        self.policy = policy
        self.started = now
        self.sent = 0
        self._interval = policy.initial
        self._next = now  # the first send is due at once
        self._end = None if policy.limit is None else now + policy.limit

    def get_timer(self) -> float:
        """The loop time of the next event (a send or the end), never later than the limit."""
        return self._next if self._end is None else min(self._next, self._end)

    def handle_timer(self, now: float) -> Action:
        if self._end is not None and now >= self._end:
            return Action.GIVE_UP
        if now < self._next:
            return Action.WAIT
        if self.policy.tries is not None and self.sent >= self.policy.tries:
            return Action.GIVE_UP
        self.sent += 1
        self._next = now + self._interval
        self._interval = min(self._interval * self.policy.factor, self.policy.cap)
        return Action.SEND

    def hurry(self, now: float) -> None:
        """Send again at once (not counted against the backoff: the interval does not grow)."""
        self._next = min(self._next, now)


@dataclass(frozen=True, slots=True)
class Liveness:
    """Keepalive of an open pipe: after ``idle`` s without hearing the peer, ping it every
    ``interval`` s; after ``dead`` s of silence the pipe is dead and closes with that reason.

    The pings also keep what the path holds open: NAT and firewall mappings (RFC 4787 REQ-5
    allows UDP mappings to expire after 2 minutes; many expire after 30 s) and a TURN
    allocation's channel binding and permission (RFC 8656 §9: 300 s). Several pings fit in the
    dead window, so a lossy path does not kill a live pipe: at 10 % loss each way, ten lost
    ping/pong rounds in a row happen once in about 10^7 windows.
    """

    idle: float = 5.0
    interval: float = 1.0
    dead: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.interval <= self.idle < self.dead:
            raise LocalProtocolError(f"bad liveness {self!r}: need 0 < interval <= idle < dead")

    def watch(self, now: float) -> Watch:
        return Watch(self, now)


class Watch:
    """One pipe's liveness timer: ``heard(now)``; ``handle_timer(now)`` -> SEND (a ping) | WAIT |
    GIVE_UP (dead); ``get_timer()``."""

    def __init__(self, policy: Liveness, now: float) -> None:
        self.policy = policy
        self.heard_at = now
        self._pinged_at = float("-inf")

    def heard(self, now: float) -> None:
        self.heard_at = max(self.heard_at, now)

    def _ping_due(self) -> float:
        return max(self.heard_at + self.policy.idle, self._pinged_at + self.policy.interval)

    def get_timer(self) -> float:
        return min(self._ping_due(), self.heard_at + self.policy.dead)

    def handle_timer(self, now: float) -> Action:
        if now >= self.heard_at + self.policy.dead:
            return Action.GIVE_UP
        if now < self._ping_due():
            return Action.WAIT
        self._pinged_at = now
        return Action.SEND


# The engine's policies, in one place. LAN-to-LAN paths answer in well under a millisecond, so the
# first retries come sooner than RFC 8489's 500 ms; the caps keep a lossy path from idling.
STUN = Backoff(initial=0.1, tries=4)
"""A STUN transaction: 0.1 + 0.2 + 0.4 + 0.8 s of waiting at most (RFC 8489 §6.2.1, shortened)."""
HANDSHAKE = Backoff(initial=0.1, cap=1.6, limit=30.0)
"""A UDP handshake: retransmit until answered; the attempt's deadline normally ends it first."""
NOMINATE = Backoff(initial=0.05, tries=5)
"""A UDP nomination: five sends over about 1.5 s (DATA also counts as nomination on the far side)."""
PUNCH = Backoff(initial=0.025, cap=0.4, limit=30.0)
"""Hole punching: the first packets are expected to die at the peer's NAT, so retry soon."""
SIGNAL = Backoff(initial=0.25, cap=2.0, limit=5.0)
"""A signal-channel request: new message id each send, same request id (answered from a cache)."""
LIVENESS = Liveness()
"""An open pipe: ping after 5 s of silence, once a second; dead after 15 s."""
RECONNECT = Backoff(initial=0.1, cap=2.0, limit=float("inf"))
"""A lost broker connection: retried forever with capped backoff."""
