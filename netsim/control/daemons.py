"""Real infrastructure daemons (mosquitto, coturn, miniupnpd, the names server), run from code.

A ``DaemonSpec`` is plain data: argv, generated config files, and a regex on the daemon's own log
that means "ready". ``Daemon`` writes the configs into a work directory, starts the process
(optionally behind a prefix such as ``ip netns exec NS``), copies its output to a log file while
watching for the ready line, and raises ``DaemonError`` with the log tail if the process exits or
stays silent past its timeout. ``stop()`` terminates by PID, then kills after a grace period.
No readiness sleeps, no ``pkill``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from netsim.control import spawn
from netsim.errors import DaemonError
from warpgate.proto.envelope import MAX_SIZE


@dataclass(frozen=True)
class DaemonSpec:
    name: str
    argv: tuple[str, ...]
    """Command; ``{dir}`` is replaced by the daemon's work directory."""
    ready: str
    """Regex searched in each output line; the first match means the daemon serves."""
    configs: dict[str, str] = field(default_factory=dict)
    """File name -> contents, written into the work directory; ``{dir}`` is replaced there too."""
    timeout: float = 10.0
    stop_grace: float = 5.0


class Daemon:
    """One running daemon. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self,
        spec: DaemonSpec,
        workdir: str | os.PathLike[str],
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.env = env
        self.dir = Path(workdir)
        self.prefix = list(prefix)
        self.log_path = self.dir / f"{spec.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DaemonError(f"{self.spec.name} is not running")
        return self.proc.pid

    def argv(self) -> list[str]:
        return self.prefix + [a.replace("{dir}", str(self.dir)) for a in self.spec.argv]

    def start(self) -> Daemon:
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, text in self.spec.configs.items():
            (self.dir / name).write_text(text.replace("{dir}", str(self.dir)))
        exe = self.spec.argv[0]
        if shutil.which(exe) is None and not Path(exe).exists():
            raise DaemonError(f"{self.spec.name}: {exe} is not installed (bash scripts/setup.sh installs it)")
        # No start_new_session: ``mnexec -d`` forks when its caller already leads a session, and the
        # PID we hold would then be a parent that exited while the daemon runs on, detached.
        self.proc = spawn.popen(
            self.argv(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        self._eof = False
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.spec.name}", daemon=True)
        self._reader.start()
        ready = self._ready.wait(self.spec.timeout) and not self._eof
        if not ready or self.proc.poll() is not None:
            code = self.proc.poll()
            if self._eof and code is None:  # its output ended first; the exit follows at once
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self.proc.wait(self.spec.stop_grace)
            self.stop()
            why = f"exited with {code}" if code is not None else f"not ready within {self.spec.timeout:.0f} s"
            raise DaemonError(
                f"{self.spec.name} {why}: {' '.join(self.argv())}\n--- log tail ---\n{self.log_tail()}"
            )
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        pattern = re.compile(self.spec.ready)
        with open(self.log_path, "ab") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                if not self._ready.is_set() and pattern.search(line.decode("utf-8", "replace")):
                    self._ready.set()
        # EOF without the ready line: wake start(), which waits for the exit. The end of the output
        # can be seen before the exit is (poll() still None): that race once passed for "ready".
        if not self._ready.is_set():
            self._eof = True
        self._ready.set()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> int | None:
        """Terminate by PID (SIGTERM, then SIGKILL after the grace period); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.spec.stop_grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        code = self.proc.returncode
        # Closing the pipe while the reader thread still reads it would block on the file's lock;
        # the reader ends by itself at EOF, which only a process that inherited the pipe delays.
        if self.proc.stdout is not None and (self._reader is None or not self._reader.is_alive()):
            self.proc.stdout.close()
        return code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def mosquitto(host: str, port: int, *, size_limit: int | None = MAX_SIZE) -> DaemonSpec:
    """An MQTT broker for the signal channel (``size_limit`` None: a broker without one, as a
    user's may be, to test the node's own check)."""
    # set_tcp_nodelay: without it a second small write waits for the client's delayed ACK
    # (about 40 ms on Linux), and every signalling round trip pays for it.
    # message_size_limit: a publish larger than an envelope can be is dropped by the broker, so
    # no subscriber's client reads it whole before the signal channel's own size check
    conf = f"""listener {port} {host}
message_size_limit {size_limit or 0}
set_tcp_nodelay true
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
"""
    return DaemonSpec(
        name=f"mosquitto-{port}",
        argv=("mosquitto", "-c", f"{{dir}}/mosquitto-{port}.conf"),
        configs={f"mosquitto-{port}.conf": conf},
        ready=r"mosquitto version \S+ running",
    )


