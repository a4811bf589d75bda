"""NAT behaviour discovery (RFC 5780), sans-I/O: which probes to send, what their answers mean.

The classifier plans STUN Binding probes and reads their answers; a driver (``warpgate.discovery``
in the engine, the lab's verifier through it) sends them and feeds back each answer, or ``None``
when a probe's transaction gave up. No socket, no clock: the driver owns both.

Sockets are numbered. UDP socket 0 and TCP socket 0 are the node's own (port shared with its
listener), so the mapping found there is the one peers must use; the others are fresh.

- **Mapping** (RFC 5780 §4.3), on UDP socket 0 and on TCP from the node's port: test I to the
  primary address; the same mapping as the local address means no translation; else test II to the
  server's other IP (same mapping: endpoint-independent), else test III to the other IP and port
  (same as II: address-dependent, else address-and-port-dependent).
- **Filtering** (§4.4), UDP only: two fresh sockets each make test I, then one asks for the answer
  from the other IP and port (CHANGE-REQUEST; an answer means endpoint-independent), the other from
  the other port only (address-dependent). Both run at once; silence on both means
  address-and-port-dependent. RFC 5780 has no TCP filtering test, so TCP filtering stays unknown.
- **Allocation** (RFC 4787 §4.2.1): after every probe that creates a mapping has finished, fresh
  sockets one after the other ask the primary address; mapped = local port is preserving, a constant
  small step is sequential (with its delta), anything else random.
- **Blocked UDP, concluded early**: once TCP test I has answered (the server is up and its round
  trip known) while UDP test I is still silent, a second UDP test I is sent on
  ``silence_backoff(rtt)``; when it gives up too, UDP is blocked and every UDP probe still in
  flight is abandoned (``wanted()`` turns false), so a UDP-blocked host is classified in a few
  hundred milliseconds instead of at the discovery deadline.
- A server without OTHER-ADDRESS (a single-address server) leaves mapping and filtering unknown
  (except "no translation", which test I alone shows). No answer to test I means the protocol is
  blocked.

Negative tests (an answer that should not arrive) wait ``negative_backoff(rtt)``, a few round trips
as measured on the same server, so a fast network is classified fast.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from warpgate.proto.nat import Filtering, Mapping, NatBehaviour, PortAllocation, as_dict
from warpgate.proto.timers import STUN, Backoff

Addr = tuple[str, int]
Proto = Literal["udp", "tcp"]
CHANGE_IP, CHANGE_PORT = 0x4, 0x2
ALLOCATION_SAMPLES = 4
MAX_SEQUENTIAL_DELTA = 16


def negative_backoff(rtt: float) -> Backoff:
    """How long to wait for an answer that may rightly never come: three sends 2.5 round trips
    apart, then 2.5 more (7.5 round trips in all, at least 140 ms, so a busy machine does not turn
    a late answer into a wrong label). The interval does not grow: a lost request or answer costs
    one send of three, not a doubling wait, so discovery behind a 60 ms path ends in about 0.8 s."""
    rto = min(max(2.5 * rtt, 0.047), 0.5)
    return Backoff(initial=rto, cap=rto, tries=3)


def silence_backoff(rtt: float) -> Backoff:
    """How long UDP may stay silent after TCP answered before it is called blocked: three sends
    at least 0.1 s apart (the first UDP test I also keeps sending meanwhile, so a 2 % lossy
    wire loses all of them with odds below 1e-9), at least 0.3 s after the TCP answer."""
    rto = min(max(2.5 * rtt, 0.1), 0.5)
    return Backoff(initial=rto, cap=rto, tries=3)


@dataclass(frozen=True, slots=True)
class Probe:
    """One STUN Binding request to send from socket ``socket`` (of ``proto``) to ``dest``."""

    id: int
    proto: Proto
    socket: int
    dest: Addr
    change: int = 0
    """CHANGE-REQUEST flags (RFC 5780 §7.2)."""
    backoff: Backoff = STUN


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: our mapping as the server saw it, and the local address we sent from."""

    mapped: Addr
    local: Addr
    other: Addr | None = None
    """OTHER-ADDRESS: the server's second IP and port (RFC 5780 §7.4)."""
    rtt: float = 0.0


