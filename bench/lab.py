"""Lab benchmark (root): how fast a lab comes up, validates itself and goes away; how big it gets.

    .venv/bin/python bench/lab.py [--runs 3] [--sites 50 --hosts 2]

Targets: a two-site lab with its daemons up and self-validated in <= 3 s, torn down in
<= 1 s; 100 peers behind 50 NAT routers in one topology on this 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from netsim.control import services, verify
from netsim.control.lab import Lab, leftovers
from netsim.control.signals import torn_down
from netsim.model.nat import PROFILES
from netsim.model.topology import Site, Topology, two_sites


def two_site_run() -> dict[str, float]:
    t0 = time.perf_counter()
    lab = Lab(two_sites("port-restricted-cone", "symmetric")).start()
    try:
        t_up = time.perf_counter()
        infra = services.start(lab)
        t_daemons = time.perf_counter()
        checks = verify.check_sites(lab, infra, list(lab.topology.sites))
        t_valid = time.perf_counter()
        assert all(c.ok for c in checks), checks
    finally:
        t_stop = time.perf_counter()
        lab.stop()
    t_end = time.perf_counter()
    return {
        "lab": t_up - t0,
        "daemons": t_daemons - t_up,
        "validate": t_valid - t_daemons,
        "ready_total": t_valid - t0,
        "teardown": t_end - t_stop,
    }


def big_run(sites: int, hosts: int) -> dict[str, float]:
    names = list(PROFILES)
    nat_profiles = [p for p in names if PROFILES[p].translates]
    topo = Topology(
        "big", tuple(Site(f"n{i}", nat_profiles[i % len(nat_profiles)], hosts=hosts) for i in range(sites))
    )
    t0 = time.perf_counter()
    lab = Lab(topo).start()
    try:
        t_up = time.perf_counter()
        # every peer reaches the internet through its NAT (one ping each, in parallel)
        peers = [(s.name, i) for s in topo.sites for i in range(s.hosts)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            ok = list(
                pool.map(
                    lambda p: (
                        lab.run(
                            lab.host(*p), ["ping", "-c", "1", "-W", "2", "203.0.113.10"], check=False
                        ).returncode
                        == 0
                    ),
                    peers,
                )
            )
        t_ping = time.perf_counter()
    finally:
        t_stop = time.perf_counter()
        lab.stop()
    t_end = time.perf_counter()
    return {
        "peers": len(peers),
        "routers": sites,
        "reachable": sum(ok),
        "lab": t_up - t0,
        "ping_all": t_ping - t_up,
        "teardown": t_end - t_stop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--hosts", type=int, default=2)
    args = parser.parse_args()
    runs = [two_site_run() for _ in range(args.runs)]
    print(f"two-site lab, {args.runs} runs, medians. lab: hosts, links, rules; daemons: coturn, prober,")
    print("2x mosquitto, names server; validate: RFC 5780 UDP+TCP classification of both routers")
    for key in ("lab", "daemons", "validate", "ready_total", "teardown"):
        print(f"  {key:12} {statistics.median(r[key] for r in runs):6.2f} s")
    print("  targets: ready_total <= 3 s, teardown <= 1 s")
    big = big_run(args.sites, args.hosts)
    print(
        f"{big['peers']} peers behind {big['routers']} NAT routers: up {big['lab']:.2f} s, "
        f"{big['reachable']}/{big['peers']} reach the internet ({big['ping_all']:.2f} s), "
        f"torn down in {big['teardown']:.2f} s"
    )
    assert not leftovers(), leftovers()


if __name__ == "__main__":
    raise SystemExit(torn_down(main))
