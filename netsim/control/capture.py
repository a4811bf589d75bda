"""Wire cost: tcpdump on a router's WAN link during a trial, read back with scapy.

Every packet on the WAN is put in one class, by port:

- ``signal``: MQTT to the brokers (1883), the signal channel that ``reverse`` uses;
- ``stun``: STUN Binding on the STUN/TURN ports (3478, 3479): discovery;
- ``relay``: TURN on those ports, told from STUN by its first bytes (RFC 7983): ChannelData
  (0x40-0x7F) or a STUN message of any method but Binding (RFC 8656 §18);
- ``names``: the nickname server (5300);
- ``attempts``: every other TCP/UDP packet but the winning flow's: the plugins' attempts;
- ``winner``: the winning pipe's packets: those on its 5-tuple endpoint, or, when the pipe is
  relayed, the ``relay`` packets to its relay.

The classes are disjoint: their sum is the caller's whole wire cost. ``path`` says where the
winning flow really went: ``direct`` when its far end is the peer's public address, ``relayed``
when it is a server of the lab's internet.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from netsim.control.lab import Lab
from netsim.errors import NetsimError
from netsim.model import topology as T

CLASSES = ("signal", "stun", "relay", "names", "attempts", "winner")
_PORTS = {1883: "signal", 3478: "stun", 3479: "stun", 5300: "names"}
BINDING = 0x0001


def stun_or_relay(payload: bytes) -> str:
    """``relay`` for TURN (ChannelData, or a STUN message whose method is not Binding), else
    ``stun``: the first two bytes decide (RFC 7983 §7, RFC 8489 §5)."""
    if not payload:
        return "stun"
    if 0x40 <= payload[0] <= 0x7F:
        return "relay"
    if len(payload) < 2 or payload[0] > 0x3F:
        return "stun"
    kind = (payload[0] << 8) | payload[1]
    method = (kind & 0x000F) | ((kind & 0x00E0) >> 1) | ((kind & 0x3E00) >> 2)
    return "stun" if method == BINDING else "relay"


class Capture:
    """tcpdump on one router's WAN interface, started from code and stopped by PID."""

    def __init__(self, lab: Lab, site: str, path: Path) -> None:
        router = lab.topology.router(site)
        wan = lab.plan.routers[router].wan
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # -Z root: tcpdump drops to user tcpdump by default, which may not write into the run directory;
        # --immediate-mode: without it packets wait in kernel ring blocks (about 1 s) and a short
        # trial's packets are lost when tcpdump stops
        self.proc = lab.popen(
            router,
            [
                "tcpdump",
                "-i",
                wan,
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                "256",
                "-Z",
                "root",
                "-w",
                str(path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "tcpdump: listening on wgr1-wan, link-type EN10MB ..."
        if "listening on" not in line:
            self.stop()
            raise NetsimError(f"tcpdump on {router} did not start: {line.strip()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # tcpdump flushes and closes the file on SIGINT
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def analyse(path: Path, winner: tuple[str, int] | None, peer_public: str) -> dict[str, Any]:
    """Packets and bytes per class in one capture; the path the winning flow took."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import rdpcap

    servers = {T.STUN_IP, T.STUN_IP2, *(ip for _, ip in T.BROKER_HOSTS)}
    relayed = winner is not None and winner[0] in servers
    counts = {c: {"packets": 0, "bytes": 0} for c in CLASSES}
    far_ends: set[str] = set()
    for pkt in rdpcap(str(path)):
        if IP not in pkt:
            continue
        ip = pkt[IP]
        l4 = ip[TCP] if TCP in ip else (ip[UDP] if UDP in ip else None)  # noqa: SIM401
        if l4 is None:
            continue
        size = int(ip.len)
        cls = _PORTS.get(int(l4.sport)) or _PORTS.get(int(l4.dport)) or "attempts"
        if cls == "stun":
            cls = stun_or_relay(bytes(l4.payload))
        on_winner = winner is not None and winner[0] in (ip.src, ip.dst)
        if relayed and cls == "relay" and on_winner:
            cls = "winner"
            far_ends.add(winner[0])  # type: ignore[index]
        elif (
            not relayed
            and cls == "attempts"
            and winner is not None
            and ((ip.src, int(l4.sport)) == winner or (ip.dst, int(l4.dport)) == winner)
        ):
            cls = "winner"
            far_ends.add(ip.dst if (ip.src, int(l4.sport)) == winner else ip.src)
            far_ends.add(winner[0])
        counts[cls]["packets"] += 1
        counts[cls]["bytes"] += size
    path_seen = None
    if counts["winner"]["packets"]:
        path_seen = "relayed" if far_ends & servers else "direct" if peer_public in far_ends else "other"
    return {"counts": counts, "path": path_seen}


def flatten(side: str, result: dict[str, Any]) -> dict[str, Any]:
    """Columns for the trial record: ``wire_<side>_<class>_packets`` / ``_bytes``, ``wire_<side>_path``."""
    out: dict[str, Any] = {f"wire_{side}_path": result["path"]}
    for cls, c in result["counts"].items():
        out[f"wire_{side}_{cls}_packets"] = c["packets"]
        out[f"wire_{side}_{cls}_bytes"] = c["bytes"]
    return out
