"""``netsim``: build labs, check that their NATs are what they say, get a shell in one, clean up."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from netsim.errors import NetsimError
from netsim.nat import PROFILES
from netsim.topology import READY, Topology


def parse_topology(spec: str) -> Topology:
    """``zoo``, ``two-sites:full-cone,symmetric``, ``n-sites:open,symmetric,...``, ``double-nat``,
    ``hairpin:full-cone``."""
    name, _, args = spec.partition(":")
    if name not in READY:
        raise NetsimError(f"unknown topology {name!r}; known: {', '.join(READY)}")
    parts = [a for a in args.split(",") if a]
    for p in parts:
        if p not in PROFILES:
            raise NetsimError(f"unknown profile {p!r}; known: {', '.join(PROFILES)}")
    factory = READY[name]
    if name in ("n-sites", "zoo"):
        return factory(parts or list(PROFILES))  # type: ignore[operator, no-any-return]
    return factory(*parts)  # type: ignore[operator, no-any-return]


def cmd_verify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from netsim import services, verify
    from netsim.lab import Lab

    profiles = args.profiles or list(PROFILES)
    for p in profiles:
        if p not in PROFILES:
            raise NetsimError(f"unknown profile {p!r}; known: {', '.join(PROFILES)}")
    topo = verify.verification_topology(profiles, hairpin=not args.no_hairpin, lifetime=args.lifetime or None)
    t0 = time.perf_counter()
    with Lab(topo) as lab:
        infra = services.start(lab, brokers=False, names=False)
        up = time.perf_counter() - t0
        checks = verify.run_checks(lab, infra)
        if args.natdiscovery:
            plain = [s for s in topo.sites if s.name in profiles]
            with ThreadPoolExecutor(max_workers=8) as pool:
                checks += list(pool.map(lambda s: verify.check_natdiscovery(lab, infra, s), plain))
    elapsed = time.perf_counter() - t0
    table = Table(title=f"netsim verify: {len(profiles)} profiles (lab up {up:.1f} s, total {elapsed:.1f} s)")
    for col in ("site", "profile", "check", "expected", "measured", "ok"):
        table.add_column(col)
    for c in checks:
        table.add_row(
            c.site, c.profile, c.what, c.expected, c.measured, "[green]ok" if c.ok else "[red]MISMATCH"
        )
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(verify.as_records(checks), indent=2))
    bad = [c for c in checks if not c.ok]
    if bad:
        print(
            f"netsim verify: {len(bad)} mismatch(es): {', '.join(f'{c.site}/{c.what}' for c in bad)}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    from mininet.cli import CLI

    from netsim import services
    from netsim.lab import Lab

    topo = parse_topology(args.topology)
    with Lab(topo) as lab:
        infra = services.start(lab)
        print(f"lab {topo.name}: hosts {', '.join(lab.plan.hosts)}")
        print(f"infrastructure: {json.dumps(infra.as_dict())}")
        for s in topo.sites:
            hosts = ", ".join(f"{h} ({topo.host_ip(s.name, i)})" for i, h in enumerate(topo.hosts_of(s.name)))
            router = f"{topo.router(s.name)} ({topo.wan_ip(s.name)})"
            print(f"  site {s.name:12} {s.profile:22} router {router}  hosts {hosts}")
        CLI(lab.net)
    return 0


def _netns_of(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def cmd_clean(args: argparse.Namespace) -> int:
    """Remove leftovers carrying our prefix only: Mininet shells of ``wg*`` hosts and every process
    inside their namespaces (by PID), ``wg*`` named namespaces, ``wg*`` links in this namespace."""
    from netsim.lab import leftovers

    shells = [line.split()[1].rstrip(":") for line in leftovers() if line.startswith("process ")]
    namespaces = {ns for ns in (_netns_of(p) for p in shells) if ns and ns != _netns_of("self")}
    victims = set(shells)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if _netns_of(pid) in namespaces:
            victims.add(pid)
    for pid in sorted(victims, key=int):
        print(f"kill {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    netns = Path("/run/netns")
    for ns in sorted(p.name for p in netns.iterdir()) if netns.is_dir() else []:
        if ns.startswith("wg"):
            print(f"ip netns del {ns}")
            subprocess.run(["ip", "netns", "del", ns], check=True)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith("wg"):
            print(f"ip link del {name}")
            subprocess.run(["ip", "link", "del", name], check=True)
    print("clean" if not victims else f"removed {len(victims)} process(es)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netsim", description="warpgate's NAT lab (needs root)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "verify", help="classify NAT profiles with RFC 5780 tests; non-zero exit on any mismatch"
    )
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=f"default: all ({', '.join(PROFILES)})")
    p.add_argument("--no-hairpin", action="store_true", help="skip the hairpinning on/off check")
    p.add_argument(
        "--lifetime",
        type=int,
        default=3,
        metavar="S",
        help="check a router with this UDP mapping lifetime (0: skip; default 3)",
    )
    p.add_argument(
        "--natdiscovery",
        action="store_true",
        help="also run coturn's turnutils_natdiscovery behind each router and compare",
    )
    p.add_argument("--json", metavar="FILE", help="write the checks as JSON")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("shell", help="bring a topology up with its daemons and open Mininet's CLI on it")
    p.add_argument(
        "topology", help="zoo | two-sites:A,B | n-sites:P,P,... | double-nat[:INNER,CARRIER] | hairpin[:P]"
    )
    p.set_defaults(func=cmd_shell)
    p = sub.add_parser("clean", help="remove lab leftovers carrying our naming prefix (wg*)")
    p.set_defaults(func=cmd_clean)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except NetsimError as exc:
        print(f"netsim: {exc}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
