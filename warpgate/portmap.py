"""Port mapping: ask the gateway for an inbound mapping of the node's port (Tailscale's portmapper
is the model), by PCP (RFC 6887), NAT-PMP (RFC 6886) and UPnP IGD (async-upnp-client) at once.
Over IPv6 the same ``PortMapper`` asks for a pinhole: a PCP MAP from the node's IPv6 address
opens the router's firewall for its port (RFC 6887 §11.1, "the internal address is the external
one"; no translation).

``PortMapper.probe`` asks all three, concurrently and without side effects, which one answers
(PCP ANNOUNCE, NAT-PMP external address, an SSDP search sent to the gateway itself); ``map`` then
maps the node's UDP and TCP port with the first that answered (falling back to the next if it
refuses), refreshes the lease at half its lifetime and deletes it at ``close``. Every answer is
hostile until it fits our request: a reply from an address that is not the gateway, for another
port or nonce, with an absurd lifetime, or an SSDP answer pointing away from the gateway is
dropped and counted in ``stats`` under a named reason; the exchange goes on waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

from warpgate.errors import RemoteProtocolError
from warpgate.proto import natpmp, pcp
from warpgate.proto.natpmp import Mapped, PortMapRefused, PortMapRejected, Proto
from warpgate.proto.timers import Backoff
from warpgate.retry import retransmit

log = logging.getLogger(__name__)

Protocol = Literal["pcp", "natpmp", "upnp"]
PROTOCOLS: tuple[Protocol, ...] = ("pcp", "natpmp", "upnp")
HostPort = tuple[str, int]
T = TypeVar("T")

DEADLINE = 0.25
"""Seconds a node's start waits for its gateway (no gateway: "not applicable" within it)."""
LEASE = 7200
"""Seconds asked for (RFC 6886 §3.3's recommendation); refreshed at half."""
EXCHANGE = Backoff(initial=0.05, cap=0.4, limit=2.0)
"""NAT-PMP/PCP retransmission: faster than RFC 6886 §3.1's 250 ms, since a start waits at most
``DEADLINE``; a gateway on the LAN answers in a millisecond."""
SSDP_PORT = 1900
IGD = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
IGD2 = "urn:schemas-upnp-org:device:InternetGatewayDevice:2"
UPNP_STAGGER = 0.02
"""Seconds UPnP's probe waits behind PCP's and NAT-PMP's (``PortMapper.first_offer``)."""
UPNP_MAX_BODY = 64 * 1024
"""Bytes of one UPnP description or SOAP answer read at most (miniupnpd's are ~4 KiB)."""
UPNP_SERVICES = ("WANIPConnection", "WANPPPConnection")
UPNP_FIREWALL = "WANIPv6FirewallControl"


class PortMapError(RemoteProtocolError):
    """The gateway did not grant a mapping; the message says which protocols said what."""


@dataclass(frozen=True, slots=True)
class Lease:
    """An inbound mapping the gateway granted: ``external_ip:udp`` and ``external_ip:tcp`` reach the
    node's port until ``expires`` (``time.monotonic()``), unless refreshed."""

    protocol: Protocol
    external_ip: str
    udp: int | None
    tcp: int | None
    lifetime: int
    expires: float


def default_gateway6(interfaces: Sequence[str] | None = None) -> tuple[str, str] | None:
    """``(interface, gateway IPv6)`` of the IPv6 default route (``/proc/net/ipv6_route``: the
    destination ``::/0`` with a next hop), restricted to ``interfaces`` when given."""
    try:
        with open("/proc/net/ipv6_route", encoding="ascii") as f:
            rows = [line.split() for line in f.read().splitlines()]
    except OSError:
        return None
    for row in rows:
        if len(row) < 10 or row[0] != "0" * 32 or row[1] != "00" or row[4] == "0" * 32:
            continue
        if interfaces is not None and row[9] not in interfaces:
            continue
        return row[9], str(ipaddress.IPv6Address(bytes.fromhex(row[4])))
    return None


