"""Bounds on what a peer's request makes us send to an address nobody has proved wants it.

A signalling request names addresses (its sender's candidates), and an address in a signed
message is only the sender's claim: anyone may name a third party's. Without a bound, one offer
would make a node a reflector: a punch storm, a SYN flood or a port scan towards whoever the
sender picks. Two limits apply to every byte a *responder* sends towards an unproven address
(sans-I/O, time passed in):

- **per request**, at most ``FACTOR`` (3) times the request's own bytes: QUIC's anti-amplification
  limit (RFC 9000 §8.1) applied to the signalling request that caused the sends;
- **per destination, across all senders and keys**, at most ``PER_HOST`` bytes a ``WINDOW`` to one
  host and ``PER_PREFIX`` to its /24 (IPv4) or /48 (IPv6): many keys or many requests cannot add
  up to a flood of one victim.

random_probe's sweep is its job and far above 3x, so it has its own budget: one sweep (at most
``SWEEP`` packets) per target host a ``WINDOW``, whoever asks.

An address is proved by an authenticated pipe from that host (``prove``; the proof lasts
``PROVEN_TTL``), and a path by a handshake packet from it (the caller decides; ``UdpEndpoint.heard``):
from then on it asked for our packets, and the bounds do not apply. Every table is bounded
(``MAX_TRACKED`` entries, oldest first out). What is refused is counted in ``refused``.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass

from warpgate.proto.expiring import Expiring

FACTOR = 3
WINDOW = 60.0
PER_HOST = 32 * 1024
PER_PREFIX = 128 * 1024
SWEEP = 2048
PROVEN_TTL = 600.0
MAX_TRACKED = 16384
SYN_BYTES = 60
"""A SYN on the wire (IPv4 20 + TCP 40 with its options), as a TCP connect's cost."""


def prefix(host: str) -> str:
    """The host's /24 (IPv4) or /48 (IPv6): one site, which many addresses must not flood."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def syn_cost(seconds: float) -> int:
    """Bytes of SYNs one TCP connect sends in ``seconds``: Linux retransmits an unanswered SYN
    after 1, 3, 7, 15 ... s (RFC 6298's initial RTO of 1 s, doubled each time)."""
    sent, at, rto = 1, 1.0, 1.0
    while at < seconds:
        sent += 1
        rto *= 2
        at += rto
    return sent * SYN_BYTES


@dataclass
class Allowance:
    """One request's: ``left`` bytes it may still make us send to unproven addresses."""

    left: int
    sent: int = 0
    refused: int = 0


@dataclass
class Sweep:
    """One granted random_probe sweep: ``left`` packets (probes, or the hard side's dials)."""

    left: int

    def take(self, _nbytes: int = 0) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class Reflection:
    """The node's reflection bounds (one per node, shared by every responder)."""

    def __init__(self) -> None:
        self._spent: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """Per host and per prefix: (start of its window, bytes sent in it)."""
        self._sweeps: OrderedDict[str, float] = OrderedDict()
        """Per host: when its last sweep was granted."""
        self._proven = Expiring(PROVEN_TTL, MAX_TRACKED)
        """Hosts whose proof holds."""
        self.refused: Counter[str] = Counter()
        """``bytes`` and ``sends`` refused by a bound, ``sweeps`` refused for the window."""

    def allowance(self, request_bytes: int) -> Allowance:
        return Allowance(FACTOR * max(0, request_bytes))

    def prove(self, host: str, now: float) -> None:
        """``host`` authenticated a pipe with us: it wants our packets."""
        self._proven.add(host, now)

    def proven(self, host: str, now: float) -> bool:
        return self._proven.holds(host, now)

    def spend(self, allowance: Allowance, host: str, nbytes: int, now: float) -> bool:
        """Whether the request may send ``nbytes`` more to ``host``; spent if so, counted if not."""
        if self.proven(host, now):
            return True
        keys = ((host, PER_HOST), (prefix(host), PER_PREFIX))
        used = [self._used(key, now) for key, _ in keys]
        if nbytes > allowance.left or any(u + nbytes > cap for u, (_, cap) in zip(used, keys, strict=True)):
            allowance.refused += nbytes
            self.refused["bytes"] += nbytes
            self.refused["sends"] += 1
            return False
        allowance.left -= nbytes
        allowance.sent += nbytes
        for u, (key, _) in zip(used, keys, strict=True):
            self._spent[key] = (self._spent[key][0], u + nbytes)
        return True

    def sweep(self, host: str, packets: int, now: float) -> Sweep:
        """A random_probe sweep towards ``host``: ``min(packets, SWEEP)`` packets, or none when a
        sweep towards it was granted less than ``WINDOW`` ago (to anyone)."""
        if self.proven(host, now):
            return Sweep(packets)
        last = self._sweeps.get(host)
        if last is not None and now - last < WINDOW:
            self.refused["sweeps"] += 1
            return Sweep(0)
        self._sweeps[host] = now
        self._sweeps.move_to_end(host)
        _trim(self._sweeps)
        return Sweep(min(packets, SWEEP))

    def _used(self, key: str, now: float) -> int:
        start, used = self._spent.get(key, (now, 0))
        if now - start >= WINDOW:
            start, used = now, 0
        self._spent[key] = (start, used)
        self._spent.move_to_end(key)
        _trim(self._spent)
        return used


def _trim(table: OrderedDict[str, float] | OrderedDict[str, tuple[float, int]]) -> None:
    while len(table) > MAX_TRACKED:
        table.popitem(last=False)
