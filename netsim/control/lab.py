"""``Lab``: a topology built as Mininet hosts, configured by a checked plan, torn down exactly.

    with Lab(two_sites("full-cone", "symmetric")) as lab:
        a = lab.host("a")                    # the Mininet host of site a's first LAN host
        lab.run(a, ["ping", "-c1", "203.0.113.10"])

- Mininet builds hosts (network namespaces) and veth links only: ``switch=None``, no controller,
  no Open vSwitch, nothing in the root namespace; ``Mininet.inited = True`` keeps it from changing
  root-namespace sysctls.
- Every command of the plan runs through ``run()``, which checks the exit status and raises
  ``CommandError`` with the host, the argv and stderr (Mininet's own ``cmd()`` drops it).
- Daemons and processes started in the lab are tracked and stopped by PID before the hosts go;
  ``stop()`` runs in ``finally`` and leaves no namespace or process behind (``leftovers()`` checks).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from netsim.control import spawn
from netsim.control.daemons import Daemon, DaemonSpec
from netsim.errors import CommandError, NetsimError
from netsim.model.nat import Profile, forget
from netsim.model.nat import profile as nat_profile
from netsim.model.plan import Plan, Step, build_plan, router_steps
from netsim.model.topology import Topology

PYTHON = sys.executable
MARKER = "WG_LAB"
"""Environment variable set in every process the lab starts: ``leftovers()`` finds them by it."""
_tearing_down = 0
"""Labs stopping right now: a first signal then lets the teardown finish instead of cutting it."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: raised in the main thread and unwound like Ctrl-C, so every
    ``with Lab`` and ``finally`` on the way tears down what it built."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def tearing_down() -> bool:
    """Is a lab stopping right now (in this process)?"""
    return _tearing_down > 0


def mininet() -> Any:
    try:
        from mininet.log import setLogLevel
        from mininet.net import Mininet
    except ImportError as exc:  # pragma: no cover - setup.sh installs it
        raise NetsimError(
            "Mininet is not importable: run bash scripts/setup.sh (Debian's python3-mininet)"
        ) from exc
    setLogLevel("error")
    # Mininet.init() would raise root-namespace sysctls (rmem_max, neighbour gc, ...): we are root
    # already and want the root namespace untouched.
    Mininet.inited = True
    return Mininet


