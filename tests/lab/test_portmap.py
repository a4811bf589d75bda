"""Port mapping against a real miniupnpd, one protocol alone per router: a node maps its port at
start, the router's rules show the mapping while it runs, a short lease is refreshed, and Ctrl-C
(SIGINT) deletes it; ``warpgate nat`` names the protocol the gateway offers and no other."""

import json
import select
import signal
import subprocess
import time

import pytest

from netsim.control import services
from netsim.control.lab import PYTHON, Lab
from netsim.model.topology import Site, Topology

pytestmark = [pytest.mark.root, pytest.mark.lab]

PROTOCOLS = ["pcp", "natpmp", "upnp"]
LEASE = 4


def read_until(stream, needle, timeout):
    """Lines of ``stream`` up to the first containing ``needle`` (a blocking read with a bound)."""
    lines = []
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        ready, _, _ = select.select([stream], [], [], until - time.monotonic())
        if not ready:
            break
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen within {timeout} s:\n{''.join(lines)}")


def mappings(lab, site):
    """miniupnpd's DNAT rules on the router (its nft chain), one line per mapping."""
    out = lab.run(lab.router(site), ["nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd"]).stdout
    return [line.strip() for line in out.splitlines() if "dnat" in line]


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_a_node_holds_refreshes_and_on_sigint_deletes_its_mapping(proto):
    topo = Topology("pm", (Site("home", "symmetric", **{proto: True}),))
    with Lab(topo) as lab:
        services.start(lab, brokers=False, names=False)
        host = lab.host("home")
        assert mappings(lab, "home") == []
        argv = [PYTHON, "-m", "warpgate.cli", "-v", "node", "-i", f"{host.name}-eth0", "-4", "--port", "7000"]
        node = lab.popen(
            host,
            [*argv, "--portmap-lease", str(LEASE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert node.stdout.readline().startswith("wg1")  # started: the mapping is made by then
            t0 = time.monotonic()
            read_until(node.stderr, f"# gateway mapping by {proto}", 5)
            held = mappings(lab, "home")
            # UDP and TCP, each to the node's port on its LAN address
            assert len(held) == 2 and all(f"{lab.ip('home')}:7000" in rule for rule in held), held
            for _ in range(3):  # refreshed at half the lease, again and again
                read_until(node.stderr, f"port mapping: {proto} lease refreshed", 3 * LEASE)
            assert time.monotonic() - t0 > LEASE  # past the first lease: only refreshes kept it
            assert mappings(lab, "home") == held
            node.send_signal(signal.SIGINT)
            assert node.wait(timeout=15) == 0
            assert mappings(lab, "home") == []  # deleted on Ctrl-C, not left to expire
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()


def test_warpgate_nat_names_the_protocols_the_gateway_offers():
    topo = Topology("pmnat", tuple(Site(f"only-{p}", "symmetric", **{p: True}) for p in PROTOCOLS))
    with Lab(topo) as lab:
        infra = services.start(lab, brokers=False, names=False)
        for proto in PROTOCOLS:
            site = f"only-{proto}"
            host = lab.host(site)
            out = lab.run(
                host,
                [
                    PYTHON,
                    "-m",
                    "warpgate.cli",
                    "nat",
                    "--stun",
                    infra.stun[0],
                    "-i",
                    f"{host.name}-eth0",
                    "--json",
                ],
                timeout=30,
            ).stdout
            offered = json.loads(out.splitlines()[-1])["port_mapping"]
            assert list(offered) == [proto], (site, offered)
            assert mappings(lab, site) == []  # asking what is offered maps nothing


def pinholes(lab, site):
    """miniupnpd's IPv6 pinhole rules on the router (its forward chain), one line per pinhole."""
    out = lab.run(lab.router(site), ["nft", "list", "chain", "inet", "filter", "miniupnpd"]).stdout
    return [line.strip() for line in out.splitlines() if "accept" in line]


@pytest.mark.parametrize("proto", ["pcp", "upnp"])
def test_a_node_opens_refreshes_and_on_sigint_closes_its_ipv6_pinhole(proto):
    """Behind a stateful IPv6 firewall whose router speaks PCP (or UPnP IGD v2's
    WANIPv6FirewallControl), each alone, the node asks for a
    pinhole for its port at start (UDP and TCP); a connection from the internet then reaches it,
    which the firewall drops otherwise; the short lease is refreshed; Ctrl-C closes it."""
    topo = Topology("pin", (Site("home", "symmetric", ipv6="firewall6", **{proto: True}),))
    with Lab(topo) as lab:
        infra = services.start(lab, brokers=False, names=False)
        host = lab.host("home")
        me = topo.host_ip6("home")
        host_ip, port = infra.prober.rsplit(":", 1)
        prober = (host_ip, int(port))
        assert pinholes(lab, "home") == []

        def unsolicited(port: int) -> bool:
            """Does a connection from the internet (the prober, from the STUN server's IPv6
            address) reach ``port``? A stateful firewall drops its SYN unless a pinhole is open."""
            ask = {
                "op": "tcp_connect",
                "target": [me, port],
                "from": infra.stun6[0],
                "timeout": 1,
                "tries": 2,
            }
            code = f"from netsim.hosts.probe import _ask; print(_ask({prober!r}, {ask!r})['ok'])"
            return lab.run(lab.host("home"), [PYTHON, "-c", code], timeout=30).stdout.strip() == "True"

        assert not unsolicited(7000)  # the firewall drops it: nothing asked for a pinhole yet
        nat = [PYTHON, "-m", "warpgate.cli", "nat", "--stun", infra.stun[0], "--stun", f"[{infra.stun6[0]}]"]
        out = lab.run(host, [*nat, "-i", f"{host.name}-eth0", "--json"], timeout=30).stdout
        assert json.loads(out.splitlines()[-1])["ipv6"] == me  # the IPv6 path works, untranslated
        argv = [PYTHON, "-m", "warpgate.cli", "-v", "node", "-i", f"{host.name}-eth0", "-6", "--port", "7000"]
        node = lab.popen(
            host,
            [*argv, "--portmap-lease", str(LEASE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert node.stdout.readline().startswith("wg1")
            t0 = time.monotonic()
            read_until(node.stderr, f"# IPv6 pinhole by {proto}", 5)
            held = pinholes(lab, "home")
            assert len(held) == 2 and all("th dport 7000" in rule for rule in held), held  # UDP, TCP
            assert unsolicited(7000)  # the pinhole lets the internet in
            for _ in range(3):
                read_until(node.stderr, f"IPv6 pinhole: {proto} lease refreshed", 3 * LEASE)
            assert time.monotonic() - t0 > LEASE
            assert pinholes(lab, "home") == held
            node.send_signal(signal.SIGINT)
            assert node.wait(timeout=15) == 0
            assert pinholes(lab, "home") == []  # closed on Ctrl-C, not left to expire
            assert not unsolicited(7000)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
