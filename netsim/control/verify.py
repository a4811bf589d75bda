"""Self-validation: does every router behave as its label says? (RFC 5780 tests, UDP and TCP.)

A mislabelled NAT is the default failure of NAT labs, so the runner
classifies every router before a scenario and refuses to run on a mismatch; ``netsim verify``
does the same for any set of profiles and prints the table.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from netsim.control import services
from netsim.control.lab import PYTHON, Lab
from netsim.errors import NetsimError
from netsim.model.nat import Profile, behind, expected
from netsim.model.topology import IPV6, Site, Topology
from warpgate.proto.nat import Filtering, Mapping, NatBehaviour, PortAllocation, shorthand


@dataclass(frozen=True)
class Check:
    site: str
    profile: str
    what: str
    """``udp``, ``tcp``, ``ipv6``, ``hairpin`` or ``lifetime``."""
    expected: str
    measured: str
    measurements: int = 1
    """How many classifications the verdict is the majority of (1 when the first one agreed)."""

    @property
    def ok(self) -> bool:
        return self.expected == self.measured


SHORT_MAPPING = {
    "none": "no-NAT",
    "endpoint_independent": "EIM",
    "address_dependent": "ADM",
    "address_port_dependent": "APDM",
    "unknown": "?",
}
SHORT_FILTERING = {
    "endpoint_independent": "EIF",
    "address_dependent": "ADF",
    "address_port_dependent": "APDF",
    "unknown": "?",
}


def short(mapping: str, filtering: str, allocation: str | None = None) -> str:
    """RFC 4787 shorthand: ``EIM APDF preserving``; ``blocked`` when nothing passes."""
    if filtering == "blocked":
        return "blocked"
    text = f"{SHORT_MAPPING[mapping]} {SHORT_FILTERING[filtering]}"
    return f"{text} {allocation}" if allocation else text


def describe(b: NatBehaviour, proto: str = "udp", *, allocation: bool = True) -> str:
    """The axes a check compares, in RFC 4787 shorthand: UDP with its allocation (and delta);
    TCP with whether the port is kept (one TCP sample shows no more)."""
    if b.filtering is Filtering.BLOCKED:
        return "blocked"
    text = shorthand(b, allocation=allocation and proto == "udp")
    if proto == "tcp" and allocation:
        text += " preserving" if b.allocation is PortAllocation.PRESERVING else " translated"
    return text


def measured_behaviour(m: dict[str, Any]) -> NatBehaviour:
    """The classifier's JSON (``warpgate.proto.nat.as_dict``) back as a ``NatBehaviour``."""
    if m["filtering"] == "blocked":
        return NatBehaviour(filtering=Filtering.BLOCKED)
    return NatBehaviour(
        Mapping[m["mapping"].upper()],
        Filtering[m["filtering"].upper()],
        PortAllocation[str(m.get("allocation") or "unknown").upper()],
        int(m.get("delta") or 0),
    )


def classify(lab: Lab, infra: services.Infrastructure, site: str) -> dict[str, Any]:
    proc = lab.run(
        lab.host(site),
        [
            PYTHON,
            "-m",
            "netsim.hosts.probe",
            "classify",
            "--stun",
            infra.stun[0],
            "--stun2",
            infra.stun[1],
            "--prober",
            infra.prober,
        ],
        timeout=60,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def check_sites(
    lab: Lab, infra: services.Infrastructure, sites: list[Site], *, repeats: int = 3
) -> list[Check]:
    """Classify each site's first host (in parallel) and compare with what its profile promises.

    A site whose first measurement disagrees with its label is measured again, up to ``repeats``
    times in all, and each transport's verdict is the majority (on a lossy wire one lost probe can
    make one measurement wrong, not two of three); without a majority ``measured`` lists the most
    frequent verdict with its count, and the check fails."""

    topo = lab.topology
    sites = [s for s in sites if s.hosts >= 1]  # a carrier alone has no host to measure from

    def seen(site: Site) -> Profile:
        return behind(site.nat, topo.site(site.upstream).nat) if site.upstream else site.nat

    def measure(site: Site) -> list[dict[str, Any]]:
        runs = [classify(lab, infra, site.name)]
        if all(c.ok for c in _compare(site, seen(site), runs[0])):
            return runs
        runs += [classify(lab, infra, site.name) for _ in range(repeats - 1)]
        return runs

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip([s.name for s in sites], pool.map(measure, sites), strict=True))
    checks = []
    for s in sites:
        per_run = [_compare(s, seen(s), m) for m in results[s.name]]
        for i, first in enumerate(per_run[0]):
            votes = Counter(run[i].measured for run in per_run)
            measured, n = votes.most_common(1)[0]
            if len(per_run) > 1:
                measured = f"{measured} ({n} of {len(per_run)})" if n * 2 <= len(per_run) else measured
            checks.append(Check(s.name, first.profile, first.what, first.expected, measured, len(per_run)))
    return checks