def default_gateway(interfaces: Sequence[str] | None = None) -> tuple[str, str] | None:
    """``(interface, gateway IPv4)`` of the default route (``/proc/net/route``), restricted to
    ``interfaces`` when given; None when there is none (loopback-only, a lab without one)."""
    try:
        with open("/proc/net/route", encoding="ascii") as f:
            rows = [line.split() for line in f.read().splitlines()[1:]]
    except OSError:
        return None
    for row in rows:
        if len(row) < 4 or row[1] != "00000000" or not int(row[3], 16) & 0x2:  # RTF_GATEWAY
            continue
        if interfaces is not None and row[0] not in interfaces:
            continue
        gw = ipaddress.IPv4Address(int(row[2], 16).to_bytes(4, "little"))
        return row[0], str(gw)
    return None


class _Exchange(asyncio.DatagramProtocol):
    """One request to the gateway's port 5351 and the first answer that ``accept`` takes.

    Answers from anyone but the gateway, and answers ``accept`` rejects, are counted and dropped.
    """

    def __init__(self, gateway: HostPort, accept: Callable[[bytes], object], stats: Counter[str]) -> None:
        self.gateway = gateway
        self.accept = accept
        self.stats = stats
        self.answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if (addr[0], addr[1]) != self.gateway:
            self.stats["not_gateway"] += 1
            return
        if self.answer.done():
            self.stats["late_answer"] += 1
            return
        try:
            self.answer.set_result(self.accept(data[: pcp.MAX_MESSAGE + 1]))
        except PortMapRejected as exc:
            self.stats[exc.reason] += 1
            log.info("port mapping: answer from %s:%d dropped: %s", *self.gateway, exc)
        except PortMapRefused as exc:
            self.answer.set_exception(exc)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: nothing serves this protocol there; a definite no
        if not self.answer.done():
            self.answer.set_exception(PortMapError(f"{self.gateway[0]}:{self.gateway[1]}: {exc}"))


IP_RECVERR = 11  # <linux/in.h>; Python 3.11's socket module lacks the name
IPV6_RECVERR = 25  # <linux/in6.h>


async def _ask(
    local: str,
    gateway: HostPort,
    payload: bytes,
    accept: Callable[[bytes], T],
    stats: Counter[str],
    policy: Backoff,
) -> T:
    loop = asyncio.get_running_loop()
    transport, ex = await loop.create_datagram_endpoint(
        lambda: _Exchange(gateway, accept, stats), local_addr=(local, 0)
    )
    # unconnected (an answer from anyone else must be seen to be counted), yet the gateway's ICMP
    # "port unreachable" must end the probe at once: a router without the service says no in 1 ms
    with contextlib.suppress(OSError):
        if ":" in local:
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    try:
        await retransmit(policy, lambda: transport.sendto(payload, gateway), ex.answer)
        return ex.answer.result()  # type: ignore[return-value]
    finally:
        transport.close()


