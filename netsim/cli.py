"""``netsim``: build labs, check that their NATs are what they say, get a shell in one, clean up."""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from netsim.control.signals import signals_tear_down
from netsim.errors import NetsimError, UsageError
from netsim.model.nat import PROFILES
from netsim.model.scenario import shipped
from netsim.model.stats import Thresholds
from netsim.model.topology import READY, Topology
from warpgate import __version__, argtypes


def parse_topology(spec: str) -> Topology:
    """``zoo``, ``two-sites:full-cone,symmetric``, ``n-sites:open,symmetric,...``, ``double-nat``,
    ``hairpin:full-cone``."""
    name, _, args = spec.partition(":")
    if name not in READY:
        raise UsageError(f"unknown topology {name!r}; known: {', '.join(READY)}")
    parts = [a for a in args.split(",") if a]
    for p in parts:
        if p not in PROFILES:
            raise UsageError(f"unknown profile {p!r}; known: {', '.join(PROFILES)}")
    factory = READY[name]
    if name in ("n-sites", "zoo"):
        return factory(parts or list(PROFILES))  # type: ignore[operator, no-any-return]
    return factory(*parts)  # type: ignore[operator, no-any-return]


def cmd_verify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from netsim.control import services, verify
    from netsim.control.lab import Lab
    from netsim.model import scenario
    from netsim.model.topology import Impairment

    names = args.profiles or list(PROFILES)
    files = [n for n in names if n.endswith(".toml")]
    profiles = [n for n in names if not n.endswith(".toml")]
    for p in profiles:
        if p not in PROFILES:
            raise UsageError(f"unknown profile {p!r}; known: {', '.join(PROFILES)} (or a FILE.toml of sites)")
    # a file's sites (warpgate nat --export, or a scenario's [sites]) are replayed as declared
    replayed = [
        site
        for f in files
        for name, spec in scenario.load_sites(f).items()
        for site in spec.sites(name, Impairment(), hosts=2 if spec.hairpin else 1)
    ]
    topo = verify.verification_topology(
        profiles,
        hairpin=not args.no_hairpin and not files,
        lifetime=None if files else args.lifetime or None,
        ipv6=not args.no_ipv6 and not files,
    )
    topo = Topology("verify", (*topo.sites, *replayed))
    t0 = time.perf_counter()
    with Lab(topo) as lab:
        infra = services.start(lab, brokers=False, names=False)
        up = time.perf_counter() - t0
        checks = verify.run_checks(lab, infra)
        if args.natdiscovery:
            plain = [s for s in topo.sites if s.hosts and not s.upstream]
            with ThreadPoolExecutor(max_workers=8) as pool:
                checks += list(pool.map(lambda s: verify.check_natdiscovery(lab, infra, s), plain))
    elapsed = time.perf_counter() - t0
    table = Table(
        title=f"netsim verify: {len(topo.sites)} routers (lab up {up:.1f} s, total {elapsed:.1f} s)"
    )
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

    from netsim.control import services
    from netsim.control.lab import Lab

    if args.topology.endswith(".toml"):
        from netsim.control import runner
        from netsim.model import scenario

        topo = runner.topology_for(scenario.load(args.topology))
    else:
        topo = parse_topology(args.topology)
    with Lab(topo) as lab:
        infra = services.start(lab)
        print(f"lab {topo.name}: hosts {', '.join(lab.plan.hosts)}")
        print(f"infrastructure: {json.dumps(infra.as_dict())}")
        for s in topo.sites:
            hosts = ", ".join(f"{h} ({topo.host_ip(s.name, i)})" for i, h in enumerate(topo.hosts_of(s.name)))
            router = f"{topo.router(s.name)} ({topo.wan_ip(s.name)})"
            print(f"  site {s.name:12} {s.label:22} router {router}  hosts {hosts}")
        from mininet.log import setLogLevel

        setLogLevel("output")  # the CLI prints command output through Mininet's logger
        CLI(lab.net)
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from netsim.control.lab import clean

    removed = clean()
    for line in removed:
        print(line)
    print("clean" if not removed else f"removed {len(removed)} leftover(s)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from netsim import report
    from netsim.control import runner
    from netsim.model import records, scenario

    sc = scenario.load(args.scenario)
    shard = _shard(args.shard)
    out = Path(args.out) if args.out else Path("reports") / f"{sc.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if args.resume and not args.out:
        raise UsageError("--resume needs --out DIR (the run to continue)")
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[rate]}"),
    ]
    with Progress(*columns, transient=False, disable=args.quiet) as bar:
        task = bar.add_task(
            f"{sc.name}: {len(runner.shard_cells(sc.cells, shard))} cells", total=None, rate=""
        )

        def progress(stats: dict[str, object]) -> None:
            done, ok, total = int(stats["done"]), int(stats["ok"]), int(stats["trials"])  # type: ignore[call-overload]
            rate = f"success {ok / max(1, done):.0%}"
            bar.update(task, total=total, completed=done, rate=rate)

        def started(stats: dict[str, object]) -> None:
            print(
                f"netsim: lab up and validated; {stats['trials']} trials (records: {out / records.RECORDS})",
                file=sys.stderr,
                flush=True,
            )

        runner.run(
            sc,
            out,
            trials=args.trials,
            resume=args.resume,
            shard=shard,
            progress=progress,
            started=started,
            sabotage=args.sabotage,
        )
    html = report.write(out)
    trials, _, meta = report.load(out)
    print(report.judge(report.cell_table(trials, report.flake_of(meta)), trials).line)
    print(f"records: {out / records.RECORDS}")
    print(f"report: {html.resolve()}")
    return 0


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit():
        raise UsageError(f"--shard takes K/N, got {text!r}")
    return int(k), int(n)


