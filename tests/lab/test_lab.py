"""The lab, built for real: every profile's classification, hairpin, lifetime, double NAT, daemons,
impairments, and clean teardown even when a test raises. Needs root (CI runs as root)."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from netsim.control import services, verify
from netsim.control.daemons import DaemonSpec
from netsim.control.lab import PYTHON, Lab, leftovers
from netsim.errors import CommandError, DaemonError
from netsim.model.nat import PROFILES
from netsim.model.plan import router_steps
from netsim.model.topology import IPV6, Impairment, Site, Topology, double_nat, two_sites, zoo

pytestmark = [pytest.mark.root, pytest.mark.lab]


def test_every_profile_is_what_its_label_says():
    """RFC 5780 mapping/filtering over UDP and TCP, allocation, hairpin on/off, mapping lifetime,
    and coturn's independent turnutils_natdiscovery behind every router."""
    topo = verify.verification_topology(list(PROFILES), lifetime=3)
    with Lab(topo) as lab:
        infra = services.start(lab, brokers=False, names=False)
        checks = verify.run_checks(lab, infra)
        checks += [verify.check_natdiscovery(lab, infra, s) for s in topo.sites if s.name in PROFILES]
    bad = [c for c in checks if not c.ok]
    assert not bad, bad
    kinds = {c.what for c in checks}
    assert kinds == {"udp", "tcp", "ipv6", "hairpin", "lifetime", "natdiscovery"}
    udp = {c.site: c for c in checks if c.what == "udp"}
    v6 = {f"v6-{b}" for b in IPV6}
    assert set(udp) == set(PROFILES) | {"port-range", "hairpin-on", "hairpin-off", "lifetime"} | v6
    assert udp["port-range"].measured == "EIM APDF random"  # the port-range knob took effect
    assert {c.site: c.measured for c in checks if c.what == "ipv6"} == {
        f"v6-{b}": verify.IPV6_EXPECTED[b] for b in IPV6
    }


def test_a_mislabelled_router_is_caught():
    """Swap a router's rules behind its label: verification must report the mismatch."""
    topo = Topology("mislabel", (Site("fc", "full-cone"),))
    with Lab(topo) as lab:
        infra = services.start(lab, brokers=False, names=False)
        lab.set_profile("fc", "symmetric")  # rules of a symmetric NAT, label still says full cone
        checks = verify.check_sites(lab, infra, [Site("fc", "full-cone")])
    assert [c.ok for c in checks] == [False, False]
    assert checks[0].measured.startswith("APDM APDF")


def test_a_mislabelled_ipv6_firewall_is_caught():
    """An open IPv6 router behind a firewall6 label: the IPv6 check reports it."""
    site = Site("fw", "port-restricted-cone", ipv6="firewall6")
    with Lab(Topology("mislabel6", (site,))) as lab:
        infra = services.start(lab, brokers=False, names=False)
        r = lab.topology.router("fw")
        lab.execute(router_steps(r, replace(lab.plan.routers[r], ipv6="open6")))  # label unchanged
        check = verify.check_ipv6(lab, infra, site)
    assert not check.ok and check.measured.startswith("no-NAT EIF, unsolicited in")


def test_double_nat_maps_through_both_routers():
    topo = double_nat(inner="port-restricted-cone", carrier="symmetric")
    with Lab(topo) as lab:
        infra = services.start(lab, brokers=False, names=False)
        result = verify.classify(lab, infra, "home")
        # the outer symmetric NAT decides: every destination gets its own mapping
        assert result["udp"]["mapping"] == "address_port_dependent"
        out = lab.run(lab.host("home"), ["ping", "-c", "1", "-W", "2", lab.ip("pub")]).stdout
        assert "1 received" in out
        # the public side sees the carrier's address, not the home router's
        assert topo.public_ip("home") == topo.wan_ip("cgn") != topo.wan_ip("home")


def test_every_daemon_is_reachable_from_behind_every_nat():
    topo = zoo()
    with Lab(topo) as lab:
        infra = services.start(lab)
        tcp = [b.removeprefix("mqtt://") for b in infra.brokers] + [
            infra.names,
            infra.prober,
            f"{infra.stun[0]}:3478",
        ]
        for site in topo.sites:
            out = json.loads(
                lab.run(
                    lab.host(site.name),
                    [PYTHON, "-m", "netsim.hosts.probe", "reach", "--tcp", *tcp, "--stun", infra.stun[0]],
                ).stdout
            )
            stun_expected = site.profile != "udp-blocked"
            assert out.pop(f"stun:{infra.stun[0]}") is stun_expected, site.profile
            assert all(out.values()), (site.profile, out)
        # a real MQTT round trip through a broker from behind two different NATs
        sub = lab.popen(
            lab.host("symmetric"),
            ["mosquitto_sub", "-h", "203.0.113.20", "-t", "wg/t", "-C", "1", "-W", "10"],
            stdout=-1,
            text=True,
        )
        for _ in range(50):  # the subscriber may not be subscribed yet: publish until it has the message
            lab.run(
                lab.host("full-cone"), ["mosquitto_pub", "-h", "203.0.113.20", "-t", "wg/t", "-m", "hello"]
            )
            if sub.poll() is not None:
                break
            try:
                sub.wait(0.1)
            except Exception:  # noqa: BLE001  (subprocess.TimeoutExpired: keep publishing)
                continue
        assert sub.wait(10) == 0 and sub.stdout.read().strip() == "hello"


