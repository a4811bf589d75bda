"""Structured events of a traversal race: one ``AttemptEvent`` per plugin attempt."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    CONNECTED = "connected"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """How one plugin attempt of one ``auto_connect`` call went."""

    plugin: str
    outcome: Outcome
    start_ms: float
    """When the attempt started, in ms since ``auto_connect`` was called."""
    end_ms: float
    """When it ended (connected, failed, timed out or was cancelled), same clock."""
    reason: str = ""
    """Why it failed, was cancelled or was not applicable; empty when connected."""
    path: str = ""
    """``direct`` or ``relayed`` when connected."""
    local: str = ""
    """Local endpoint of the winning channel, ``proto://host:port``."""
    remote: str = ""
    """Remote endpoint of the winning channel as seen from here."""
    error_class: str = ""
    """Class name of the exception behind a failure, for records."""
    won: bool = False
    """True for the one attempt whose pipe ``auto_connect`` returned."""
    sockets: int = 0
    """Fresh sockets the attempt opened beyond the node's own (random_probe's hard side)."""
    probes: int = 0
    """Probe datagrams the attempt sent (random_probe), each towards a port it guessed."""
    chance_ms: float = 0.0
    """Of ``end_ms - start_ms``, the milliseconds spent waiting on a chance (random_probe: from
    the start of probing to the hit): the rest is the attempt's fixed cost, which a race must not
    lengthen, where this part is luck."""
