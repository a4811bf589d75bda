"""Run the RFC 5780 classifier (``warpgate.proto.discovery``) over real sockets, within a deadline.

The node runs it at start through its own UDP socket and its own TCP port, so the mappings it
finds are the ones its pipes use; ``warpgate nat`` and the lab's verifier run the very same code
(``classify``). Probes that can run at once do; whatever is not decided by the deadline is
reported as unknown, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from warpgate.proto.discovery import Answer, Classifier, Discovery, Probe
from warpgate.stun import HostPort, StunError, StunSocket, reusable_tcp_socket, tcp_binding, udp_binding
from warpgate.udp import UdpSocket

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1.5
"""Seconds a node gives discovery at start; a silent or lying server costs no more than this."""

__all__ = [
    "DEFAULT_LIMIT",
    "Discovery",
    "StunError",
    "classify",
    "discover",
    "local_ip_towards",
    "udp_binding",
]


async def discover(
    server: HostPort,
    *,
    sock: StunSocket,
    local: HostPort,
    tcp_port: int | None,
    limit: float = DEFAULT_LIMIT,
    other: HostPort | None = None,
) -> Discovery:
    """Classify the NAT between ``local`` and ``server``; UDP socket 0 is ``sock`` (bound to ``local``).

    ``tcp_port``: the TCP port to test the TCP mapping from (the node's listening port, shared with
    SO_REUSEPORT), or None to skip TCP.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    clf = Classifier(server, tcp=tcp_port is not None, other=other)
    sockets: dict[int, StunSocket] = {0: sock}
    fresh: list[UdpSocket] = []
    kept: list[socket.socket] = []

    async def run(probe: Probe) -> Answer | None:
        try:
            if probe.proto == "tcp":
                assert tcp_port is not None
                got = await tcp_binding(
                    probe.dest,
                    local=(local[0], tcp_port),
                    timeout=max(0.05, deadline - loop.time()),
                    keep=kept,
                )
                return Answer(got.mapped, (local[0], tcp_port), got.other, got.rtt)
            s = sockets.get(probe.socket)
            if s is None:
                new = await UdpSocket.bind((local[0], 0))
                fresh.append(new)
                s = sockets[probe.socket] = new
            got = await udp_binding(s, probe.dest, change=probe.change, backoff=probe.backoff)
            here = local if probe.socket == 0 else s.local  # type: ignore[attr-defined]
            return Answer(got.mapped, here, got.other, got.rtt)
        except (StunError, OSError) as exc:
            log.debug("discovery: probe %s to %s:%d got no answer: %s", probe.id, *probe.dest, exc)
            return None

    tasks: dict[asyncio.Task[Answer | None], Probe] = {}
    abandoned: list[asyncio.Task[Answer | None]] = []
    try:
        while True:
            for probe in clf.next_probes():
                tasks[asyncio.ensure_future(run(probe))] = probe
            if not tasks:
                break
            done, _ = await asyncio.wait(
                tasks, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                break  # the deadline: report what is known
            for task in done:
                clf.handle(tasks.pop(task).id, task.result())
            for task in [t for t, probe in tasks.items() if not clf.wanted(probe.id)]:
                task.cancel()  # abandoned (UDP found blocked): its answer no longer matters
                abandoned.append(task)
                del tasks[task]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *abandoned, return_exceptions=True)
        for s in fresh:
            s.close()
        for k in kept:
            k.close()
    return clf.result()


def local_ip_towards(dest: str) -> str:
    """The local address the kernel would use to reach ``dest`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in dest else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((dest, 9))
        return str(s.getsockname()[0])


async def classify(
    server: HostPort, *, limit: float = 5.0, tcp: bool = True, other: HostPort | None = None
) -> Discovery:
    """Classify from fresh sockets (no node): what ``netsim verify`` runs inside each lab host.

    ``other``: the server's second address, when known beforehand (through a UDP-blocked path
    OTHER-ADDRESS cannot be learned over UDP)."""
    ip = local_ip_towards(server[0])
    sock = await UdpSocket.bind((ip, 0))
    holder = None
    try:
        tcp_port = None
        if tcp:
            holder = reusable_tcp_socket((ip, 0))  # reserves a port, as a node's listener would
            tcp_port = holder.getsockname()[1]
        return await discover(
            server, sock=sock, local=sock.local, tcp_port=tcp_port, limit=limit, other=other
        )
    finally:
        sock.close()
        if holder is not None:
            with contextlib.suppress(OSError):
                holder.close()