def ping_avg(lab, host, target, count=20):
    lab.run(host, ["ping", "-c", "1", "-i", "0.05", "-w", "10", target])  # ARP crosses the relay too: warm up
    out = lab.run(host, ["ping", "-c", str(count), "-i", "0.05", "-q", target]).stdout
    return float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1)), out


def test_delay_within_ten_percent():
    topo = Topology(
        "delay", (Site("a", "port-restricted-cone", wan=Impairment(delay_ms=25)), Site("b", "open"))
    )
    with Lab(topo) as lab:
        avg, out = ping_avg(lab, lab.host("a"), lab.ip("b"))
        assert lab.plan.applied == [
            {"link": "a WAN", "delay_ms": 25, "jitter_ms": 0.0, "loss": 0.0, "rate_mbit": None}
        ]
    assert abs(avg - 50.0) <= 5.0, out  # 25 ms each way through the relay


def test_loss_is_applied():
    topo = Topology("loss", (Site("a", "port-restricted-cone", wan=Impairment(loss=0.3)), Site("b", "open")))
    with Lab(topo) as lab:
        # the path is up once one echo comes back (ARP is not dropped, so neighbours resolve)
        lab.run(lab.host("a"), ["ping", "-c", "1", "-i", "0.05", "-w", "10", "-q", lab.ip("b")])
        out = lab.run(
            lab.host("a"), ["ping", "-c", "200", "-i", "0.005", "-W", "0.5", "-q", lab.ip("b")], check=False
        ).stdout
    loss = float(re.search(r"([\d.]+)% packet loss", out).group(1)) / 100
    # both directions drop 30%: a ping survives with 0.49 -> about 51% loss; binomial spread is small
    assert 0.35 < loss < 0.67, out


def test_teardown_after_a_test_that_raises():
    with pytest.raises(RuntimeError, match="boom"), Lab(two_sites()) as lab:
        infra = services.start(lab)
        daemons = list(lab.daemons)
        assert infra.brokers
        raise RuntimeError("boom")
    assert not leftovers()
    assert all(not d.running for d in daemons)


def test_failing_command_names_host_argv_and_stderr():
    with Lab(two_sites()) as lab, pytest.raises(CommandError) as info:
        lab.run(lab.router("a"), ["nft", "add", "rule", "ip", "nosuchtable", "x", "drop"])
    assert "wgr1" in str(info.value) and "nosuchtable" in str(info.value)


def test_a_daemon_that_will_not_start_stops_with_its_log():
    with Lab(two_sites()) as lab:
        broken = DaemonSpec(
            name="broken-mosquitto",
            argv=("mosquitto", "-c", "{dir}/bad.conf"),
            configs={"bad.conf": "listener 1883 198.51.100.250\n"},
            ready="running",
            timeout=5,
        )
        with pytest.raises(DaemonError) as info:
            lab.start_daemon("wgs2", broken)
        assert "exited" in str(info.value) and "log tail" in str(info.value)


def test_upnp_and_natpmp_forward_through_miniupnpd():
    topo = Topology(
        "upnp", (Site("home", "port-restricted-cone", upnp=True, natpmp=True), Site("pub", "open"))
    )
    with Lab(topo) as lab:
        services.start(lab, brokers=False, names=False)
        host, ip = lab.host("home"), lab.ip("home")
        out = lab.run(
            host,
            ["upnpc", "-i", "-m", f"{host.name}-eth0", "-e", "wg", "-a", ip, "6001", "6001", "UDP", "600"],
            timeout=30,
        ).stdout
        assert "is redirected to internal" in out, out
        out = lab.run(
            host, ["natpmpc", "-g", topo.gateway("home"), "-a", "6003", "6003", "udp", "600"], timeout=30
        ).stdout
        assert "Mapped public port 6003" in out, out
        for port in (6001, 6003):
            listen = lab.popen(
                host,
                [
                    PYTHON,
                    "-c",
                    (
                        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                        f"s.bind(('0.0.0.0', {port})); s.settimeout(10); print('ready', flush=True); "
                        "print(s.recvfrom(100)[0].decode())"
                    ),
                ],
                stdout=-1,
                text=True,
            )
            assert listen.stdout.readline().strip() == "ready"
            # unsolicited, from a host that never talked to the LAN host: only a port mapping lets it in
            lab.run(
                lab.host("pub"),
                [
                    PYTHON,
                    "-c",
                    (
                        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                        f"[s.sendto(b'through-{port}', ('{topo.wan_ip('home')}', {port})) for _ in range(3)]"
                    ),
                ],
            )
            assert listen.stdout.readline().strip() == f"through-{port}"
            listen.wait(10)