class PortMapper:
    """The node's mappings at its gateway. ``await probe()``, ``await map(port)``, ``await close()``.

    ``gateway`` and ``local`` are found from the routing table when not given; ``ports`` overrides
    the gateway's server ports (tests run a hostile gateway on loopback).
    """

    def __init__(
        self,
        local: str,
        gateway: str,
        *,
        protocols: Sequence[Protocol] = PROTOCOLS,
        lease: int = LEASE,
        exchange: Backoff = EXCHANGE,
        pmp_port: int = natpmp.PORT,
        ssdp_port: int = SSDP_PORT,
    ) -> None:
        self.local = local
        self.gateway = gateway
        self.ipv6 = ":" in local
        """A pinhole in an IPv6 firewall rather than a NAT mapping (PCP, or UPnP IGD v2's
        WANIPv6FirewallControl; NAT-PMP has no IPv6)."""
        self.what = "IPv6 pinhole" if self.ipv6 else "port mapping"
        self.protocols = tuple(p for p in protocols if p != "natpmp") if self.ipv6 else tuple(protocols)
        self._pinhole_ids: dict[str, int] = {}  # UPnP pinholes: transport -> UniqueID
        self.lease_time = lease
        self.exchange = exchange
        self.pmp = (gateway, pmp_port)
        self.ssdp = (gateway, ssdp_port)
        self.stats: Counter[str] = Counter()
        """Answers dropped (``not_gateway``, ``wrong_port``, ``wrong_nonce``, ``absurd_lifetime``,
        ``malformed``, ``location_not_gateway``, ...) and events (``refreshed``, ``refresh_failed``)."""
        self.offers: dict[Protocol, str] = {}
        """Protocols the gateway answered in ``probe`` -> what it said (external IP, or the IGD)."""
        self.lease: Lease | None = None
        self.took = 0.0
        """Seconds ``first_offer`` took from the first probe to the granted lease."""
        self._port = 0
        self._pcp_nonce = {p: os.urandom(12) for p in ("udp", "tcp")}
        self._upnp_location = ""  # the IGD's description URL, once an SSDP answer gave it
        self._upnp_control: Any = None  # the IGD's WAN*Connection service, once described
        self._refresher: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] | None = None
        """Called when a refresh returns another external address or port."""
        self.refreshed = asyncio.Event()
        """Set at every successful refresh (tests wait on it; never a sleep)."""

    # -- probing -----------------------------------------------------------------------------

    async def probe(self, deadline: float = DEADLINE) -> dict[Protocol, str]:
        """Ask every protocol at once whether the gateway speaks it; return those that answered
        within ``deadline`` seconds (``offers``)."""
        jobs = {p: asyncio.ensure_future(self._probe_one(p)) for p in self.protocols}
        await asyncio.wait(jobs.values(), timeout=deadline)
        for proto, job in jobs.items():
            if job.done() and job.exception() is None:
                self.offers[proto] = job.result()
            elif job.done():
                log.info("port mapping: %s: %s", proto, job.exception())
            else:
                job.cancel()
        await asyncio.gather(*jobs.values(), return_exceptions=True)
        return dict(self.offers)

    async def speaks(self, deadline: float = DEADLINE) -> bool:
        """Whether the gateway answers any mapping protocol within ``deadline`` seconds, asking all
        at once and mapping nothing; the first answer ends the wait (``offers`` holds it)."""
        jobs = {asyncio.ensure_future(self._probe_one(p)): p for p in self.protocols}
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        pending = set(jobs)
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=max(0.0, until - loop.time()), return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    return False
                for job in done:
                    if job.exception() is None:
                        self.offers[jobs[job]] = job.result()
                        return True
            return False
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    async def _probe_one(self, proto: Protocol) -> str:
        if proto == "natpmp":
            ip = await _ask(
                self.local,
                self.pmp,
                natpmp.external_request(),
                natpmp.decode_external,
                self.stats,
                self.exchange,
            )
            return str(ip)
        if proto == "pcp":
            client = ipaddress.ip_address(self.local)
            await _ask(
                self.local, self.pmp, pcp.announce(client), pcp.check_announce, self.stats, self.exchange
            )
            return "announce answered"
        return await self._upnp_find()

    async def first_offer(self, deadline: float = DEADLINE) -> Lease | None:
        """Probe every protocol and map with the first that answers (the next one if it then
        refuses); None when none answers within ``deadline`` seconds. Probes still running when a
        mapping is granted are cancelled: a start waits for one answer, not for all.

        UPnP's probe starts ``UPNP_STAGGER`` after PCP's and NAT-PMP's (at once when both have
        failed), happy-eyeballs style: miniupnpd answers an SSDP search only after ~50 ms and
        serves nothing else meanwhile (measured: a PCP mapping took 37 ms instead of 22 when an
        SSDP search arrived with it), while PCP and NAT-PMP answer in a millisecond or two."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        until = t0 + deadline
        jobs: dict[asyncio.Future[str], Protocol] = {}
        pending: set[asyncio.Future[str]] = set()

        def launch(protos: list[Protocol]) -> None:
            for p in protos:
                job = asyncio.ensure_future(self._probe_one(p))
                jobs[job] = p
                pending.add(job)

        later: list[Protocol] = [p for p in self.protocols if p == "upnp"]
        launch([p for p in self.protocols if p not in later])
        errors: list[str] = []
        try:
            while (pending or later) and loop.time() < until:
                if later and (not pending or loop.time() >= t0 + UPNP_STAGGER):
                    launch(later)
                    later = []
                wake = min(until, t0 + UPNP_STAGGER) if later else until
                done, _ = await asyncio.wait(
                    pending, timeout=max(0.0, wake - loop.time()), return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
                for job in sorted(done, key=lambda j: self.protocols.index(jobs[j])):
                    proto = jobs[job]
                    if job.exception() is not None:
                        errors.append(f"{proto}: {job.exception() or 'no answer'}")
                        continue
                    self.offers[proto] = job.result()
                    try:
                        lease = await self.map(proto)
                    except (PortMapError, PortMapRefused, TimeoutError) as exc:
                        errors.append(f"{proto}: {exc or 'no answer'}")
                        continue
                    self.took = loop.time() - t0
                    return lease
            log.info("%s: none granted (%s)", self.what, "; ".join(errors) or f"no answer in {deadline} s")
            return None
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    # -- mapping -----------------------------------------------------------------------------

    async def map_any(self, port: int | None = None) -> Lease:
        """Map ``port`` (UDP and TCP) with the protocols that answered the probe, in the order they
        are preferred (PCP, NAT-PMP, UPnP); the first that grants wins."""
        if port is not None:
            self._port = port
        errors = []
        for proto in self.protocols:
            if proto not in self.offers:
                continue
            try:
                return await self.map(proto)
            except (PortMapError, PortMapRefused, TimeoutError) as exc:
                errors.append(f"{proto}: {exc or 'no answer'}")
        raise PortMapError("; ".join(errors) or "the gateway offers no port-mapping protocol")

    def set_port(self, port: int) -> None:
        self._port = port

    async def map(self, proto: Protocol, lifetime: int | None = None) -> Lease:
        """Map the node's port over UDP and TCP with ``proto``; starts the refresher."""
        if not self._port:
            raise PortMapError("no port to map (set_port first)")
        lease = await self._map(proto, self.lease_time if lifetime is None else lifetime)
        self.lease = lease
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.ensure_future(self._refresh())
        return lease

    async def _map(self, proto: Protocol, lifetime: int) -> Lease:
        now = time.monotonic()
        if proto == "upnp":
            ext_ip, udp, tcp, granted = await self._upnp_map(lifetime)
        else:
            results: list[tuple[str, Mapped]] = list(
                await asyncio.gather(*(self._pmp_map(proto, p, lifetime) for p in ("udp", "tcp")))
            )
            ext_ip = results[0][0] or results[1][0]
            udp, tcp = results[0][1].external, results[1][1].external
            granted = min(m.lifetime for _, m in results)
        family = ipaddress.IPv6Address if self.ipv6 else ipaddress.IPv4Address
        try:
            family(ext_ip)
        except ValueError:
            self.stats["no_external_ip"] += 1
            raise PortMapError(
                f"{proto}: the gateway names no external {family.__name__[:4]} address ({ext_ip!r})"
            ) from None
        return Lease(proto, ext_ip, udp, tcp, granted, now + granted)

    async def _pmp_map(self, proto: Protocol, transport: Proto, lifetime: int) -> tuple[str, Mapped]:
        """One NAT-PMP or PCP MAP exchange for one transport; lifetime 0 deletes."""
        suggested = self.lease and (self.lease.udp if transport == "udp" else self.lease.tcp)
        if proto == "natpmp":
            nreq = natpmp.MapRequest(transport, self._port, suggested or self._port, lifetime)
            got = await _ask(
                self.local,
                self.pmp,
                nreq.encode(),
                lambda d: natpmp.check(nreq, d),
                self.stats,
                self.exchange,
            )
            return self.offers.get("natpmp", ""), got
        preq = pcp.MapRequest(
            transport,
            ipaddress.ip_address(self.local),
            self._port,
            self._pcp_nonce[transport],
            lifetime,
            suggested or self._port,
            # a pinhole: any IPv6 external address (§11.1); else any IPv4 one (IPv4-mapped zeros)
            ipaddress.IPv6Address(0) if self.ipv6 else pcp.ANY4,
        )
        pgot = await _ask(
            self.local, self.pmp, preq.encode(), lambda d: pcp.check(preq, d), self.stats, self.exchange
        )
        return str(pgot.external_ip), pgot.mapped

    async def _refresh(self) -> None:
        """Renew at half the lease (RFC 6886 §3.3); on failure retry at a quarter of what is left."""
        while self.lease is not None:
            lease = self.lease
            wait = lease.lifetime / 2
            while True:
                await asyncio.sleep(max(0.5, wait))  # a lease timer, not synchronisation
                try:
                    if self.ipv6 and lease.protocol == "pcp":
                        # miniupnpd 2.3.1 (nftables) forgets a pinhole's nonce when it renews it,
                        # then refuses to close it (PCP "not authorized", measured): a pinhole is
                        # renewed as a new one, so ``close`` can always remove it. Established
                        # flows pass the firewall meanwhile; only a new inbound one could miss
                        # the gap of one round trip to the router.
                        # best effort: a refused close must not stop the renewal
                        await asyncio.gather(
                            *(self._pmp_map(lease.protocol, p, 0) for p in ("udp", "tcp")),
                            return_exceptions=True,
                        )
                    self.lease = await self._map(lease.protocol, self.lease_time)
                    new = self.lease
                    if self.on_change is not None and (new.external_ip, new.udp, new.tcp) != (
                        lease.external_ip,
                        lease.udp,
                        lease.tcp,
                    ):
                        self.on_change()
                except (PortMapError, PortMapRefused, TimeoutError, OSError) as exc:
                    self.stats["refresh_failed"] += 1
                    log.warning("%s: %s refresh failed: %s", self.what, lease.protocol, exc or "no answer")
                    wait = max(0.5, (lease.expires - time.monotonic()) / 4)
                    continue
                self.stats["refreshed"] += 1
                log.info("%s: %s lease refreshed for %d s", self.what, lease.protocol, self.lease.lifetime)
                self.refreshed.set()
                break

    async def close(self, timeout: float = 1.0) -> None:
        """Delete the mapping (lifetime 0; UPnP DeletePortMapping); best effort within ``timeout``."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        lease, self.lease = self.lease, None
        if lease is None:
            return
        job: Awaitable[object]
        if lease.protocol == "upnp":
            job = self._upnp_delete(lease)
        else:
            job = asyncio.gather(*(self._pmp_map(lease.protocol, p, 0) for p in ("udp", "tcp")))
        try:
            await asyncio.wait_for(job, timeout)
        except (PortMapError, PortMapRefused, TimeoutError, OSError, RemoteProtocolError) as exc:
            log.warning("%s: %s lease not deleted: %s", self.what, lease.protocol, exc or "no answer")

    # -- UPnP IGD (async-upnp-client) ----------------------------------------------------------

    async def _upnp_find(self) -> str:
        """SSDP M-SEARCH sent to the gateway itself (UDA 1.1 §1.3.3, a unicast search): the IGD's
        description URL, which must be on the gateway. Its description is read when a mapping is
        asked for (``_upnp_service``): a probe costs one datagram each way."""
        self._upnp_location = await _ask(
            self.local,
            self.ssdp,
            ssdp_search(self.ssdp, IGD2 if self.ipv6 else IGD),
            self._location,
            self.stats,
            self.exchange,
        )
        return self._upnp_location

    async def _upnp_service(self) -> Any:
        """The IGD's WANIPConnection (or WANPPPConnection) service, from its description; for a
        pinhole its WANIPv6FirewallControl service (IGD v2)."""
        from async_upnp_client.client_factory import UpnpFactory
        from async_upnp_client.exceptions import UpnpError

        if self._upnp_control is not None:
            return self._upnp_control
        location = self._upnp_location or await self._upnp_find()
        try:
            device = await UpnpFactory(_BoundedRequester(), non_strict=True).async_create_device(location)
        except UpnpError as exc:
            raise PortMapError(f"UPnP description at {location[:80]}: {exc}") from None
        wanted = (UPNP_FIREWALL,) if self.ipv6 else UPNP_SERVICES
        for dev in (device, *device.all_devices):
            for service in dev.services.values():
                if any(f":{name}:" in service.service_type for name in wanted):
                    self._upnp_control = service
                    return service
        raise PortMapError(f"the IGD offers no {' or '.join(wanted)} service")

    def _location(self, data: bytes) -> str:
        location = ssdp_location(data)
        if urlparse(location).hostname != self.gateway:
            raise PortMapRejected("location_not_gateway", f"{location[:80]!r} is not on the gateway")
        return location

    async def _upnp_call(self, action: str, **args: Any) -> dict[str, Any]:
        from async_upnp_client.exceptions import UpnpError

        service = await self._upnp_service()
        try:
            return dict(await service.action(action).async_call(**args))
        except UpnpError as exc:
            raise PortMapError(f"UPnP {action}: {exc}") from None

    async def _upnp_pinholes(self, lifetime: int) -> tuple[str, int, int, int]:
        """IGD v2 WANIPv6FirewallControl: ``AddPinhole`` for any remote host and port (then
        ``UpdatePinhole`` by its UniqueID to renew), UDP and TCP."""
        lifetime = max(1, min(lifetime, 86400))  # the service's LeaseTime range
        for transport, number in (("udp", 17), ("tcp", 6)):
            uid = self._pinhole_ids.get(transport)
            if uid is not None:
                try:
                    await self._upnp_call("UpdatePinhole", UniqueID=uid, NewLeaseTime=lifetime)
                    continue
                except PortMapError:
                    self._pinhole_ids.pop(transport)  # expired or removed: open a new one
            got = await self._upnp_call(
                "AddPinhole",
                RemoteHost="",
                RemotePort=0,
                InternalClient=self.local,
                InternalPort=self._port,
                Protocol=number,
                LeaseTime=lifetime,
            )
            try:
                uid = int(got["UniqueID"])
            except (KeyError, TypeError, ValueError):
                uid = -1
            if not 0 <= uid <= 0xFFFF:  # the service's A_ARG_TYPE_UniqueID is a ui2
                self.stats["bad_unique_id"] += 1
                raise PortMapError(f"UPnP AddPinhole answered without a valid UniqueID: {got!r:.80}")
            self._pinhole_ids[transport] = uid
        return self.local, self._port, self._port, lifetime

    async def _upnp_map(self, lifetime: int) -> tuple[str, int, int, int]:
        if self.ipv6:
            return await self._upnp_pinholes(lifetime)
        ext = (await self._upnp_call("GetExternalIPAddress")).get("NewExternalIPAddress", "")
        ports = []
        for transport in ("UDP", "TCP"):
            old = self.lease and (self.lease.udp if transport == "UDP" else self.lease.tcp)
            for attempt in range(4):  # the node's port first; a random one when it is taken (718)
                external = old or self._port if attempt == 0 else random.randint(20000, 60000)
                try:
                    await self._upnp_call(
                        "AddPortMapping",
                        NewRemoteHost="",
                        NewExternalPort=external,
                        NewProtocol=transport,
                        NewInternalPort=self._port,
                        NewInternalClient=self.local,
                        NewEnabled=True,
                        NewPortMappingDescription=f"warpgate {self._port}",
                        NewLeaseDuration=lifetime,
                    )
                except PortMapError:
                    if attempt == 3:
                        raise
                    continue
                ports.append(external)
                break
        return str(ext), ports[0], ports[1], lifetime

    async def _upnp_delete(self, lease: Lease) -> None:
        if self.ipv6:
            for transport in ("udp", "tcp"):
                uid = self._pinhole_ids.pop(transport, None)
                if uid is not None:
                    await self._upnp_call("DeletePinhole", UniqueID=uid)
            return
        for transport, port in (("UDP", lease.udp), ("TCP", lease.tcp)):
            if port:
                await self._upnp_call(
                    "DeletePortMapping", NewRemoteHost="", NewExternalPort=port, NewProtocol=transport
                )


def ssdp_search(target: HostPort, device: str = IGD) -> bytes:
    """An SSDP M-SEARCH for an IGD (UDA 1.1 §1.3.2). Written here, not taken from
    async-upnp-client, whose import (aiohttp) costs a start ~0.2 s even without a UPnP gateway."""
    host = f"[{target[0]}]" if ":" in target[0] else target[0]
    return (
        f"M-SEARCH * HTTP/1.1\r\nHOST: {host}:{target[1]}\r\n"
        f'MAN: "ssdp:discover"\r\nMX: 1\r\nST: {device}\r\n\r\n'
    ).encode("ascii")


def ssdp_location(data: bytes) -> str:
    """The LOCATION header of an SSDP search answer (UDA 1.1 §1.3.3), from one datagram; a
    ``PortMapRejected`` for anything else."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise PortMapRejected("malformed", "an SSDP answer that is not ASCII") from None
    lines = text.split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200"):
        raise PortMapRejected("malformed", f"not an SSDP search answer: {lines[0][:40]!r}")
    for line in lines[1:64]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "location":
            location = value.strip()
            if not location.startswith("http://") or len(location) > 512:
                raise PortMapRejected("malformed", f"LOCATION {location[:80]!r} is not a short http URL")
            return location
    raise PortMapRejected("malformed", "an SSDP answer without LOCATION")


