"""The RFC 5780 classifier against simulated NATs (every preset), with time and sockets faked."""

from __future__ import annotations

import itertools
import random

import pytest

from warpgate.proto.discovery import CHANGE_IP, CHANGE_PORT, Answer, Classifier, allocation
from warpgate.proto.nat import PRESETS, Filtering, Mapping, NatBehaviour, PortAllocation
from warpgate.proto.timers import Action

S1, S2 = "203.0.113.10", "203.0.113.11"
PRIMARY, OTHER = (S1, 3478), (S2, 3479)
LOCAL_IP, PUBLIC_IP = "10.0.0.2", "198.51.100.7"


class FakeNat:
    """A NAT built from RFC 4787 axes: mapping table, allocation, filtering permissions."""

    def __init__(self, b: NatBehaviour, seed: int = 0) -> None:
        self.b = b
        self.maps: dict[tuple, int] = {}
        self.perms: set[tuple[int, str, int]] = set()
        self.counter = itertools.count(40000, b.delta or 1)
        self.rng = random.Random(seed)

    def out(self, local_port: int, dest: tuple[str, int]) -> tuple[str, int]:
        if self.b.mapping is Mapping.NONE:
            self.perms.add((local_port, *dest))
            return (LOCAL_IP, local_port)
        key = {
            Mapping.ENDPOINT_INDEPENDENT: (local_port,),
            Mapping.ADDRESS_DEPENDENT: (local_port, dest[0]),
            Mapping.ADDRESS_PORT_DEPENDENT: (local_port, dest),
        }[self.b.mapping]
        if key not in self.maps:
            if self.b.allocation is PortAllocation.PRESERVING and local_port not in self.maps.values():
                self.maps[key] = local_port
            elif self.b.allocation is PortAllocation.SEQUENTIAL:
                self.maps[key] = next(self.counter)
            else:
                self.maps[key] = self.rng.randrange(1024, 65536)
        port = self.maps[key]
        self.perms.add((port, *dest))
        return (PUBLIC_IP, port)

    def admits(self, port: int, src: tuple[str, int]) -> bool:
        f = self.b.filtering
        if f is Filtering.BLOCKED:
            return False
        if f is Filtering.ENDPOINT_INDEPENDENT:
            return True
        if f is Filtering.ADDRESS_DEPENDENT:
            return any(p == port and ip == src[0] for p, ip, _ in self.perms)
        return (port, *src) in self.perms


def run(nat: FakeNat, *, other: bool = True, tcp_blocked: bool = False) -> Classifier:
    clf = Classifier(PRIMARY, tcp=True)
    ports = {0: 5000}
    while not clf.done:
        probes = clf.next_probes()
        assert probes, "the classifier waits on nothing"
        for p in probes:
            local = 5000 if p.socket == 0 else ports.setdefault(p.socket, 6000 + p.socket)
            if p.proto == "tcp" and tcp_blocked:
                clf.handle(p.id, None)
                continue
            if p.proto == "udp" and nat.b.filtering is Filtering.BLOCKED:
                clf.handle(p.id, None)
                continue
            mapped = nat.out(local, p.dest)
            source = p.dest
            if p.change == CHANGE_IP | CHANGE_PORT:
                source = OTHER
            elif p.change == CHANGE_PORT:
                source = (p.dest[0], OTHER[1])
            ok = p.proto == "tcp" or nat.admits(mapped[1], source)
            clf.handle(
                p.id, Answer(mapped, (LOCAL_IP, local), OTHER if other else None, 0.001) if ok else None
            )
    return clf


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_classified_as_itself(name):
    b = PRESETS[name]
    found = run(FakeNat(b)).result()
    if b.filtering is Filtering.BLOCKED:
        assert found.udp.filtering is Filtering.BLOCKED
        assert found.tcp.mapping is b.mapping  # TCP still passes and is classified
        return
    assert (found.udp.mapping, found.udp.filtering, found.udp.allocation) == (
        b.mapping,
        b.filtering,
        b.allocation,
    )
    assert found.udp.delta == b.delta
    assert found.udp.name == name
    assert found.tcp.mapping is b.mapping
    assert found.tcp.filtering is Filtering.UNKNOWN  # RFC 5780 has no TCP filtering test
    assert found.mapped_udp is not None and found.other == OTHER