def test_warpgate_nat_prints_every_label_and_agrees_with_verify():
    """`warpgate nat` (a real node's discovery at start) inside each of the 8 profiles prints the
    label's behaviour, and `netsim verify` measures the same: both run one classifier
    (``warpgate.discovery``)."""
    import inspect

    from netsim.hosts import probe
    from warpgate import discovery

    assert "discovery.classify(" in inspect.getsource(probe.classify_engine)  # one classifier
    assert discovery.classify.__module__ == "warpgate.discovery"
    warpgate_cli = str(Path(PYTHON).parent / "warpgate")
    profiles = list(PROFILES)
    topo = verify.verification_topology(profiles, hairpin=False, lifetime=None)
    with Lab(topo) as lab:
        infra = services.start(lab, brokers=False, names=False)
        checks = {(c.site, c.what): c for c in verify.check_sites(lab, infra, [Site(p, p) for p in profiles])}
        printed = {}
        for p in profiles:
            host = lab.host(p)
            out = lab.run(
                host, [warpgate_cli, "nat", "--stun", infra.stun[0], "-i", f"{host.name}-eth0", "--json"]
            )
            printed[p] = json.loads(out.stdout)
    for p in profiles:
        label, got = PROFILES[p], printed[p]
        want_udp = {
            "mapping": label.udp.mapping,
            "filtering": label.udp.filtering,
            "allocation": label.udp.allocation,
        }
        if label.udp.filtering.name == "BLOCKED":
            assert got["udp"]["filtering"] == "blocked", (p, got)
            assert checks[(p, "udp")].measured == "blocked"
        else:
            assert {k: got["udp"][k] for k in want_udp} == {k: v.name.lower() for k, v in want_udp.items()}, (
                p,
                got,
            )
            assert got["udp"]["delta"] == label.udp.delta
            assert checks[(p, "udp")].measured == verify.describe(verify.measured_behaviour(got["udp"]))
        assert got["tcp"]["mapping"] == label.tcp.mapping.name.lower(), (p, got)
        assert checks[(p, "tcp")].measured.split()[0] == verify.SHORT_MAPPING[got["tcp"]["mapping"]]
        if label.translates:
            assert got["mapped_udp"] is None or got["mapped_udp"][0] == topo.public_ip(p)


def test_a_measured_nat_replays_as_a_site(tmp_path):
    """From the wild to the lab: ``warpgate nat --export`` behind a router writes a site;
    ``netsim verify FILE`` builds it and classifies it the same, axis by axis."""
    import subprocess

    from netsim.model.nat import Profile
    from warpgate.proto.nat import Filtering, Mapping, NatBehaviour, PortAllocation

    wild = Profile.axes(
        NatBehaviour(Mapping.ADDRESS_DEPENDENT, Filtering.ADDRESS_DEPENDENT, PortAllocation.SEQUENTIAL, 2)
    )
    sites = (
        Site("wild", wild),
        Site("wild-cgn", "symmetric", hosts=0),
        Site("home", "full-cone", upstream="wild-cgn"),
    )
    warpgate_cli = str(Path(PYTHON).parent / "warpgate")
    measured, files = {}, []
    with Lab(Topology("wild", sites)) as lab:
        infra = services.start(lab, brokers=False, names=False)
        for name in ("wild", "home"):
            host, path = lab.host(name), tmp_path / f"{name}.toml"
            out = lab.run(
                host,
                [warpgate_cli, "nat", "--stun", infra.stun[0], "-i", f"{host.name}-eth0", "--json"]
                + ["--export", str(path), "--site", f"replayed-{name}"],
            )
            measured[name] = json.loads(out.stdout.splitlines()[-1])
            files.append(str(path))
    assert verify.describe(verify.measured_behaviour(measured["wild"]["udp"])) == "ADM ADF sequential+2"
    report = tmp_path / "checks.json"
    netsim_cli = str(Path(PYTHON).parent / "netsim")
    proc = subprocess.run(
        [netsim_cli, "verify", *files, "--json", str(report)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {(c["site"], c["what"]): c for c in json.loads(report.read_text())}
    for name in ("wild", "home"):
        replayed = checks[(f"replayed-{name}", "udp")]
        assert replayed["ok"] and replayed["measured"] == verify.describe(
            verify.measured_behaviour(measured[name]["udp"])
        ), (name, replayed)
        tcp = checks[(f"replayed-{name}", "tcp")]
        assert (
            tcp["ok"] and tcp["measured"].split()[0] == verify.SHORT_MAPPING[measured[name]["tcp"]["mapping"]]
        )
    # the double NAT measured as one router: what the internet sees of a full cone behind a symmetric
    assert checks[("replayed-home", "udp")]["measured"] == "APDM APDF random"