def _BoundedRequester() -> Any:
    """An async-upnp-client requester that bounds what it reads (built on first use: importing
    aiohttp costs a node that never meets a UPnP gateway ~0.1 s)."""
    from aiohttp import ClientError, ClientSession, ClientTimeout
    from async_upnp_client.client import UpnpRequester
    from async_upnp_client.const import HttpRequest, HttpResponse
    from async_upnp_client.exceptions import UpnpCommunicationError

    class BoundedRequester(UpnpRequester):
        """aiohttp, reading at most ``UPNP_MAX_BODY`` bytes of an answer (a hostile device's
        endless description is cut, counted by the caller as a failed probe)."""

        async def async_http_request(self, http_request: HttpRequest) -> HttpResponse:
            try:
                async with (
                    ClientSession(timeout=ClientTimeout(total=2.0)) as session,
                    session.request(
                        http_request.method,
                        http_request.url,
                        headers=http_request.headers,
                        data=http_request.body,
                    ) as response,
                ):
                    body = b""
                    while chunk := await response.content.read(UPNP_MAX_BODY + 1 - len(body)):
                        body += chunk
                        if len(body) > UPNP_MAX_BODY:
                            raise UpnpCommunicationError(f"answer larger than {UPNP_MAX_BODY} bytes")
                    text = body.decode("utf-8", "replace")
                    return HttpResponse(response.status, dict(response.headers), text)
            except (ClientError, TimeoutError) as exc:
                raise UpnpCommunicationError(repr(exc)) from exc

    return BoundedRequester()