def cmd_report(args: argparse.Namespace) -> int:
    from netsim import report

    if len(args.run) == 1:
        print(report.write(Path(args.run[0])).resolve())
        return 0
    if not args.out:
        raise UsageError("a report over several runs needs --out DIR")
    print(report.side_by_side([Path(r) for r in args.run], Path(args.out)).resolve())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from netsim import report

    for flag, target in (("--json", args.json), ("--junit", args.junit)):
        if target and not Path(target).resolve().parent.is_dir():
            raise UsageError(f"{flag} {target}: no directory {Path(target).parent} to write it in")
    thresholds = Thresholds(args.max_drop, args.max_slowdown, args.min_ms)
    base, new = Path(args.base), Path(args.new)
    table, problems = report.compare(base, new, thresholds, common=args.common)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.common:
        print(f"\n{report.skipped(base, new)} cell(s) only one run has: not judged (--common)")
    if args.json:
        doc = {
            "base": args.base,
            "new": args.new,
            "thresholds": vars(thresholds),
            "regressions": [vars(p) for p in problems],
            "cells": json.loads(table.to_json(orient="records")),
        }
        Path(args.json).write_text(json.dumps(doc, indent=2))
    if args.junit:
        Path(args.junit).write_text(report.junit(problems, table))
    if problems:
        print(f"\n{len(problems)} regression(s):")
        for p in problems:
            print(f"  [{p.kind}] {p}")
        return 1
    print("\nno regression")
    return 0