def test_address_dependent_mapping_and_delta_two():
    b = NatBehaviour(Mapping.ADDRESS_DEPENDENT, Filtering.ADDRESS_DEPENDENT, PortAllocation.SEQUENTIAL, 2)
    found = run(FakeNat(b)).result()
    assert (found.udp.mapping, found.udp.filtering) == (
        Mapping.ADDRESS_DEPENDENT,
        Filtering.ADDRESS_DEPENDENT,
    )
    assert (found.udp.allocation, found.udp.delta) == (PortAllocation.SEQUENTIAL, 2)


def test_single_address_server_leaves_mapping_and_filtering_unknown():
    found = run(FakeNat(PRESETS["port-restricted-cone"]), other=False).result()
    assert found.udp.mapping is Mapping.UNKNOWN and found.udp.filtering is Filtering.UNKNOWN
    assert found.udp.allocation is PortAllocation.PRESERVING  # still measurable with one address
    assert found.other is None


def test_no_translation_is_seen_even_with_a_single_address_server():
    found = run(FakeNat(PRESETS["open"]), other=False).result()
    assert found.udp.mapping is Mapping.NONE and found.tcp.mapping is Mapping.NONE


def test_silent_server_means_blocked_and_unknown():
    clf = Classifier(PRIMARY, tcp=True)
    while not clf.done:
        for p in clf.next_probes():
            clf.handle(p.id, None)
    found = clf.result()
    assert found.udp.filtering is Filtering.BLOCKED and found.tcp.filtering is Filtering.BLOCKED
    assert found.mapped_udp is None and found.mapped_tcp is None


def test_allocation_starts_only_after_every_mapping_probe():
    """Sequential allocators share one counter: samples interleaved with other new mappings
    would not show a constant step."""
    clf = Classifier(PRIMARY, tcp=True)
    first = clf.next_probes()
    assert {p.socket for p in first} == {0, 1, 2}
    assert not any(p.socket >= 3 for p in first)


def give_up_after(backoff):
    """Drive a schedule with no answer: (seconds until it gives up, sends made)."""
    sched, now, sends = backoff.schedule(0.0), 0.0, 0
    while (action := sched.handle_timer(now)) is not Action.GIVE_UP:
        sends += action is Action.SEND
        now = sched.get_timer()
    return now, sends


@pytest.mark.parametrize(("rtt", "most"), [(0.0005, 0.2), (0.065, 0.5)])
def test_negative_tests_wait_a_few_round_trips_not_seconds(rtt, most):
    """Three sends (a lost request or answer costs one of them), 7.5 round trips in all, at least
    140 ms: behind a 30 ms each-way wire discovery ends well within its 1.5 s deadline."""
    clf = Classifier(PRIMARY, tcp=False)
    for p in clf.next_probes():
        clf.handle(p.id, Answer((PUBLIC_IP, 5000 + p.socket), (LOCAL_IP, 5000 + p.socket), OTHER, rtt))
    tests = [p for p in clf.next_probes() if p.change]
    assert len(tests) == 2
    for t in tests:
        total, sends = give_up_after(t.backoff)
        assert sends == 3 and 0.14 <= total < most
        assert total >= 7 * rtt