@dataclass(frozen=True, slots=True)
class Discovery:
    udp: NatBehaviour
    tcp: NatBehaviour
    mapped_udp: Addr | None
    """The public endpoint of UDP socket 0 (the node's), when known."""
    mapped_tcp: Addr | None
    """The public endpoint of the node's TCP port (as seen by the primary server), when known."""
    other: Addr | None
    rtt: float | None = None
    """Seconds for the first answered probe: the round trip to the STUN server."""

    @property
    def tcp_view(self) -> NatBehaviour:
        """The TCP NAT as far as it is known: RFC 5780 measures TCP mapping and whether the port
        was kept; filtering and a sequential allocation's delta are taken from UDP (the same box).
        When UDP is blocked or never answered, the filter is taken to be address-and-port-
        dependent: a NAT that drops unsolicited datagrams drops unsolicited SYNs too."""
        tcp, udp = self.tcp, self.udp
        if tcp.filtering is Filtering.BLOCKED or tcp.mapping is Mapping.UNKNOWN:
            return tcp
        udp_known = udp.filtering not in (Filtering.BLOCKED, Filtering.UNKNOWN)
        filtering = udp.filtering if udp_known else Filtering.ADDRESS_PORT_DEPENDENT
        if tcp.mapping is Mapping.NONE and filtering is Filtering.UNKNOWN:
            filtering = Filtering.ADDRESS_PORT_DEPENDENT
        allocation, delta = tcp.allocation, 0
        if allocation is not PortAllocation.PRESERVING and udp_known:
            allocation, delta = udp.allocation, udp.delta
        return NatBehaviour(tcp.mapping, filtering, allocation, delta)

    def as_dict(self) -> dict[str, object]:
        return {
            "udp": as_dict(self.udp),
            "tcp": as_dict(self.tcp),
            "mapped_udp": list(self.mapped_udp) if self.mapped_udp else None,
            "mapped_tcp": list(self.mapped_tcp) if self.mapped_tcp else None,
            "other": list(self.other) if self.other else None,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3),
        }


@dataclass
class _Chain:
    """The mapping test of one transport: answers of tests I, II, III."""

    answers: list[Answer | None] = field(default_factory=list)
    mapping: Mapping | None = None  # decided