def _compare(s: Site, nat: Profile, m: dict[str, Any]) -> list[Check]:
    """Every axis the classifier observes: UDP mapping, filtering, allocation and delta; TCP
    mapping, filtering (the prober) and port preservation (not with a port range: a local port
    that happens to lie inside the range is kept)."""
    udp, tcp = expected(nat, s.port_range)
    tcp_alloc = s.port_range is None
    return [
        Check(s.name, nat.name, "udp", describe(udp, "udp"), describe(measured_behaviour(m["udp"]), "udp")),
        Check(
            s.name,
            nat.name,
            "tcp",
            describe(tcp, "tcp", allocation=tcp_alloc),
            describe(measured_behaviour(m["tcp"]), "tcp", allocation=tcp_alloc),
        ),
    ]


def check_hairpin(lab: Lab, infra: services.Infrastructure, site: Site) -> Check:
    """Host 1 sends to host 0's public mapping; a reply means the router hairpins (RFC 4787 §6)."""
    listen = lab.popen(
        lab.host(site.name, 0),
        [PYTHON, "-m", "netsim.hosts.probe", "hairpin-listen", "--stun", infra.stun[0], "--wait", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listen.stdout is not None
    mapped = json.loads(listen.stdout.readline())["mapped"]
    if mapped is None:
        raise NetsimError(f"{site.name}: no STUN answer for the hairpin test")
    sent = lab.run(
        lab.host(site.name, 1),
        [
            PYTHON,
            "-m",
            "netsim.hosts.probe",
            "hairpin-send",
            "--stun",
            infra.stun[0],
            "--target",
            f"{mapped[0]}:{mapped[1]}",
            "--wait",
            "2",
        ],
        timeout=30,
    )
    listen.wait(10)
    ok = json.loads(sent.stdout)["ok"]
    return Check(site.name, site.label, "hairpin", "on" if site.hairpin else "off", "on" if ok else "off")


def check_lifetime(lab: Lab, infra: services.Infrastructure, site: Site) -> Check:
    """An unsolicited packet well inside the lifetime gets through; one well after does not."""
    life = site.mapping_lifetime
    if life is None:
        raise NetsimError(f"{site.name}: no mapping_lifetime set")
    early, late = round(life * 0.5, 2), round(life + 2.0, 2)
    out = lab.run(
        lab.host(site.name),
        [
            PYTHON,
            "-m",
            "netsim.hosts.probe",
            "lifetime",
            "--prober",
            infra.prober,
            "--after",
            str(early),
            str(late),
        ],
        timeout=life + 30,
    )
    alive = json.loads(out.stdout)["alive_after"]

    def state(ok: bool) -> str:
        return "alive" if ok else "gone"

    measured = f"{state(alive[str(early)])} at {early}s, {state(alive[str(late)])} at {late}s"
    return Check(site.name, site.label, "lifetime", f"alive at {early}s, gone at {late}s", measured)


IPV6_EXPECTED = {
    "open6": "no-NAT EIF, unsolicited in",
    "firewall6": "no-NAT APDF, unsolicited dropped",
    "firewall6-eif": "no-NAT EIF, unsolicited dropped",
    "blocked6": "blocked",
}
"""What ``classify6`` must measure of each IPv6 behaviour (``netsim.model.topology.IPV6``)."""


def describe6(m: dict[str, Any]) -> str:
    if m["blocked"]:
        return "blocked"
    mapping = "translated" if m["translated"] else "no-NAT"
    unsolicited = "in" if m["unsolicited"] else "dropped"
    return f"{mapping} {SHORT_FILTERING[m['filtering']]}, unsolicited {unsolicited}"


def check_ipv6(lab: Lab, infra: services.Infrastructure, site: Site, *, repeats: int = 3) -> Check:
    """The site's IPv6 firewall (RFC 6092), measured from its first host: the majority of up to
    ``repeats`` measurements when the first disagrees (as ``check_sites``)."""
    assert infra.stun6 is not None and site.ipv6 is not None
    want = IPV6_EXPECTED[site.ipv6]
    votes: Counter[str] = Counter()
    for _ in range(repeats):
        proc = lab.run(
            lab.host(site.name),
            [
                PYTHON,
                "-m",
                "netsim.hosts.probe",
                "classify6",
                "--stun",
                infra.stun6[0],
                "--stun2",
                infra.stun6[1],
                "--prober",
                infra.prober,
            ],
            timeout=60,
        )
        votes[describe6(json.loads(proc.stdout))] += 1
        if votes[want] and sum(votes.values()) == 1:
            break
    measured, n = votes.most_common(1)[0]
    total = sum(votes.values())
    if total > 1 and n * 2 <= total:
        measured = f"{measured} ({n} of {total})"
    return Check(site.name, f"{site.label} + {site.ipv6}", "ipv6", want, measured, total)


def verification_topology(
    profiles: list[str], *, hairpin: bool = True, lifetime: int | None = 3, ipv6: bool = True
) -> Topology:
    sites = [Site(p, p) for p in profiles]
    if "port-restricted-cone" in profiles:
        # the port-range knob: EIM stays, preservation goes (a random port in the range)
        sites.append(Site("port-range", "port-restricted-cone", port_range=(40000, 40999)))
    if ipv6:
        sites += [Site(f"v6-{b}", "port-restricted-cone", ipv6=b) for b in IPV6]
    if hairpin:
        sites += [
            Site("hairpin-on", "port-restricted-cone", hosts=2, hairpin=True),
            Site("hairpin-off", "port-restricted-cone", hosts=2),
        ]
    if lifetime:
        sites.append(Site("lifetime", "port-restricted-cone", mapping_lifetime=lifetime))
    return Topology("verify", tuple(sites))


def run_checks(lab: Lab, infra: services.Infrastructure) -> list[Check]:
    """Every check the topology allows: each site with a host is classified (through its carrier,
    if it has one); a site with two hosts is checked for hairpinning (on or off, as declared); a
    site with a mapping lifetime for it."""
    topo = lab.topology
    checks = check_sites(lab, infra, [s for s in topo.sites if s.hosts >= 1])
    for s in topo.sites:
        if s.hosts >= 2 and s.nat.translates:
            checks.append(check_hairpin(lab, infra, s))
        if s.mapping_lifetime is not None:
            checks.append(check_lifetime(lab, infra, s))
    return checks + check_ipv6_sites(lab, infra, list(topo.sites))


def check_ipv6_sites(lab: Lab, infra: services.Infrastructure, sites: list[Site]) -> list[Check]:
    """``check_ipv6`` for every site with IPv6 and a host, in parallel."""
    v6 = [s for s in sites if s.ipv6 is not None and s.hosts >= 1]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda s: check_ipv6(lab, infra, s), v6))


