"""A scenario's faults, struck in its lab: the daemons stopped before the trials, the router,
link or agent hit between a trial's two payload checks. What a fault is (the ``[fault]`` table)
is data in ``netsim.model.faults``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from netsim.errors import NetsimError
from netsim.model.faults import Fault

if TYPE_CHECKING:
    from netsim.control.lab import Lab


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