@pytest.mark.parametrize(
    ("pairs", "want"),
    [
        ([(5000, 5000), (5001, 5001), (5002, 5002)], (PortAllocation.PRESERVING, 0)),
        ([(5000, 40001), (5001, 40002), (5002, 40003)], (PortAllocation.SEQUENTIAL, 1)),
        ([(5000, 40002), (5001, 40004), (5002, 40006)], (PortAllocation.SEQUENTIAL, 2)),
        ([(5000, 40002), (5001, 11000), (5002, 60006)], (PortAllocation.RANDOM, 0)),
        # another flow of the host took a port between two samples
        ([(5000, 40001), (5001, 40002), (5002, 40004), (5003, 40005)], (PortAllocation.SEQUENTIAL, 1)),
        ([(5000, 40002), (5001, 40006), (5002, 40008)], (PortAllocation.SEQUENTIAL, 2)),
        ([(5000, 40010), (5001, 40009), (5002, 40008)], (PortAllocation.SEQUENTIAL, -1)),
        ([(5000, 40001), (5001, 40002), (5002, 40000)], (PortAllocation.RANDOM, 0)),
        # the allocator wrapped at the end of its range between two of four samples
        ([(5000, 41996), (5001, 41998), (5002, 40000), (5003, 40002)], (PortAllocation.SEQUENTIAL, 2)),
        ([(5000, 40002), (5001, 40004), (5002, 11000), (5003, 60000)], (PortAllocation.RANDOM, 0)),
        ([(5000, 5000)], (PortAllocation.UNKNOWN, 0)),
    ],
)
def test_allocation(pairs, want):
    assert allocation(pairs) == want


def udp_silent_tcp_answers(clf: Classifier, second_test_one: Answer | None):
    """A server that answers TCP at once and UDP never, except perhaps the second test I
    (``second_test_one``): returns the first probes and the second test I."""
    first = clf.next_probes()
    tcp = next(p for p in first if p.proto == "tcp")
    clf.handle(tcp.id, Answer((PUBLIC_IP, 5000), (LOCAL_IP, 5000), OTHER, 0.002))
    later = clf.next_probes()
    (silence,) = [p for p in later if p.proto == "udp"]
    (tcp2,) = [p for p in later if p.proto == "tcp"]
    clf.handle(tcp2.id, Answer((PUBLIC_IP, 5000), (LOCAL_IP, 5000), OTHER, 0.002))
    assert (silence.socket, silence.dest, silence.change) == (0, PRIMARY, 0)
    clf.handle(silence.id, second_test_one)
    return first, silence


def test_udp_silent_while_tcp_answers_is_blocked_without_waiting_for_test_one():
    """After TCP's answer, one more UDP test I on a short schedule; its silence ends every UDP
    probe (test I's own 1.5 s schedule included), and TCP is still classified."""
    clf = Classifier(PRIMARY, tcp=True)
    first, silence = udp_silent_tcp_answers(clf, None)
    total, sends = give_up_after(silence.backoff)
    assert sends == 3 and 0.3 <= total <= 0.6
    udp = [p for p in first if p.proto == "udp"]
    assert len(udp) == 3 and not any(clf.wanted(p.id) for p in udp)
    assert clf.done and not clf.next_probes()  # no allocation samples over a blocked UDP
    found = clf.result()
    assert found.udp.filtering is Filtering.BLOCKED and found.mapped_udp is None
    assert found.tcp.mapping is Mapping.ENDPOINT_INDEPENDENT and found.mapped_tcp is not None
    clf.handle(udp[0].id, Answer((PUBLIC_IP, 5000), (LOCAL_IP, 5000), OTHER, 0.9))  # ignored
    assert clf.result() == found


def test_an_answer_to_the_second_test_one_stands_for_the_first():
    clf = Classifier(PRIMARY, tcp=True)
    first, _ = udp_silent_tcp_answers(clf, Answer((PUBLIC_IP, 5000), (LOCAL_IP, 5000), OTHER, 0.002))
    test_one = next(p for p in first if p.proto == "udp" and p.socket == 0)
    assert not clf.wanted(test_one.id)
    assert clf.result().mapped_udp == (PUBLIC_IP, 5000)
    assert clf.result().udp.filtering is not Filtering.BLOCKED
    assert any(p.dest == (OTHER[0], PRIMARY[1]) and p.proto == "udp" for p in clf.next_probes())


def test_udp_answering_first_never_sends_a_second_test_one():
    clf = Classifier(PRIMARY, tcp=True)
    for p in clf.next_probes():
        clf.handle(p.id, Answer((PUBLIC_IP, 5000 + p.socket), (LOCAL_IP, 5000 + p.socket), OTHER, 0.002))
    assert not [p for p in clf.next_probes() if p.proto == "udp" and p.socket == 0 and p.dest == PRIMARY]