def as_records(checks: list[Check]) -> list[dict[str, Any]]:
    return [{**asdict(c), "ok": c.ok} for c in checks]


_ND_MAPPING = {
    "Endpoint Independent Mapping": "endpoint_independent",
    "Address Dependent Mapping": "address_dependent",
    "Address and Port Dependent Mapping": "address_port_dependent",
}
_ND_FILTERING = {
    "Endpoint Independent Filtering": "endpoint_independent",
    "Address Dependent Filtering": "address_dependent",
    "Address and Port Dependent Filtering": "address_port_dependent",
}


def parse_natdiscovery(text: str) -> str:
    """Read coturn's ``turnutils_natdiscovery -m -f`` verdict lines ("NAT with ... Mapping!")."""
    mapping = filtering = None
    for line in text.splitlines():
        if not line.startswith("NAT with "):
            continue
        phrase = line[len("NAT with ") :].rstrip("!")
        mapping = _ND_MAPPING.get(phrase, mapping)
        filtering = _ND_FILTERING.get(phrase, filtering)
    if mapping is None and filtering is None:
        return "blocked"
    return short(mapping or "unknown", filtering or "unknown")


def check_natdiscovery(lab: Lab, infra: services.Infrastructure, site: Site) -> Check:
    """Cross-check with an independent RFC 5780 client (it has no "no NAT" verdict: none reads as EIM)."""
    proc = lab.run(
        lab.host(site.name),
        ["timeout", "30", "turnutils_natdiscovery", "-m", "-f", infra.stun[0]],
        timeout=60,
        check=False,
    )
    udp, _ = expected(site.nat, site.port_range)
    if udp.filtering is Filtering.BLOCKED:
        want = "blocked"
    else:
        mapping = "endpoint_independent" if udp.mapping.name == "NONE" else udp.mapping.name.lower()
        want = short(mapping, udp.filtering.name.lower())
    return Check(site.name, site.label, "natdiscovery", want, parse_natdiscovery(proc.stdout))