class Classifier:
    """RFC 5780 classification as a plan of probes. ``next_probes()``, ``handle()``, ``result()``."""

    def __init__(self, primary: Addr, *, tcp: bool = True, other: Addr | None = None) -> None:
        self.primary = primary
        self.other = other
        self.tcp = tcp
        self._ids = itertools.count(1)
        self._probes: dict[int, tuple[str, Probe]] = {}
        self._queue: list[Probe] = []
        self._udp = _Chain()
        self._tcp = _Chain() if tcp else None
        self._filter: dict[str, Answer | bool | None] = {}
        self._rtt: float | None = None
        self._filtering: Filtering | None = None
        self._alloc: list[Answer] = []
        self._alloc_started = False
        self._allocation: tuple[PortAllocation, int] | None = None
        self._blocked_udp = False
        self._plan("map-udp", "udp", 0, primary)
        if self._tcp is not None:
            self._plan("map-tcp", "tcp", 0, primary)
        self._plan("prime-eif", "udp", 1, primary)
        self._plan("prime-adf", "udp", 2, primary)

    # -- the plan ----------------------------------------------------------------------------

    def _plan(
        self, role: str, proto: Proto, sock: int, dest: Addr, change: int = 0, backoff: Backoff = STUN
    ) -> None:
        probe = Probe(next(self._ids), proto, sock, dest, change, backoff)
        self._probes[probe.id] = (role, probe)
        self._queue.append(probe)

    def next_probes(self) -> list[Probe]:
        """Probes that may be sent now (each is returned once)."""
        out, self._queue = self._queue, []
        return out

    @property
    def in_flight(self) -> int:
        return len(self._probes)

    @property
    def done(self) -> bool:
        return not self._probes and not self._queue

    def wanted(self, probe_id: int) -> bool:
        """Whether an answer to ``probe_id`` still matters (a driver cancels the others)."""
        return probe_id in self._probes

    def handle(self, probe_id: int, answer: Answer | None) -> None:
        """Feed the answer to probe ``probe_id`` (``None``: its transaction gave up); the answer
        to an abandoned probe is ignored."""
        if probe_id not in self._probes:
            return
        role, probe = self._probes.pop(probe_id)
        if answer is not None and answer.other is not None and self.other is None:
            self.other = answer.other
        if answer is not None and self._rtt is None:
            self._rtt = answer.rtt
        if role == "udp-silence":
            self._on_silence(probe, answer)
        elif role.startswith("map-"):
            self._on_mapping(probe, answer)
            if probe.proto == "udp":
                self._drop("udp-silence")  # test I has spoken: nothing left to learn from silence
            tcp_first = probe.proto == "tcp" and self._tcp is not None and len(self._tcp.answers) == 1
            if tcp_first and answer is not None:
                self._maybe_test_silence(answer.rtt)
        elif role.startswith("prime-"):
            self._filter[role] = answer
            if answer is None:
                self._filter[role.replace("prime", "test")] = False
            elif self.other is not None:
                change = CHANGE_IP | CHANGE_PORT if role == "prime-eif" else CHANGE_PORT
                self._plan(
                    role.replace("prime", "test"),
                    "udp",
                    probe.socket,
                    self.primary,
                    change,
                    negative_backoff(answer.rtt),
                )
            else:
                self._filter[role.replace("prime", "test")] = False
        elif role.startswith("test-"):
            self._filter[role] = answer is not None
        elif role == "alloc":
            if answer is not None:
                self._alloc.append(answer)
            if len(self._alloc) < ALLOCATION_SAMPLES and probe.socket < 3 + 2 * ALLOCATION_SAMPLES:
                self._plan("alloc", "udp", probe.socket + 1, self.primary)
        self._maybe_start_allocation()

    def _on_mapping(self, probe: Probe, answer: Answer | None) -> None:
        chain = self._udp if probe.proto == "udp" else self._tcp
        assert chain is not None
        chain.answers.append(answer)
        step = len(chain.answers)
        first = chain.answers[0]
        if first is None:
            chain.mapping = Mapping.UNKNOWN
            if probe.proto == "udp":
                self._blocked_udp = True
            return
        if step == 1:
            if first.mapped == first.local:
                chain.mapping = Mapping.NONE
            elif self.other is None:
                chain.mapping = Mapping.UNKNOWN
            else:
                self._plan("map-" + probe.proto, probe.proto, 0, (self.other[0], self.primary[1]))
            return
        second = chain.answers[1]
        if step == 2:
            if second is None:
                chain.mapping = Mapping.UNKNOWN
            elif second.mapped == first.mapped:
                chain.mapping = Mapping.ENDPOINT_INDEPENDENT
            else:
                assert self.other is not None
                self._plan("map-" + probe.proto, probe.proto, 0, self.other)
            return
        third = chain.answers[2]
        if third is None or second is None:
            chain.mapping = Mapping.UNKNOWN
        elif third.mapped == second.mapped:
            chain.mapping = Mapping.ADDRESS_DEPENDENT
        else:
            chain.mapping = Mapping.ADDRESS_PORT_DEPENDENT

    def _drop(self, role: str | None = None, proto: Proto | None = None) -> None:
        """Abandon the probes of ``role`` (or of ``proto``): sent or not, no answer is awaited."""
        for pid, (r, p) in list(self._probes.items()):
            if r == role or p.proto == proto:
                del self._probes[pid]
        self._queue = [p for p in self._queue if p.id in self._probes]

    def _maybe_test_silence(self, rtt: float) -> None:
        if self._udp.answers or self._blocked_udp:
            return
        self._plan("udp-silence", "udp", 0, self.primary, backoff=silence_backoff(rtt))

    def _on_silence(self, probe: Probe, answer: Answer | None) -> None:
        first = [pid for pid, (role, _) in self._probes.items() if role == "map-udp"]
        if self._udp.answers or not first:
            return  # test I has spoken meanwhile
        if answer is not None:
            # the same request from the same socket: it stands for test I, which is dropped
            original = self._probes.pop(first[0])[1]
            self._on_mapping(original, answer)
            return
        self._drop(proto="udp")  # UDP is blocked: test I and every other UDP probe are abandoned
        self._udp.answers.append(None)
        self._udp.mapping = Mapping.UNKNOWN
        self._blocked_udp = True

    def _maybe_start_allocation(self) -> None:
        """Allocation samples wait until no probe that makes a new mapping is in flight."""
        if self._alloc_started or self._blocked_udp:
            return
        makers = [r for r, _ in self._probes.values() if r.startswith(("map-", "prime-"))]
        if makers or any(p for p in self._queue if p.change == 0):
            return
        self._alloc_started = True
        self._plan("alloc", "udp", 3, self.primary)

    # -- the verdict --------------------------------------------------------------------------

    def result(self) -> Discovery:
        """The behaviour found so far; any axis not decided (yet) is UNKNOWN."""
        udp_first = self._udp.answers[0] if self._udp.answers else None
        if self._blocked_udp:
            udp = NatBehaviour(Mapping.UNKNOWN, Filtering.BLOCKED, PortAllocation.UNKNOWN)
        else:
            udp = NatBehaviour(
                self._udp.mapping or Mapping.UNKNOWN, self._filtering_verdict(), *self._allocation_verdict()
            )
        tcp = NatBehaviour()
        tcp_first = None
        if self._tcp is not None and self._tcp.answers:
            tcp_first = self._tcp.answers[0]
            if tcp_first is None:
                tcp = NatBehaviour(Mapping.UNKNOWN, Filtering.BLOCKED)
            else:
                preserved = tcp_first.mapped[1] == tcp_first.local[1]
                tcp = NatBehaviour(
                    self._tcp.mapping or Mapping.UNKNOWN,
                    Filtering.UNKNOWN,
                    PortAllocation.PRESERVING if preserved else PortAllocation.UNKNOWN,
                )
        return Discovery(
            udp,
            tcp,
            udp_first.mapped if udp_first else None,
            tcp_first.mapped if tcp_first else None,
            self.other,
            self._rtt,
        )

    def _filtering_verdict(self) -> Filtering:
        eif, adf = self._filter.get("test-eif"), self._filter.get("test-adf")
        if eif is True:
            return Filtering.ENDPOINT_INDEPENDENT
        if eif is None or adf is None or self.other is None:
            return Filtering.UNKNOWN
        if self._filter.get("prime-eif") is None or self._filter.get("prime-adf") is None:
            return Filtering.UNKNOWN
        return Filtering.ADDRESS_DEPENDENT if adf else Filtering.ADDRESS_PORT_DEPENDENT

    def _allocation_verdict(self) -> tuple[PortAllocation, int]:
        return allocation([(a.local[1], a.mapped[1]) for a in self._alloc])