def coturn(
    ip: str,
    ip2: str,
    *,
    user: str = "wg",
    password: str = "wgpass",
    realm: str = "wg.test",
    secret: str | None = None,
    loopback_peers: bool = False,
    user_quota: int | None = None,
    cli_password: str | None = None,
    tls: tuple[str, str] | None = None,
    ipv6: tuple[str, ...] = (),
) -> DaemonSpec:
    """STUN on two addresses and two ports (RFC 5780 tests need OTHER-ADDRESS) plus TURN with
    long-term credentials: a static user, or with ``secret`` coturn's time-limited
    REST credentials (``use-auth-secret``). ``loopback_peers``: relay to 127.0.0.0/8 (tests).
    ``user_quota``: concurrent allocations per user (486 beyond). ``cli_password``: coturn's admin
    CLI on ``ip``:5766 (``coturn_allocations`` reads the allocations from it). ``tls``: (cert,
    key) PEM files for TURN over TLS on port 5349. ``ipv6``: more addresses to answer STUN on
    (the dual-stack lab's)."""
    auth = f"use-auth-secret\nstatic-auth-secret={secret}" if secret else f"user={user}:{password}"
    extra = "allow-loopback-peers\n" if loopback_peers else ""
    if user_quota is not None:
        extra += f"user-quota={user_quota}\n"
    extra += (
        f"cli-ip={ip}\ncli-port={CLI_PORT}\ncli-password={cli_password}\n" if cli_password else "no-cli\n"
    )
    if tls is not None:
        extra += f"tls-listening-port=5349\ncert={tls[0]}\npkey={tls[1]}\n"
    else:
        extra += "no-tls\n"
    more = "".join(f"listening-ip={a}\n" for a in ipv6)
    conf = f"""listening-ip={ip}
listening-ip={ip2}
{more}relay-ip={ip}
listening-port=3478
alt-listening-port=3479
min-port=49152
max-port=49652
realm={realm}
lt-cred-mech
{auth}
{extra}fingerprint
no-dtls
userdb={{dir}}/turndb.sqlite
pidfile={{dir}}/turnserver.pid
log-file=stdout
simple-log
"""
    return DaemonSpec(
        name="coturn",
        # coturn block-buffers stdout into a pipe: line buffering lets us see the ready line
        argv=("stdbuf", "-oL", "-eL", "turnserver", "-c", "{dir}/turnserver.conf", "--log-file=stdout"),
        configs={"turnserver.conf": conf},
        # after every relay thread, whose listeners it waits for: the first relay thread's line
        # came before the TCP listener was open (a connect was refused 1 start in 25)
        ready=r"Total General servers",
        timeout=15,
    )


CLI_PORT = 5766


