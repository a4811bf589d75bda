"""The scenario runner: scenario -> self-validated lab -> trials -> records (JSON lines) -> report.

One lab per run: a site per profile on each side (``a-<profile>``, ``b-<profile>``), so every cell
of the matrix is a pair of sites. Before any trial every router is classified (RFC 5780, UDP and
TCP) and a router that does not behave as labelled stops the run. Cells are scheduled in rounds
in which no router appears twice, and a round's cells run side by side.

A trial: flush conntrack on both routers, A's agent starts a fresh node and listens, B's agent
starts a fresh node, calls ``auto_connect`` (all plugins, or one in solo mode), sends the payload
and checks the echo. One ``trial`` record and one ``attempt`` record per plugin attempt are
appended to ``records.jsonl`` as they happen (flushed and fsynced), so a killed run loses no
finished trial and ``--resume`` skips exactly the trials already recorded.
"""

from __future__ import annotations

import json
import os
import platform
import random
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netsim.control import faults, services, verify
from netsim.control.capture import Capture, analyse, flatten
from netsim.control.lab import PYTHON, Lab, clean, leftovers
from netsim.errors import NetsimError, UsageError
from netsim.model import protocol, records
from netsim.model.expect import expected_direct, expected_outcome, theory_odds
from netsim.model.faults import BEFORE, MID_PIPE
from netsim.model.nat import as_table
from netsim.model.records import RECORDS, Key, Recorder
from netsim.model.scenario import Scenario, Variant
from netsim.model.topology import Topology

META = "meta.json"


def site_a(profile: str) -> str:
    return f"a-{profile}"


def site_b(profile: str) -> str:
    return f"b-{profile}"


def topology_for(scenario: Scenario) -> Topology:
    """A site per matrix entry and side (with its carrier, when it is behind one)."""
    sites = [s for p in scenario.a for s in scenario.site(p).sites(site_a(p), scenario.impairment)]
    sites += [s for p in scenario.b for s in scenario.site(p).sites(site_b(p), scenario.impairment)]
    return Topology(f"run-{scenario.name}", tuple(sites))


def rounds(cells: list[tuple[str, str]], seed: int) -> list[list[tuple[str, str]]]:
    """Group cells so that no A-profile and no B-profile repeats within a round (greedy)."""
    pending = list(cells)
    random.Random(seed).shuffle(pending)
    out: list[list[tuple[str, str]]] = []
    while pending:
        used_a: set[str] = set()
        used_b: set[str] = set()
        batch = []
        for cell in list(pending):
            if cell[0] not in used_a and cell[1] not in used_b:
                batch.append(cell)
                used_a.add(cell[0])
                used_b.add(cell[1])
                pending.remove(cell)
        out.append(batch)
    return out