def cmd_expect(args: argparse.Namespace) -> int:
    """The expected matrix of every run of a scenario, from the plugins' rules: no root, no lab."""
    from rich.console import Console
    from rich.table import Table

    from netsim.model import expect, scenario

    sc = scenario.load(args.scenario)
    found = expect.matrices(sc)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "run": m.label,
                        "cells": [{"a": a, "b": b, "expected": v} for (a, b), v in m.cells.items()],
                    }
                    for m in found
                ],
                indent=2,
            )
        )
        return 0
    console = Console(highlight=False)
    style = {"yes": "green", "direct": "green", "relayed": "yellow", "no": "red", "?": "dim"}
    for m in found:
        # B's names as column heads when they fit, else numbers with a legend under the table
        fits = max(map(len, m.a)) + sum(max(len(b), 7) + 3 for b in m.b) + 4 <= console.width
        heads = list(m.b) if fits else [str(i) for i in range(1, len(m.b) + 1)]
        title = f"{sc.name}: {m.label or 'race'} ({sc.mode}); rows A = callee, columns B = caller"
        table = Table(title=title)
        table.add_column("A \\ B")
        for head in heads:
            table.add_column(head, justify="center")
        for a in m.a:
            table.add_row(a, *(f"[{style.get(v, 'cyan')}]{v}[/]" for v in (m.cells[(a, b)] for b in m.b)))
        console.print(table)
        if not fits:
            console.print("B: " + ", ".join(f"{i} {b}" for i, b in enumerate(m.b, 1)))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    """A site's router as a script for a real Linux router: nftables, or the iptables closest."""
    from netsim.model import rules, scenario
    from netsim.model.nat import PROFILES

    if args.site in PROFILES:
        name, spec = args.site, scenario.SiteSpec(PROFILES[args.site])
    else:
        # FILE.toml, FILE.toml:SITE, or a shipped scenario's NAME:SITE
        where, _, name = args.site.rpartition(":") if ":" in args.site else (args.site, "", "")
        try:
            path = scenario.resolve(where)
        except UsageError:
            raise UsageError(
                f"{args.site!r} is no preset ({', '.join(PROFILES)}), nor a scenario file or a shipped"
                f" scenario ({', '.join(shipped())})"
            ) from None
        sites = scenario.load_sites(path)
        if not name and len(sites) != 1:
            raise UsageError(
                f"{where} has {len(sites)} sites: name one ({', '.join(f'{where}:{s}' for s in sites)})"
            )
        name = name or next(iter(sites))
        if name not in sites:
            raise UsageError(f"{where}: no site {name!r}; its sites: {', '.join(sites)}")
        spec = sites[name]
    cfg = rules.site_config(spec, args.wan, args.lan, args.public)
    made = rules.iptables(cfg) if args.iptables else rules.nft(cfg)
    sys.stdout.write(made.script)
    if spec.behind is not None:
        print(
            f"netsim rules: {name} sits behind a carrier NAT ({spec.behind.name}): this is the site's"
            " own router; the carrier is another one",
            file=sys.stderr,
        )
    if made.lost:
        print(
            f"netsim rules: iptables cannot express {len(made.lost)} thing(s) of {name}; see the"
            " '# lost:' lines",
            file=sys.stderr,
        )
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from netsim import report

    print(report.merge([Path(r) for r in args.runs], Path(args.out)).resolve())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsim", description="warpgate's NAT lab (run, verify and shell need root)"
    )
    parser.add_argument("--version", action="version", version=f"netsim (warpgate) {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "verify",
        help="classify NAT routers (presets, or the [sites] of a FILE.toml) with RFC 5780 tests;"
        " non-zero exit on any mismatch",
    )
    p.add_argument(
        "profiles",
        nargs="*",
        metavar="PROFILE|FILE.toml",
        help=f"presets (default: all: {', '.join(PROFILES)}), or files whose [sites.NAME] are replayed"
        " (warpgate nat --export writes one)",
    )
    p.add_argument("--no-hairpin", action="store_true", help="skip the hairpinning on/off check")
    p.add_argument(
        "--no-ipv6", action="store_true", help="skip the four IPv6 behaviours (open6, firewall6, ...)"
    )
    p.add_argument(
        "--lifetime",
        type=argtypes.whole(0),
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
    p = sub.add_parser("run", help="run a scenario: NAT matrix, trials, records, report")
    p.add_argument(
        "scenario", help=f"scenario file (TOML), or a shipped scenario's name ({', '.join(shipped())})"
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default: reports/<scenario>-<timestamp>)")
    p.add_argument("--trials", type=argtypes.whole(1), help="override the scenario's trials per cell")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out; finished trials are kept"
    )
    p.add_argument("--shard", default="1/1", metavar="K/N", help="run only the K-th of N slices of the cells")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--sabotage", metavar="PLUGIN", help=argparse.SUPPRESS)  # regression tests of compare
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "report", help="(re)write a run's tables, figures and reports; several runs: side by side in --out"
    )
    p.add_argument("run", metavar="DIR", nargs="+")
    p.add_argument("--out", metavar="DIR", help="where the side-by-side report of several runs goes")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("compare", help="per-cell differences; exit 1 when NEW regresses against BASE")
    p.add_argument("base", metavar="BASE")
    p.add_argument("new", metavar="NEW")
    defaults = Thresholds()
    p.add_argument(
        "--max-drop",
        type=argtypes.ratio(0.0, 1.0),
        default=defaults.max_drop,
        help="allowed drop below the base's 95%% Wilson interval per cell (0..1; default %(default)s)",
    )
    p.add_argument(
        "--max-slowdown",
        type=argtypes.ratio(1.0, 1e6),
        default=defaults.max_slowdown,
        help="allowed median time-to-connect ratio (default %(default)s)",
    )
    p.add_argument(
        "--min-ms",
        type=argtypes.ratio(0.0, 1e9),
        default=defaults.min_ms,
        help="ignore slowdowns smaller than this (ms; default %(default)s)",
    )
    p.add_argument(
        "--common",
        action="store_true",
        help="judge only the cells both runs have (a quick run against the full matrix's baseline)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")
    p.add_argument("--junit", metavar="FILE", help="also write it as JUnit XML (a test case per cell)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser(
        "expect", help="print what each cell should do, from the plugins' reach rules (no root, no lab)"
    )
    p.add_argument(
        "scenario", help=f"scenario file (TOML), or a shipped scenario's name ({', '.join(shipped())})"
    )
    p.add_argument("--json", action="store_true", help="one JSON document instead of the tables")
    p.set_defaults(func=cmd_expect)
    p = sub.add_parser(
        "rules",
        help="print a site's router as a shell script for a real Linux router (nftables, or --iptables)",
    )
    p.add_argument(
        "site",
        metavar="PROFILE|SCENARIO[:SITE]",
        help=f"a preset ({', '.join(PROFILES)}), or a site of a scenario's (or FILE.toml's) [sites]",
    )
    p.add_argument(
        "--iptables",
        action="store_true",
        help="the classic iptables recipe closest to it, with '# lost:' lines for what it cannot express",
    )
    p.add_argument(
        "--wan", default="eth0", metavar="IFACE", help="the router's internet side (default %(default)s)"
    )
    p.add_argument("--lan", default="eth1", metavar="IFACE", help="its LAN side (default %(default)s)")
    p.add_argument(
        "--public", default="203.0.113.1", metavar="IPV4", help="its WAN address (default %(default)s)"
    )
    p.set_defaults(func=cmd_rules)
    p = sub.add_parser("merge", help="join shards of one scenario into one run")
    p.add_argument("runs", nargs="+", metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("clean", help="remove lab leftovers carrying our naming prefix (wg*)")
    p.set_defaults(func=cmd_clean)
    return parser


LAB_EXTRA = ("pandas", "matplotlib", "pyarrow", "rich", "scapy")
"""What ``pip install 'warpgate[lab]'`` brings; every command but ``clean`` needs some of it."""


def missing_lab_parts(command: str) -> str | None:
    """What this command needs and the environment lacks, said so a user can fix it; or None."""
    if command in ("clean", "rules"):
        return None
    lacking = [name for name in LAB_EXTRA if importlib.util.find_spec(name) is None]
    if lacking:
        return f"the lab needs the 'lab' extra: pip install 'warpgate[lab]' (missing: {', '.join(lacking)})"
    if command in ("verify", "shell", "run") and importlib.util.find_spec("mininet") is None:
        return (
            "the lab needs Mininet's Python package: on Debian or Ubuntu, apt install mininet and make"
            " the venv with --system-site-packages (bash scripts/setup.sh does both)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    lacking = missing_lab_parts(args.command)
    if lacking is not None:
        print(f"netsim: {lacking}", file=sys.stderr)
        return 1
    try:
        with signals_tear_down():
            rc: int = args.func(args)
    except UsageError as exc:  # bad input
        print(f"netsim: {exc}", file=sys.stderr)
        return 2
    except NetsimError as exc:  # the lab, a daemon or a run failed
        print(f"netsim: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that cannot be read or written: said, not a traceback
        print(f"netsim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        # SIGINT, SIGTERM or SIGHUP: every lab on the way down was torn down; 128 + the signal
        signum = getattr(exc, "signum", signal.SIGINT)
        print(
            f"netsim: interrupted by {signal.Signals(signum).name} (the lab was torn down;"
            " --resume continues a run)",
            file=sys.stderr,
        )
        return 128 + signum
    return rc


if __name__ == "__main__":
    sys.exit(main())