def allocation(pairs: list[tuple[int, int]]) -> tuple[PortAllocation, int]:
    """Port allocation from (local port, mapped port) of consecutive fresh mappings (RFC 4787 §4.2.1)."""
    if len(pairs) < 3:
        return PortAllocation.UNKNOWN, 0
    if all(local == mapped for local, mapped in pairs):
        return PortAllocation.PRESERVING, 0
    steps = [b[1] - a[1] for a, b in itertools.pairwise(pairs)]

    def one_way(ss: list[int]) -> bool:
        return all(0 < s <= MAX_SEQUENTIAL_DELTA for s in ss) or all(
            -MAX_SEQUENTIAL_DELTA <= s < 0 for s in ss
        )

    # Other flows of this host (a broker connection, another plugin) may take ports from a
    # sequential allocator between two samples: steps are then small multiples of the delta, all
    # with one sign. A random allocator gives that by chance with odds of about (16/65536)^3.
    # A sequential allocator also wraps at the end of its range: one step may jump back, if the
    # others (at least two; odds for a random one about (16/65536)^2) agree.
    for skip in (None, *range(len(steps))):
        rest = [s for i, s in enumerate(steps) if i != skip]
        if len(rest) >= 2 and one_way(rest):
            delta = math.gcd(*rest)
            return PortAllocation.SEQUENTIAL, delta if rest[0] > 0 else -delta
    return PortAllocation.RANDOM, 0
