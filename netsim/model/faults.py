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

from dataclasses import dataclass, field

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