class Lab:
    def __init__(
        self, topology: Topology, *, workdir: str | os.PathLike[str] | None = None, impair: bool = True
    ) -> None:
        """``impair=False``: build the lab on a clean wire (relays forward without delay, no loss,
        no rate limit) until ``impair()``; the runner validates its routers in between."""
        self.topology = topology
        self.impair_at_start = impair
        self.impaired = False
        self.relays: list[Daemon] = []
        self.plan: Plan = build_plan(topology)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="wglab-"))
        self.net: Any = None
        self.daemons: list[Daemon] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.timings: dict[str, float] = {}
        self.env = {**os.environ, MARKER: str(os.getpid())}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Lab:
        if os.geteuid() != 0:
            raise NetsimError("the lab needs root (network namespaces)")
        t0 = time.perf_counter()
        try:
            net = self.net = mininet()(
                topo=None, build=False, controller=None, switch=None, autoSetMacs=False
            )
            for name in self.plan.hosts:
                net.addHost(name, ip=None)
            for link in self.plan.links:
                net.addLink(net[link.a], net[link.b], intfName1=link.a_intf, intfName2=link.b_intf)
            self.timings["hosts_links"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            self.execute(self.plan.steps)
            self.timings["configure"] = time.perf_counter() - t1
            for relay in self.plan.relays:
                imp = relay.impairment
                daemon = self.start_daemon(
                    relay.host,
                    DaemonSpec(
                        name="delay",
                        argv=(
                            PYTHON,
                            "-m",
                            "netsim.hosts.delay",
                            relay.a,
                            relay.b,
                            "--delay-ms",
                            str(imp.delay_ms),
                            "--jitter-ms",
                            str(imp.jitter_ms),
                            "--hold",
                        ),
                        ready=r"delay relay",
                    ),
                )
                self.relays.append(daemon)
            if self.impair_at_start:
                self.impair()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop processes and daemons by PID, then the Mininet hosts (their namespaces go with them)."""
        global _tearing_down
        _tearing_down += 1
        try:
            self._stop()
        finally:
            _tearing_down -= 1

    def _stop(self) -> None:
        t0 = time.perf_counter()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()
        for daemon in reversed(self.daemons):
            daemon.stop()
        self.daemons.clear()
        self.relays.clear()
        if self.net is not None:
            self.net.stop()
            self.net = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.timings["stop"] = time.perf_counter() - t0

    def impair(self) -> None:
        """Turn the topology's WAN impairments on: loss tables, rate limits, and the relays' delay
        (SIGUSR2 ends their hold; no frame is lost on the way). Applied once."""
        if self.impaired:
            return
        self.execute(self.plan.impairments)
        for relay in self.relays:
            os.kill(relay.pid, signal.SIGUSR2)
        self.impaired = True

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- hosts ----------------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        return self.net[name]

    def host(self, site: str, i: int = 0) -> Any:
        """The Mininet host of LAN host ``i`` of ``site``."""
        return self.net[self.topology.host(site, i)]

    def router(self, site: str) -> Any:
        return self.net[self.topology.router(site)]

    def prefix(self, host: Any | str) -> list[str]:
        """argv prefix that runs a command inside ``host``'s namespace."""
        node = self.net[host] if isinstance(host, str) else host
        return ["mnexec", "-da", str(node.pid)]

    # -- commands -------------------------------------------------------------------------------------

    def run(
        self,
        host: Any | str,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        name = host if isinstance(host, str) else host.name
        proc = spawn.run(self.prefix(host) + list(argv), input=input, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout, where=name)
        return proc

    def execute(self, steps: Sequence[Step]) -> None:
        """Run steps: phases in order, hosts in parallel within a phase, a host's steps in order."""
        for phase in sorted({s.phase for s in steps}):
            by_host: dict[str, list[Step]] = {}
            for s in steps:
                if s.phase == phase:
                    by_host.setdefault(s.host, []).append(s)

            def run_host(host_steps: list[Step]) -> None:
                for s in host_steps:
                    self.run(s.host, s.argv, input=s.stdin)

            with ThreadPoolExecutor(max_workers=8) as pool:
                for fut in [pool.submit(run_host, hs) for hs in by_host.values()]:
                    fut.result()  # re-raises the first CommandError

    def popen(self, host: Any | str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside ``host``; it is stopped by PID when the lab stops."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("env", self.env)
        proc = spawn.popen(self.prefix(host) + list(argv), **kwargs)
        self.procs.append(proc)
        return proc

    def start_daemon(self, host: Any | str, spec: DaemonSpec) -> Daemon:
        name = host if isinstance(host, str) else host.name
        daemon = Daemon(spec, self.workdir / name, prefix=self.prefix(host), env=self.env)
        self.daemons.append(daemon)
        daemon.start()
        return daemon

    def set_profile(self, site: str, profile: str | Profile) -> None:
        """Switch a NAT router to another translating profile in place (flushes conntrack too)."""
        from dataclasses import replace

        r = self.topology.router(site)
        old = self.plan.routers[r]
        if nat_profile(profile).translates != nat_profile(old.profile).translates:
            raise NetsimError(f"{site}: cannot switch between public-LAN and NAT profiles in place; rebuild")
        cfg = replace(old, profile=profile)
        loss = self.topology.site(site).wan.loss if self.impaired else 0.0
        self.execute(router_steps(r, cfg, loss))  # its "flush ruleset" removes the loss table too
        self.plan.routers[r] = cfg
        self.flush_conntrack(site)

    def stop_daemons(self, name: str) -> list[str]:
        """Stop every daemon whose name starts with ``name`` (a fault scenario), by PID."""
        stopped = []
        for daemon in [d for d in self.daemons if d.spec.name.startswith(name)]:
            daemon.stop()
            self.daemons.remove(daemon)
            stopped.append(f"{daemon.spec.name} (pid {daemon.pid})")
        return stopped

    def set_wan(self, site: str, *, up: bool) -> None:
        """Pull or plug a router's WAN cable (a link-flap fault): the far end of the link goes down,
        so the router sees carrier loss and keeps its addresses, routes and conntrack state (an
        administratively downed interface would lose its default route for good)."""
        host, intf = self.plan.uplinks[self.topology.router(site)]
        self.run(host, ["ip", "link", "set", intf, "up" if up else "down"])

    def flush_conntrack(self, site: str | None = None) -> None:
        """Forget every mapping on one router (or all): a trial starts from clean state."""
        routers = [self.topology.router(site)] if site else list(self.plan.routers)
        for r in routers:
            state = forget(self.plan.routers[r])
            if state:  # the NAT's learned maps first: no new flow may pick up a stale mapping
                self.run(r, ["nft", "-f", "-"], input=state)
            proc = self.run(r, ["conntrack", "-F"], check=False)
            # conntrack -F exits 1 with "0 flow entries" on an empty table on some versions
            if proc.returncode not in (0, 1):
                raise CommandError(["conntrack", "-F"], proc.returncode, proc.stderr, where=r)

    # -- addresses ------------------------------------------------------------------------------------

    def ip(self, site: str, i: int = 0) -> str:
        return self.topology.host_ip(site, i)


def leftovers() -> list[str]:
    """Processes of ours still alive: Mininet shells of ``wg*`` hosts, and anything started with the
    ``WG_LAB`` marker (daemons, agents, probes); plus ``wg*`` named namespaces."""
    found: list[str] = []
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if not cmdline or not cmdline[0]:
            continue  # a zombie: already dead, only its exit status is left
        if any(part.startswith(b"mininet:wg") for part in cmdline) or any(
            e.startswith(MARKER.encode() + b"=") for e in environ
        ):
            found.append(f"process {pid}: {b' '.join(cmdline).decode(errors='replace').strip()}")
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [f"netns {p.name}" for p in netns.iterdir() if p.name.startswith("wg")]
    found += [f"link {name}" for name in _root_links() if name.startswith("wg")]
    return found


def _root_links() -> list[str]:
    """Interface names in this (the root) namespace; no lab link may ever be among them."""
    return [p.name for p in Path("/sys/class/net").iterdir()]


def _netns_of(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _kill_and_wait(pids: list[str], deadline: float = 10.0) -> list[str]:
    """SIGKILL each process through a pidfd (no PID reuse can redirect it) and wait until each
    has died: a killed process in the middle of a netlink call takes a moment, and until it is
    gone it still holds its namespace. Returns one line per process killed."""
    fds: dict[int, str] = {}
    for pid in pids:
        try:
            fd = os.pidfd_open(int(pid))
        except ProcessLookupError:
            continue
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            os.close(fd)
            continue
        fds[fd] = f"killed process {pid}"
    lines = list(fds.values())
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    end = time.monotonic() + deadline
    try:
        while fds and (left := end - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):  # a pidfd reads as ready once its process died
                poller.unregister(fd)
                os.close(fd)
                del fds[fd]
    finally:
        for fd in fds:
            os.close(fd)
    lines += [f"process {line.split()[-1]} still dying after {deadline:.0f} s" for line in fds.values()]
    return lines


def clean() -> list[str]:
    """Remove leftovers carrying our prefix or marker only: Mininet shells of ``wg*`` hosts, marked
    processes and every process inside their namespaces (by PID), ``wg*`` named namespaces, and
    ``wg*`` links in this namespace. Returns what it removed."""
    removed: list[str] = []
    ours = [line.split()[1].rstrip(":") for line in leftovers() if line.startswith("process ")]
    root = _netns_of("self")
    namespaces = {ns for ns in (_netns_of(p) for p in ours) if ns and ns != root}
    victims = set(ours)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if _netns_of(pid) in namespaces:
            victims.add(pid)
    victims.discard(str(os.getpid()))
    removed += _kill_and_wait(sorted(victims, key=int))
    netns = Path("/run/netns")
    for ns in sorted(p.name for p in netns.iterdir()) if netns.is_dir() else []:
        if ns.startswith("wg"):
            subprocess.run(["ip", "netns", "del", ns], check=True)
            removed.append(f"deleted netns {ns}")
    for name in _root_links():
        if name.startswith("wg"):
            subprocess.run(["ip", "link", "del", name], check=True)
            removed.append(f"deleted link {name}")
    return removed
