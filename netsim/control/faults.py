"""Faults a scenario injects into its own lab, as data: what breaks, when, and where.

    [fault]
    what = "flush-conntrack"   # stop-brokers | stop-stun | flush-conntrack | link-flap | kill-agent
    when = "mid-pipe"          # before-trials | mid-pipe
    sites = "both"             # a | b | both: whose router (or agent) the fault hits
    down_s = 1.0               # link-flap: how long the WAN link stays down
    trials = [0]               # only these trials (default: every trial)

    [fault.survives]           # mid-pipe: must the pipe still carry the payload after the fault?
    "open/symmetric" = false   # (cells not listed: no expectation, the result is only recorded)

``before-trials`` faults happen once, after self-validation and before the first trial (a daemon
the run needs is gone: the plugins that need it must fail with a clear reason, the others must
still connect, and nothing may hang past its deadline). ``mid-pipe`` faults happen in every chosen
trial between the first payload check and a second one over the same pipe: the trial records
whether the pipe survived.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from netsim.errors import NetsimError

if TYPE_CHECKING:
    from netsim.control.lab import Lab

BEFORE, MID_PIPE = "before-trials", "mid-pipe"
WHEN: dict[str, tuple[str, ...]] = {
    "stop-brokers": (BEFORE,),
    "stop-stun": (BEFORE,),
    "flush-conntrack": (MID_PIPE,),
    "link-flap": (MID_PIPE,),
    "kill-agent": (MID_PIPE,),
}
SIDES = ("a", "b", "both")


@dataclass(frozen=True)
class Fault:
    what: str
    when: str
    sites: str = "both"
    down_s: float = 1.0
    trials: tuple[int, ...] | None = None
    survives: dict[tuple[str, str], bool] = field(default_factory=dict)

    def hits(self, trial: int) -> bool:
        return self.trials is None or trial in self.trials

    def sides(self) -> tuple[str, ...]:
        return ("a", "b") if self.sites == "both" else (self.sites,)

    def as_dict(self) -> dict[str, object]:
        return {
            "what": self.what,
            "when": self.when,
            "sites": self.sites,
            "down_s": self.down_s,
            "trials": list(self.trials) if self.trials is not None else None,
            "survives": {f"{a}/{b}": v for (a, b), v in self.survives.items()},
        }


def usable(fault: Fault | None, plugins: tuple[str, ...]) -> tuple[str, ...]:
    """The plugins that can still work under ``fault`` (for the theory): without a broker, none
    that sends a signal message. (Without STUN the theory has no rule: such scenarios list their
    expected cells in ``[expect]``.)"""
    if fault is None or fault.what != "stop-brokers":
        return plugins
    from netsim.model import theory

    return tuple(p for p in plugins if not theory.needs_signal(p))


def before_trials(lab: Lab, fault: Fault) -> list[str]:
    """Stop the daemons the fault names, by PID; returns what was stopped (for the run's metadata)."""
    names = {"stop-brokers": "mosquitto", "stop-stun": "coturn"}
    stopped = lab.stop_daemons(names[fault.what])
    if not stopped:
        raise NetsimError(f"fault {fault.what}: no {names[fault.what]} runs in this lab")
    return stopped


class Killable(Protocol):
    def kill(self) -> None: ...


def mid_pipe(lab: Lab, fault: Fault, agents: dict[str, Killable], sites: dict[str, str]) -> None:
    """Strike between a trial's two payload checks, on side A's and/or B's router (or agent)."""
    for side in fault.sides():
        site = sites[side]
        if fault.what == "flush-conntrack":
            lab.flush_conntrack(site)
        elif fault.what == "kill-agent":
            agents[side].kill()
        elif fault.what == "link-flap":
            lab.set_wan(site, up=False)
    if fault.what == "link-flap":
        time.sleep(fault.down_s)  # the outage itself (not a synchronisation)
        for side in fault.sides():
            lab.set_wan(sites[side], up=True)