def schedule_cells(
    cells: list[tuple[str, str]], work: Callable[[tuple[str, str]], None], *, workers: int
) -> None:
    """Run ``work(cell)`` for every cell, in order of preference, never two cells sharing a router
    (a conntrack flush on one would break the other) and without waiting for a whole round: a worker
    takes the first cell whose two routers are free. The first error stops the run (after the
    running cells finish) and is raised here."""
    pending = list(cells)
    busy: set[str] = set()
    errors: list[BaseException] = []
    cond = threading.Condition()

    def take() -> tuple[str, str] | None:
        with cond:
            while True:
                if errors or not pending:
                    return None
                for cell in pending:
                    if site_a(cell[0]) not in busy and site_b(cell[1]) not in busy:
                        pending.remove(cell)
                        busy.update((site_a(cell[0]), site_b(cell[1])))
                        return cell
                cond.wait()

    def worker() -> None:
        while (cell := take()) is not None:
            try:
                work(cell)
            except BaseException as exc:  # noqa: BLE001  (handed to the caller below, never dropped)
                with cond:
                    errors.append(exc)
            finally:
                with cond:
                    busy.difference_update((site_a(cell[0]), site_b(cell[1])))
                    cond.notify_all()

    threads = [threading.Thread(target=worker, name=f"cell-worker-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise NetsimError(f"a cell failed: {errors[0]}") from errors[0]


def workers_for(scenario: Scenario) -> int:
    """Cells run side by side: as many as the matrix allows, but at most four per CPU. Each trial
    starts two fresh nodes (keys, discovery, broker links); past that, on this 2-core machine, a
    27 x 27 matrix with 27 cells at once missed 1.5 s timeouts that idle machines meet (measured:
    the cube scenario's direct attempts between two full cones failed)."""
    auto = max(1, min(len(scenario.a), len(scenario.b), 4 * (os.cpu_count() or 1)))
    return min(auto, scenario.workers) if scenario.workers else auto


def shard_cells(cells: list[tuple[str, str]], shard: tuple[int, int]) -> list[tuple[str, str]]:
    k, n = shard
    if not 1 <= k <= n:
        raise UsageError(f"shard {k}/{n}: need 1 <= K <= N")
    return [c for i, c in enumerate(cells) if i % n == k - 1]


class AgentDied(NetsimError):
    """An agent exited, or stopped answering (then it is killed): its trial is recorded as an
    ``error`` and the runner starts a new agent in its place."""

    def __init__(self, site: str, message: str) -> None:
        super().__init__(message)
        self.site = site


class AgentProc:
    """One agent process in a lab host, driven over JSON lines."""

    def __init__(
        self,
        lab: Lab,
        site: str,
        infra: services.Infrastructure,
        sabotage: str | None = None,
        *,
        portmap: str = "start",
    ) -> None:
        host = lab.host(site)
        argv = [
            PYTHON,
            "-m",
            "netsim.hosts.agent",
            "--interface",
            f"{host.name}-eth0",
            "--stun",
            infra.stun[0],
            "--names",
            infra.names,
        ]
        for b in infra.brokers:
            argv += ["--broker", b]
        if infra.stun6 is not None and lab.topology.site(site).ipv6 is not None:
            argv += ["--stun", f"[{infra.stun6[0]}]"]  # confirms the host's IPv6 path at start
        argv += ["--turn", infra.turn, "--portmap", portmap]
        if sabotage:
            argv += ["--sabotage", sabotage]
        self.site = site
        self.log = open(lab.workdir / f"agent-{site}.log", "ab")  # noqa: SIM115  (closed in close())
        self.proc = lab.popen(host, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        try:
            ready = self.read(30)
        except AgentDied as exc:
            raise NetsimError(f"agent in {site} did not start: {exc}") from None
        if ready != protocol.READY:
            raise NetsimError(f"agent in {site} did not start: {ready}")

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not readable:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGUSR1)  # faulthandler: its stacks go to the agent's log
            raise AgentDied(
                self.site,
                f"agent in {self.site} did not answer within {timeout:.0f} s;"
                f" stacks in agent-{self.site}.log",
            )
        line = self.proc.stdout.readline()
        if not line:
            raise AgentDied(
                self.site, f"agent in {self.site} exited (code {self.proc.wait()}); see agent-{self.site}.log"
            )
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            raise AgentDied(
                self.site, f"agent in {self.site} wrote {line[:80]!r}, not a JSON answer"
            ) from None
        return answer

    def send(self, request: protocol.Request) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(protocol.encode(request))
            self.proc.stdin.flush()
        except OSError as exc:  # BrokenPipeError: it is gone
            raise AgentDied(
                self.site, f"agent in {self.site} is gone ({exc.strerror}); see agent-{self.site}.log"
            ) from None

    def call(self, request: protocol.Request, timeout: float = 60) -> dict[str, Any]:
        self.send(request)
        return self.read(timeout)

    def kill(self) -> None:
        """SIGKILL by PID (a fault scenario's crash, or an agent that stopped answering)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def close(self, *, graceful: bool = True) -> None:
        if not graceful:
            self.kill()
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(protocol.encode(protocol.Quit()))
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def run(
    scenario: Scenario,
    out: Path,
    *,
    trials: int | None = None,
    resume: bool = False,
    shard: tuple[int, int] = (1, 1),
    sabotage: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    started: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Run ``scenario`` into ``out``; returns ``out``. Raises ``NetsimError`` on a mislabelled router.

    ``started(stats)`` is called once the lab is up and validated, before the first trial."""
    if trials is not None:
        scenario = replace(scenario, trials=trials)
    out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(out / RECORDS)
    if recorder.path.exists() and not resume:
        raise UsageError(f"{out} already holds records: use --resume to continue it, or another --out")
    done = recorder.done_keys() if resume else set()
    if leftovers():
        # a run killed with SIGKILL cannot clean up after itself: remove what carries our marker
        clean()
    run_id = (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if not resume or not (out / META).exists()
        else json.loads((out / META).read_text())["run_id"]
    )
    cells = shard_cells(scenario.cells, shard)
    topo = topology_for(scenario)
    todo = [
        Key(a, b, t, v.label) for a, b in cells for t in range(scenario.trials) for v in scenario.variants()
    ]
    todo_left = [k for k in todo if k not in done]
    stats = {
        "cells": len(cells),
        "trials": len(todo),
        "done": len(todo) - len(todo_left),
        "ok": 0,
        "errors": 0,
        "agent_restarts": 0,
        "t0": time.time(),
    }
    # Impairments wait until the routers are validated: a lossy, delayed wire must not decide
    # whether a NAT is what its label says (self-validation measures the router, not the wire).
    with Lab(topo, workdir=out / "lab", impair=False) as lab:
        t_setup = time.perf_counter()
        infra = services.start(lab)
        checks = verify.check_sites(lab, infra, list(topo.sites))
        checks += verify.check_ipv6_sites(lab, infra, list(topo.sites))
        meta = {
            "run_id": run_id,
            "scenario": asdict(scenario)
            | {
                "impairment": asdict(scenario.impairment),
                "expect": {f"{a}/{b}": sorted(v) for (a, b), v in scenario.expect.items()},
                "fault": scenario.fault.as_dict() if scenario.fault else None,
                "sites": {
                    name: asdict(spec)
                    | {"nat": as_table(spec.nat), "behind": as_table(spec.behind) if spec.behind else None}
                    | {"seen": spec.seen.name}
                    for name, spec in scenario.sites.items()
                },
            },
            "seed": scenario.seed,
            "shard": list(shard),
            "workers": workers_for(scenario),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "versions": _versions(),
            "infrastructure": infra.as_dict(),
            "validation": verify.as_records(checks),
            "validated": "before impairments",
            "impairments": lab.plan.applied,
            "started": datetime.now(UTC).isoformat(),
            "setup_s": None,
        }
        bad = [c for c in checks if not c.ok]
        (out / META).write_text(json.dumps(meta, indent=2, default=str))
        if bad:
            raise NetsimError(
                "routers do not behave as labelled, refusing to run: "
                + "; ".join(f"{c.site} {c.what}: expected {c.expected}, measured {c.measured}" for c in bad)
            )
        lab.impair()
        fault = scenario.fault
        if fault is not None and fault.when == BEFORE:
            meta["fault_applied"] = faults.before_trials(lab, fault)

        def spawn(site: str) -> AgentProc:
            return AgentProc(lab, site, infra, sabotage, portmap=scenario.portmap)

        agents = {s.name: spawn(s.name) for s in topo.sites}
        meta["setup_s"] = round(time.perf_counter() - t_setup, 3)
        (out / META).write_text(json.dumps(meta, indent=2, default=str))
        if started is not None:
            started(stats)
        abort = threading.Event()
        try:
            schedule_cells(
                [c for batch in rounds(cells, scenario.seed) for c in batch],
                lambda cell: _run_cell(
                    scenario, lab, agents, spawn, recorder, run_id, cell, done, stats, progress, abort
                ),
                workers=workers_for(scenario),
            )
        except BaseException:
            # interrupted, or a cell failed: no cell starts another trial or restarts an agent, and
            # the agents stop at once (their trials are cut anyway)
            abort.set()
            for agent in agents.values():
                agent.close(graceful=False)
            raise
        else:
            for agent in agents.values():
                agent.close()
    meta["finished"] = datetime.now(UTC).isoformat()
    meta["agent_restarts"] = stats["agent_restarts"]
    (out / META).write_text(json.dumps(meta, indent=2, default=str))
    return out


def _run_cell(
    scenario: Scenario,
    lab: Lab,
    agents: dict[str, AgentProc],
    spawn: Callable[[str], AgentProc],
    recorder: Recorder,
    run_id: str,
    cell: tuple[str, str],
    done: set[Key],
    stats: dict[str, Any],
    progress: Callable[[dict[str, Any]], None] | None,
    abort: threading.Event,
) -> None:
    pa, pb = cell
    sa, sb = site_a(pa), site_b(pb)
    fault = scenario.fault
    for trial in range(scenario.trials):
        for variant in scenario.trial_variants(trial):
            plugins, label = variant.plugins, variant.label
            key = Key(pa, pb, trial, label)
            if key in done:
                continue
            if abort.is_set():
                return
            t0 = time.perf_counter()
            lab.flush_conntrack(sa)
            lab.flush_conntrack(sb)
            started = time.time()
            captures = []
            if scenario.capture:
                stem = lab.workdir.parent / "captures" / f"{pa}__{pb}__{trial}__{label.replace(',', '+')}"
                captures = [
                    Capture(lab, sa, stem.with_suffix(".a.pcap")),
                    Capture(lab, sb, stem.with_suffix(".b.pcap")),
                ]
            mid_pipe = fault is not None and fault.when == MID_PIPE and fault.hits(trial)
            listen: dict[str, Any] = {}
            try:
                listen = agents[sa].call(protocol.Listen(f"{pa}/{pb}#{trial}"))
                if not listen.get("ok"):
                    result = {**listen, "ok": False, "outcome": "error", "events": []}
                else:
                    result = _connect(scenario, lab, agents, cell, variant, listen["address"], mid_pipe)
                agents[sa].call(protocol.Reset())
            except AgentDied as exc:
                if abort.is_set():
                    raise  # the run is being torn down: this is no crash to record
                result = {
                    "ok": False,
                    "outcome": "error",
                    "error_class": "AgentDied",
                    "error": str(exc),
                    "events": [],
                }
                for site in (sa, sb):
                    if agents[site].proc.poll() is not None or site == exc.site:
                        agents[site].close(graceful=False)
                        agents[site] = spawn(site)
                        stats["agent_restarts"] += 1
            for cap in captures:
                cap.stop()
            total_ms = (time.perf_counter() - t0) * 1000
            wire: dict[str, Any] = {}
            if captures:
                # B dialled (or was dialled by) A's public endpoint: the winning flow's far end on B's WAN
                wire |= flatten("b", analyse(captures[1].path, _winner_remote(result), public_of(lab, sa)))
                wire |= flatten("a", analyse(captures[0].path, None, public_of(lab, sb)))
            outcome = result.get("outcome") or ("connected" if result["ok"] else "failed")
            after = result.get("after_fault")
            ctx = records.Context(run_id, scenario.name, scenario.seed, scenario.mode)
            trial_rec = records.trial(
                ctx,
                key,
                {
                    "plugins": ",".join(plugins or ()),
                    "options": json.dumps(variant.options, sort_keys=True),
                    "sweep_value": variant.value,
                    "odds": theory_odds(scenario, variant, cell),
                    "observe": scenario.observe,
                    "outcome": outcome,
                    "winner": result.get("winner"),
                    "ttc_ms": result.get("ms"),
                    "path": result.get("path"),
                    "transport": result.get("transport"),
                    "family": result.get("family"),
                    "bytes_echoed": result.get("bytes_echoed", 0),
                    "error_class": result.get("error_class", ""),
                    "error": result.get("error", ""),
                    "expected": expected_outcome(scenario, tuple(plugins or ()), cell, variant.options),
                    "expected_v4": expected_outcome(
                        scenario, tuple(plugins or ()), cell, variant.options, ipv6=False
                    ),
                    "expected_direct": expected_direct(scenario, tuple(plugins or ()), cell),
                    "fault": fault.what if fault is not None and (fault.when == BEFORE or mid_pipe) else None,
                    "survived": None if after is None else bool(after["ok"]),
                    "survives_expected": fault.survives.get(cell) if mid_pipe and fault is not None else None,
                    "after_fault_error": "" if after is None else after.get("error", ""),
                    # what the nodes measured themselves: the floors benchmarks compare against
                    "a_nat": listen.get("nat"),
                    "b_nat": result.get("nat"),
                    "a_start_ms": listen.get("start_ms"),
                    "b_start_ms": result.get("start_ms"),
                    "a_stun_rtt_ms": listen.get("stun_rtt_ms"),
                    "b_stun_rtt_ms": result.get("stun_rtt_ms"),
                    "a_portmap": listen.get("portmap"),
                    "a_pinhole": listen.get("pinhole"),
                    "b_pinhole": result.get("pinhole"),
                    "b_portmap": result.get("portmap"),
                    "a_portmap_ms": listen.get("portmap_ms"),
                    "b_portmap_ms": result.get("portmap_ms"),
                    "signal_rtt_ms": result.get("signal_rtt_ms"),
                    "started": started,
                    "overhead_ms": round(total_ms - (result.get("ms") or 0), 3) if result["ok"] else None,
                    "total_ms": round(total_ms, 3),
                    **wire,
                    "impairment": asdict(scenario.impairment),
                },
            )
            attempts = [records.attempt(ctx, key, ev) for ev in result["events"]]
            recorder.append([trial_rec, *attempts])
            stats["done"] += 1
            stats["ok"] += int(outcome == "connected")
            stats["errors"] += int(outcome == "error")
            if progress is not None:
                progress(stats)


def _connect(
    scenario: Scenario,
    lab: Lab,
    agents: dict[str, AgentProc],
    cell: tuple[str, str],
    variant: Variant,
    address: str,
    mid_pipe: bool,
) -> dict[str, Any]:
    """B connects to A; with a mid-pipe fault, the fault strikes between the two payload checks."""
    sa, sb = site_a(cell[0]), site_b(cell[1])
    limit = scenario.timeout * 2 + 30
    agents[sb].send(
        protocol.Connect(
            address,
            tuple(variant.plugins or ()),
            timeout=scenario.timeout,
            payload=scenario.payload,
            pause=mid_pipe,
            trial=f"{cell[0]}/{cell[1]}",
            observe=scenario.observe,
            options=variant.options,
        )
    )
    answer = agents[sb].read(limit)
    if answer == protocol.PAUSED:
        assert scenario.fault is not None
        faults.mid_pipe(lab, scenario.fault, {"a": agents[sa], "b": agents[sb]}, {"a": sa, "b": sb})
        agents[sb].send(protocol.Resume())
        answer = agents[sb].read(limit)
    return answer


def public_of(lab: Lab, site: str) -> str:
    """The address the internet sees for a site's host: its own on a public LAN, else the NAT's."""
    topo = lab.topology
    return topo.public_ip(site) if topo.site(site).nat.translates else topo.host_ip(site)


def _winner_remote(result: dict[str, Any]) -> tuple[str, int] | None:
    """The winning pipe's far end as B saw it (``proto://host:port``), for the wire counts."""
    for ev in result.get("events", []):
        if ev.get("won") and ev.get("remote"):
            host, port = ev["remote"].split("://", 1)[1].rsplit(":", 1)
            return host.strip("[]"), int(port)
    return None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("warpgate", "aiomqtt", "aioice", "cryptography", "pandas", "matplotlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    for tool, argv in (
        ("mosquitto", ["mosquitto", "-h"]),
        ("nft", ["nft", "--version"]),
        ("turnserver", ["turnserver", "--version"]),
    ):
        try:
            text = subprocess.run(argv, capture_output=True, text=True, timeout=5)
            out[tool] = (
                (text.stdout or text.stderr).strip().splitlines()[0][:80]
                if (text.stdout or text.stderr)
                else ""
            )
        except (OSError, subprocess.TimeoutExpired):
            out[tool] = "missing"
    out["engine_commit"] = engine_commit()
    return out


def engine_commit() -> str:
    """The git commit of the warpgate tree the lab ran (``+dirty`` with uncommitted changes), so a
    baseline says which engine it measured; ``unknown`` outside a git checkout."""
    import warpgate

    tree = Path(warpgate.__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