async def coturn_allocations(ip: str, password: str, *, timeout: float = 2.0) -> list[int]:
    """Seconds left of each TURN session coturn holds now, from its admin CLI (``ps``). A deleted
    allocation (Refresh with lifetime 0) stays listed until coturn's next sweep, about a second,
    with at most 1 s left; a live one shows the rest of its lifetime. Our own daemon on a trusted
    address; still read with a size bound."""

    async def until_prompt(reader: asyncio.StreamReader) -> bytes:
        got = b""
        while not got.endswith((b"> ", b"password: \r\n")):
            chunk = await reader.read(4096)
            if not chunk or len(got) > 1 << 20:
                raise DaemonError(f"coturn CLI on {ip}: ended or said too much: {got[-200:]!r}")
            got += chunk
        return got

    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(ip, CLI_PORT)
        try:
            await until_prompt(reader)
            writer.write(password.encode() + b"\r\n")
            await until_prompt(reader)
            writer.write(b"ps\r\n")
            text = (await until_prompt(reader)).decode(errors="replace")
        finally:
            writer.close()
    total = re.search(r"Total sessions: (\d+)", text)
    left = [int(n) for n in re.findall(r"expiring in (-?\d+) secs", text)]
    if total is None or int(total.group(1)) != len(left):
        raise DaemonError(f"coturn CLI on {ip}: cannot read the sessions from {text[-300:]!r}")
    return left


def prober(python: str, ips: list[str], port: int = 7100) -> DaemonSpec:
    """netsim's own helper on the STUN host: TCP filtering and mapping-lifetime probes."""
    return DaemonSpec(
        name="prober",
        argv=(python, "-m", "netsim.hosts.probe", "serve", "--ips", *ips, "--port", str(port)),
        ready=r"prober ready",
    )


def names_server(python: str, host: str, port: int = 5300) -> DaemonSpec:
    """The warpgate nickname server (SQLite in the daemon's work directory)."""
    return DaemonSpec(
        name="names",
        argv=(
            python,
            "-m",
            "warpgate.cli",
            "names-server",
            "--host",
            host,
            "--port",
            str(port),
            "--db",
            "{dir}/names.sqlite",
        ),
        ready=r"listening on",
    )


def miniupnpd(
    wan: str,
    lan: str,
    lan_net: str,
    stun_ip: str,
    uuid_suffix: int,
    *,
    upnp: bool = True,
    natpmp: bool = True,
    ipv6: str | None = None,
) -> DaemonSpec:
    """UPnP IGD and/or NAT-PMP + PCP on a router; with ``ipv6`` (the router's LAN
    IPv6 address) also IPv6 pinholes, by PCP MAP and UPnP IGD v2 WANIPv6FirewallControl.

    miniupnpd 2.3.1 calls 203.0.113.0/24 "reserved" and refuses to forward unless a STUN check
    shows the router's WAN address is reachable: ``ext_perform_stun`` against the lab's coturn,
    whose answers the router's ruleset lets in (``RouterConfig.allow_stun_from``). PCP's lease
    floor is lowered to 2 s (default 120) so that tests see a short lease refreshed.
    """
    conf = f"""ext_ifname={wan}
listening_ip={lan}
http_port=5555
enable_natpmp={"yes" if natpmp else "no"}
enable_upnp={"yes" if upnp else "no"}
secure_mode=yes
system_uptime=yes
uuid=fa000000-0000-4000-8000-{uuid_suffix:012x}
lease_file={{dir}}/upnp.leases
ext_perform_stun=yes
ext_stun_host={stun_ip}
ext_stun_port=3478
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
min_lifetime=2
max_lifetime=86400
allow 1024-65535 {lan_net} 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""
    if ipv6 is not None:
        conf += f"ipv6_listening_ip={ipv6}\next_ifname6={wan}\n"
    return DaemonSpec(
        name="miniupnpd",
        # its own pid file: the default (/run/miniupnpd.pid) is shared by every namespace, and a
        # second router's miniupnpd would exit with "already running"
        argv=("miniupnpd", "-f", "{dir}/miniupnpd.conf", "-P", "{dir}/miniupnpd.pid", "-d"),
        configs={"miniupnpd.conf": conf},
        ready=r"Port forwarding is now enabled",
        timeout=15,
        # it sends SSDP byebyes for seconds on SIGTERM; its rules die with the router's namespace
        stop_grace=1.0,
    )
