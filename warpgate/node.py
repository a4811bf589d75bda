"""``Node``: an identity, listening sockets on one port, and the place pipes arrive."""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any

from warpgate import discovery, plugins, portmap
from warpgate.budget import InboxBudget
from warpgate.channels import UdpEndpoint, tcp_respond
from warpgate.errors import LocalProtocolError, WarpgateError
from warpgate.events import AttemptEvent
from warpgate.identity import Identity
from warpgate.interfaces import LocalInterface, list_interfaces
from warpgate.names import DEFAULT_TTL, NameClient
from warpgate.pipe import Pipe
from warpgate.plugins.base import Plugin, ResponderContext, When, encode_reply
from warpgate.portmap import Lease, PortMapError, PortMapper
from warpgate.proto import timers
from warpgate.proto.address import Address, Interface
from warpgate.proto.discovery import Discovery
from warpgate.proto.gater import Allow, Gater
from warpgate.proto.messages import Message
from warpgate.proto.names import NameServiceError, check_name
from warpgate.proto.nat import NatBehaviour
from warpgate.proto.natpmp import MAX_LIFETIME
from warpgate.proto.reflection import Reflection
from warpgate.proto.shares import Refused, make_room
from warpgate.resources import Resources
from warpgate.signal import SignalChannel, parse_broker
from warpgate.stun import parse_server
from warpgate.turn import TurnServer

log = logging.getLogger(__name__)

MAX_UNNOMINATED = 64
"""Incoming channels that may wait for the dialling side's nomination at once."""
MAX_HANDSHAKING = 256
"""Incoming TCP connections that may be in their handshake at once (each at most 5 s)."""
MAX_HANDSHAKING_PER_SOURCE = 64
"""Of those, from one source address."""
MAX_PIPES = 512
"""Pipes peers opened to us unasked (not a dial-back or punch we requested) that may live at once."""
MAX_PIPES_PER_PEER = 64
"""Of those, from one key: nominating is free, so without it one key held a node's every fd."""
MAX_UNNOMINATED_PER_PEER = 16
"""Of those, from one key. A punch towards a sequential NAT dials the STUN mapping and eight
predicted ports, and under address-dependent mapping each can complete its own channel in the
same round trip, one of which the caller nominates: refusing one could refuse the chosen one."""
NOMINATION_TIMEOUT = 30.0
"""Seconds an incoming channel may wait for nomination (a race lasts 10 s by default)."""

IPV6_GRACE = 0.1
"""Seconds discovery waits for the IPv6 path's confirmation after IPv4 discovery ended (at least
as long as IPv4's took)."""

PORTMAP_MODES = ("start", "demand", "off")
PORTMAP_RETRY = 30.0
"""Seconds before a gateway that granted no mapping is asked again."""

PipeCallback = Callable[[Pipe], object]
EventCallback = Callable[[AttemptEvent], object]


class Node:
    """A warpgate peer.

    ``async with Node(interfaces=["lo"]) as node:`` binds TCP and UDP on one port on every address
    of the chosen interfaces (default: all non-loopback ones) and address families.

    - ``node.address`` / ``node.addr_bytes`` / ``node.addr_text``: what peers need to reach it.
    - ``await node.accept()``: the next authenticated incoming pipe, whichever plugin made it;
      or pass ``on_pipe=`` to get each one in a callback (a coroutine function is run as a task).
    - ``node.add_listener(cb)``: every ``AttemptEvent`` of every race this node runs.
    - ``allow=``: the connection gate, keys or node ids (or a callable) that may reach the node at
      all (``warpgate.proto.gater``); the default lets anyone in.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        interfaces: Sequence[str] | None = None,
        families: Sequence[str] = ("ipv4", "ipv6"),
        identity: Identity | None = None,
        key_path: str | os.PathLike[str] | None = None,
        brokers: Sequence[str] = (),
        on_pipe: PipeCallback | None = None,
        queue_size: int = 1024,
        backlog: int = 64,
        nickname: str | None = None,
        names_server: str | None = None,
        names_ttl: int = DEFAULT_TTL,
        stun: Sequence[str] = (),
        discovery_timeout: float = discovery.DEFAULT_LIMIT,
        turn: Sequence[str] = (),
        relay_head_start: float = 1.0,
        keepalive: timers.Liveness | None = timers.LIVENESS,
        portmap: str = "start",
        portmap_deadline: float = portmap.DEADLINE,
        portmap_lease: int = portmap.LEASE,
        allow: Allow = None,
    ) -> None:
        if identity is not None and key_path is not None:
            raise LocalProtocolError("give identity or key_path, not both")
        self.identity = identity or (Identity.load_or_create(key_path) if key_path else Identity.generate())
        self.requested_port = port
        self.interface_names = None if interfaces is None else list(interfaces)
        self.families = tuple(families)
        self.brokers = tuple(brokers)
        self.queue_size = queue_size
        self.keepalive = keepalive
        """Pipes ping a silent peer and close when it stays silent (``timers.Liveness``; None: never)."""
        self.on_pipe = on_pipe
        self.port = 0
        self.local_interfaces: list[LocalInterface] = []
        self._servers: list[asyncio.Server] = []
        self._udp: list[UdpEndpoint] = []
        self._accepted: asyncio.Queue[Pipe] = asyncio.Queue(backlog)
        self._expected: dict[bytes, tuple[When, asyncio.Future[Pipe]]] = {}
        self._watchers: dict[bytes, list[Callable[[Pipe], None]]] = {}
        self._responders: dict[str, Plugin] = {}
        self.resources = Resources("node")
        """Released at stop (leases, allocations that plugins hand to the node)."""
        self._pipes: set[Pipe] = set()
        self._unnominated: dict[Pipe, None] = {}  # in arrival order
        self._handshaking: dict[asyncio.StreamWriter, str] = {}  # in their handshake: source, oldest first
        self._accepted_pipes: dict[Pipe, bytes] = {}  # unasked pipes we delivered: peer key, oldest first
        self.stats: Counter[str] = Counter()
        """Channels refused or closed by a bound: ``unnominated_peer_cap``, ``unnominated_evicted``,
        ``unnominated_timeout``, ``handshake_cap``, ``handshake_evicted``, ``pipes_per_owner``,
        ``pipes_full``, ``pipes_evicted``, ``accept_backlog_full``; and
        ``ipv6_translated``: an IPv6 STUN answer naming an address or port not ours (not advertised)."""
        self._tasks: set[asyncio.Task[object]] = set()
        self._listeners: list[EventCallback] = []
        self._address: Address | None = None
        self.signal: SignalChannel | None = None
        """The signal channel, when ``brokers`` were given (``mqtt://host:port``)."""
        if nickname is not None:
            check_name(nickname)
            if names_server is None:
                raise LocalProtocolError("a nickname needs a names_server (host:port)")
        self.stun_servers = [parse_server(x) for x in stun]
        """STUN servers (``host[:port]``): at start the node classifies its NAT against the first
        that answers (RFC 5780; a server with two addresses gives every axis)."""
        self.discovery_timeout = discovery_timeout
        self.turn_servers = [TurnServer.parse(url) for url in turn]
        """TURN servers (``turn://user:pass@host:port?transport=udp|tcp``, or coturn's REST form
        ``turn://name@host?secret=S``) for the ``turn`` plugin."""
        if relay_head_start < 0:
            raise LocalProtocolError("relay_head_start must be >= 0 seconds")
        self.relay_head_start = relay_head_start
        self.gater = Gater(allow)
        """The connection gate (``Node(allow=...)``, ``warpgate.proto.gater``): which keys may
        signal us, be dialled back or punched towards, or hold a pipe; None lets anyone in."""
        self.inbox_budget = InboxBudget()
        """The bytes all of this node's pipes may hold unread (``warpgate.budget``)."""
        self.reflection = Reflection()
        """What peers' requests may make this node send to unproven addresses
        (``warpgate.proto.reflection``); a host proves itself with an authenticated pipe."""
        """Seconds a relay waits while another racing plugin's rule says it connects directly
        (cut short when they all fail): a relayed pipe should not beat a direct one."""
        self.discovered: dict[str, Discovery] = {}
        """Local IPv4 -> what discovery found behind it (``warpgate.proto.discovery.Discovery``)."""
        self.public: dict[str, tuple[str, int]] = {}
        """Private IPv4 -> (public IPv4, public UDP port) of the listening socket, learned by STUN."""
        self.public6: dict[str, tuple[str, int]] = {}
        """Local IPv6 -> (address, UDP port) an IPv6 STUN server saw the listening socket at, when
        that is the socket's own: the IPv6 path works (a firewall's, not a blackhole, no NAT66)."""
        self.nickname = nickname
        self.names_ttl = names_ttl
        self.names: NameClient | None = NameClient(names_server) if names_server else None
        """Client of the names server: resolves nicknames given to ``auto_connect``."""
        for url in self.brokers:
            parse_broker(url)
        if portmap not in PORTMAP_MODES:
            raise LocalProtocolError(f"portmap is one of {', '.join(PORTMAP_MODES)}, not {portmap!r}")
        if not 1 <= portmap_lease <= MAX_LIFETIME:
            raise LocalProtocolError(f"portmap_lease must be 1..{MAX_LIFETIME} seconds, not {portmap_lease}")
        if portmap_deadline <= 0:
            raise LocalProtocolError("portmap_deadline must be > 0 seconds")
        self.portmap_mode = portmap
        """``start``: ask the gateway for a mapping at start (PCP, NAT-PMP, UPnP IGD at once) and
        advertise it; ``demand``: only when a peer asks (the ``portmap`` plugin); ``off``: never."""
        self.portmap_deadline = portmap_deadline
        self.portmap_lease = portmap_lease
        self.portmapper: PortMapper | None = None
        """The node's mapping client, when a default route leaves through one of its interfaces."""
        self.pinholer: PortMapper | None = None
        """The node's IPv6 pinhole client (PCP, UPnP IGD v2), when an IPv6 default route leaves through one of
        its interfaces; with ``portmap="start"`` it opens the firewall for the node's port at
        start, refreshes it and closes it at stop."""
        self._mapping_lock = asyncio.Lock()
        self._gateway_iface = ""
        self._unmapped_until = 0.0
        self.started = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Node:
        if self.started:
            return self
        self.local_interfaces = list_interfaces(self.interface_names, self.families)
        hosts = [str(a) for i in self.local_interfaces for a in (*i.ipv4, *i.ipv6)]
        for attempt in range(20):
            try:
                await self._bind_all(hosts, self.requested_port)
                break
            except OSError as exc:
                await self._close_sockets()
                # With port 0 the first bind picks a port that another address may already use.
                if self.requested_port or exc.errno != errno.EADDRINUSE or attempt == 19:
                    raise WarpgateError(
                        f"cannot bind port {self.requested_port or 'any'}: {exc.strerror}"
                    ) from exc
        self.started = True
        try:
            # STUN and the brokers are independent: ask both at once (each waits on timeouts when a
            # path is blocked).
            jobs = []
            self._find_gateway()
            if self.portmapper is not None and self.portmap_mode == "start":
                jobs.append(self._map_at_start())
            if self.portmapper is not None and self.portmap_mode == "demand":
                jobs.append(self._ask_gateway())
            if self.pinholer is not None and self.portmap_mode == "start":
                jobs.append(self._pinhole_at_start())
            if self.stun_servers:
                jobs.append(self._discover())
            if self.brokers:
                self.signal = SignalChannel(self.identity, lambda: self.address, self.brokers)
                self.signal.allow = self.gater.asker("signal", asyncio.get_running_loop().time)
                jobs.append(self.signal.start())
            await asyncio.gather(*jobs)
            self._install_responders()
            if self.nickname is not None:
                assert self.names is not None
                await self.names.register(self.identity, self.address, self.nickname, ttl=self.names_ttl)
                self.spawn(self._refresh_name())
        except BaseException:
            await self.stop()
            raise
        log.info("node %s listening on port %d (%s)", self.node_id[:8], self.port, ", ".join(hosts))
        return self

    async def _bind_all(self, hosts: list[str], port: int) -> None:
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            # SO_REUSEPORT: plugins bind outgoing TCP sockets to this port (STUN over TCP, punching).
            server = await asyncio.start_server(
                self._on_tcp, host, port, family=family, reuse_address=True, reuse_port=True, backlog=256
            )
            self._servers.append(server)
            port = port or server.sockets[0].getsockname()[1]
            ep = await UdpEndpoint.bind((host, port), self.identity, self._on_incoming, self.queue_size)
            ep.allow = self.gater.asker("handshake", asyncio.get_running_loop().time)
            self._udp.append(ep)
        self.port = port

    async def _discover(self) -> None:
        """Classify the NAT behind each IPv4 listening socket (RFC 5780), all at once, within the
        discovery deadline; the first STUN server that answers is used."""

        async def one(ep: UdpEndpoint) -> None:
            for server in self.stun_servers:
                if ":" in server[0]:
                    continue
                found = await discovery.discover(
                    server, sock=ep, local=ep.local, tcp_port=self.port, limit=self.discovery_timeout
                )
                if found.mapped_udp is not None or found.mapped_tcp is not None:
                    self.discovered[ep.local[0]] = found
                    if found.mapped_udp is not None:
                        self.public[ep.local[0]] = found.mapped_udp
                    return
                log.info("node %s: no answer from STUN server %s:%d", self.node_id[:8], *server)

        async def one6(ep: UdpEndpoint) -> None:
            # IPv6 has no NAT to classify (RFC 4787 is about NAT44); one binding tells whether the
            # path works at all, so a host whose IPv6 goes nowhere does not advertise it as public
            for server in servers6:
                try:
                    async with asyncio.timeout(self.discovery_timeout):
                        got = await discovery.udp_binding(ep, server)
                except (TimeoutError, discovery.StunError):
                    log.info("node %s: no IPv6 answer from STUN server [%s]:%d", self.node_id[:8], *server)
                    continue
                # only our own address and port: a NAT66 is not modelled, and a STUN server's word
                # must not make us advertise an address that is not ours (peers would punch it)
                if ipaddress.ip_address(got.mapped[0]) == ipaddress.ip_address(ep.local[0]) and (
                    got.mapped[1] == ep.local[1]
                ):
                    self.public6[ep.local[0]] = got.mapped
                else:
                    self.stats["ipv6_translated"] += 1
                    log.info(
                        "node %s: IPv6 seen as [%s]:%d, not ours: not advertised",
                        self.node_id[:8],
                        *got.mapped,
                    )
                return

        loopback = all(s[0].startswith("127.") or s[0] == "::1" for s in self.stun_servers)
        servers6 = [s for s in self.stun_servers if ":" in s[0]]
        jobs4 = [
            one(ep)
            for ep in self._udp
            if ":" not in ep.local[0] and ep.local[0].startswith("127.") == loopback
        ]
        jobs6 = [one6(ep) for ep in self._udp if ":" in ep.local[0] and (ep.local[0] == "::1") == loopback]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        v6 = asyncio.ensure_future(asyncio.gather(*jobs6))
        try:
            await asyncio.gather(*jobs4)
            if jobs4 and jobs6:
                # happy eyeballs for the start (RFC 8305's spirit): a working IPv6 path answers
                # about as fast as IPv4 did, so a broken one does not hold the start for the
                # whole discovery deadline (measured: 1.5 s on a blocked6 site without this)
                grace = max(IPV6_GRACE, loop.time() - t0)
                await asyncio.wait({v6}, timeout=grace)
                if not v6.done():
                    log.info(
                        "node %s: IPv6 path not confirmed within %.0f ms", self.node_id[:8], grace * 1000
                    )
            else:
                await v6
        finally:
            v6.cancel()
            await asyncio.gather(v6, return_exceptions=True)
        self._address = None

    def _find_gateway(self) -> None:
        if self.portmap_mode == "off":
            return
        self._find_gateway6()
        names = [i.name for i in self.local_interfaces]
        found = portmap.default_gateway(names)
        if found is None:
            return
        iface = next(i for i in self.local_interfaces if i.name == found[0])
        if not iface.ipv4:
            return
        self.portmapper = PortMapper(str(iface.ipv4[0]), found[1], lease=self.portmap_lease)
        self.portmapper.on_change = self._forget_address
        self._gateway_iface = iface.name
        self.portmapper.set_port(self.port)

    def _find_gateway6(self) -> None:
        found = portmap.default_gateway6([i.name for i in self.local_interfaces])
        if found is None:
            return
        iface = next(i for i in self.local_interfaces if i.name == found[0])
        if not iface.ipv6:
            return
        self.pinholer = PortMapper(str(iface.ipv6[0]), found[1], lease=self.portmap_lease)  # PCP, UPnP
        self.pinholer.set_port(self.port)

    async def _pinhole_at_start(self) -> None:
        assert self.pinholer is not None
        lease = await self.pinholer.first_offer(self.portmap_deadline)
        if lease is None:  # a start never fails for want of a pinhole
            log.info("node %s: no IPv6 pinhole from %s", self.node_id[:8], self.pinholer.gateway)
        else:
            log.info("node %s: IPv6 pinhole %s", self.node_id[:8], lease)

    def _forget_address(self) -> None:
        self._address = None

    async def _map_at_start(self) -> None:
        try:
            await self.map_port()
        except PortMapError as exc:  # a start never fails for want of a mapping
            log.info("node %s: no gateway mapping: %s", self.node_id[:8], exc)

    async def _ask_gateway(self) -> None:
        """``demand``: whether the gateway speaks a mapping protocol (nothing mapped), so that the
        address can tell a peer it may ask us to map (``Interface.maps``)."""
        assert self.portmapper is not None
        if await self.portmapper.speaks(self.portmap_deadline):
            self._address = None
        else:
            log.info(
                "node %s: the gateway %s answers no mapping protocol",
                self.node_id[:8],
                self.portmapper.gateway,
            )

    @property
    def maps_on_demand(self) -> bool:
        """The gateway answered a mapping protocol and has refused nothing, and no mapping is held:
        a peer may ask for one (the ``portmap`` plugin)."""
        mapper = self.portmapper
        return (
            mapper is not None
            and self.portmap_mode != "off"
            and bool(mapper.offers)
            and mapper.lease is None
            and self._unmapped_until == 0.0
        )

    async def map_port(self) -> Lease:
        """An inbound mapping of the node's port at its gateway (the one it holds, else a new one,
        asked within ``portmap_deadline``); advertised in ``address`` from then on, refreshed,
        deleted at stop. ``PortMapError`` when there is no gateway or none grants one."""
        mapper = self.portmapper
        if self.portmap_mode == "off":
            raise PortMapError("port mapping is off (--portmap off, Node(portmap='off'))")
        if mapper is None:
            raise PortMapError("no gateway: no default route leaves through the node's interfaces")
        async with self._mapping_lock:
            loop = asyncio.get_running_loop()
            if mapper.lease is None and loop.time() < self._unmapped_until:
                # a gateway that said no is not asked again for a while: peers' requests cannot
                # make us flood it
                raise PortMapError(f"the gateway {mapper.gateway} granted no mapping (asked lately)")
            if mapper.lease is None:
                if await mapper.first_offer(self.portmap_deadline) is None:
                    self._unmapped_until = loop.time() + PORTMAP_RETRY
                    self._address = None  # no longer "maps on demand"
                    raise PortMapError(f"the gateway {mapper.gateway} granted no mapping")
                self._address = None
                log.info("node %s: gateway mapping %s", self.node_id[:8], mapper.lease)
        assert mapper.lease is not None
        return mapper.lease

    @property
    def nat(self) -> Discovery | None:
        """What discovery found behind the first interface it could classify (None: not run)."""
        return next(iter(self.discovered.values()), None)

    def _install_responders(self) -> None:
        """One responding instance per plugin that answers signal messages (per-node state)."""
        if self.signal is None:
            return
        for name, cls in plugins.available().items():
            if not cls.messages:
                continue
            instance = self._responders[name] = cls()
            for mtype in cls.messages:
                self.signal.on(mtype.kind, functools.partial(self._respond, instance, mtype))

    async def _respond(
        self, plugin: Plugin, mtype: type[Message], sender: Address, body: dict[str, Any]
    ) -> dict[str, Any]:
        msg = mtype.from_body(body)  # MessageError: refused and counted by the signal channel
        conn_id = getattr(msg, "conn_id", b"")
        ctx = ResponderContext(self, sender, plugin.name, conn_id)
        try:
            return encode_reply(await plugin.respond(ctx, msg))
        finally:
            # What the response acquired (a lease, an allocation) lives until the node stops; moved
            # after respond, so a release registered during it is not lost. Empty stacks add nothing.
            ctx.resources.move_to(self.resources)

    async def _refresh_name(self) -> None:
        """Re-register well before the record expires (and whenever it may have changed)."""
        assert self.names is not None and self.nickname is not None
        while True:
            await asyncio.sleep(max(1.0, self.names_ttl / 3))  # a refresh period, not synchronisation
            try:
                await self.names.register(self.identity, self.address, self.nickname, ttl=self.names_ttl)
            except NameServiceError as exc:
                log.warning("node %s: nickname %r not refreshed: %s", self.node_id[:8], self.nickname, exc)
            except Exception as exc:  # a bug must not end the refreshes: the name would silently expire
                log.error(
                    "node %s: nickname %r refresh failed", self.node_id[:8], self.nickname, exc_info=exc
                )

    async def _close_sockets(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        for ep in self._udp:
            ep.close()
        self._servers.clear()
        self._udp.clear()

    async def stop(self) -> None:
        """Close every pipe, socket and task this node owns."""
        if self.signal is not None:
            await self.signal.stop()
            self.signal = None
        for plugin in self._responders.values():
            await plugin.stop()
        self._responders.clear()
        for server in self._servers:
            server.close()
        for pipe in list(self._pipes):
            await pipe.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in stuck:
                log.error(
                    "node %s: task %s ignores cancellation; left behind", self.node_id[:8], task.get_name()
                )
        await self.resources.aclose()
        self.resources = Resources("node")
        for mapper in (self.portmapper, self.pinholer):
            if mapper is not None:
                await mapper.close()
        self.portmapper = self.pinholer = None
        await self._close_sockets()
        for _, fut in list(self._expected.values()):
            fut.cancel()
        while not self._accepted.empty():
            await self._accepted.get_nowait().close()
        self.started = False

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- identity and address --------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    @property
    def address(self) -> Address:
        if not self.started:
            raise LocalProtocolError("the node has no address until it is started")
        if self._address is None:
            ifaces = tuple(self._interface(i) for i in self.local_interfaces[:8])
            self._address = Address(self.identity.public_key, self.port, self.port, ifaces, self.brokers[:4])
        return self._address

    def _interface(self, i: LocalInterface) -> Interface:
        private4 = i.ipv4[0] if i.ipv4 else None
        public4, public_udp = None, None
        found = self.discovered.get(str(private4)) if private4 else None
        mapped = self.public.get(str(private4)) if private4 else None
        if mapped is not None:
            if mapped[0] != str(private4):
                public4 = ipaddress.IPv4Address(mapped[0])
            if mapped[1] != self.port:
                public_udp = mapped[1]
        elif found is not None and found.mapped_tcp is not None and found.mapped_tcp[0] != str(private4):
            public4 = ipaddress.IPv4Address(found.mapped_tcp[0])  # UDP blocked: TCP still shows it
        public_tcp = None
        if found is not None and found.mapped_tcp is not None and found.tcp.endpoint_independent_mapping:
            # discovery's STUN over TCP from the listening port opened this mapping for everyone
            public_tcp = found.mapped_tcp[1] if found.mapped_tcp[1] != self.port else None
        lease = self.portmapper.lease if self.portmapper is not None else None
        granted = lease is not None and i.name == self._gateway_iface
        private6 = i.ipv6[0] if i.ipv6 else None
        seen6 = self.public6.get(str(private6)) if private6 is not None else None
        return Interface(
            private4=private4,
            public4=public4,
            private6=private6,
            public6=ipaddress.IPv6Address(seen6[0]) if seen6 is not None else None,
            public_udp_port=public_udp,
            public_tcp_port=public_tcp,
            nat=found.udp if found is not None else NatBehaviour(),
            mapped4=ipaddress.IPv4Address(lease.external_ip) if granted and lease else None,
            mapped_udp_port=lease.udp if granted and lease else None,
            mapped_tcp_port=lease.tcp if granted and lease else None,
            nat_tcp=found.tcp_view if found is not None and found.tcp_view != found.udp else None,
            maps=i.name == self._gateway_iface and not granted and self.maps_on_demand,
        )

    def set_address(self, address: Address) -> None:
        """Replace the advertised address (e.g. with public endpoints learned by STUN)."""
        if address.public_key != self.identity.public_key:
            raise LocalProtocolError("an address must carry this node's own key")
        self._address = address

    @property
    def addr_bytes(self) -> bytes:
        return self.address.to_bytes()

    @property
    def addr_text(self) -> str:
        return self.address.to_text()

    @property
    def udp_endpoints(self) -> list[UdpEndpoint]:
        return list(self._udp)

    # -- pipes -----------------------------------------------------------------------------------

    async def accept(self) -> Pipe:
        """Wait for the next authenticated pipe a peer chose to keep."""
        if self.on_pipe is not None:
            raise LocalProtocolError("this node delivers pipes to on_pipe; accept() would never return")
        return await self._accepted.get()

    def expect(self, conn_id: bytes, when: When = "nominated") -> asyncio.Future[Pipe]:
        """Route the incoming channel carrying ``conn_id`` to the returned future, not to accept().

        Used by plugins where the peer dials us on our request (reverse connect, punching).
        ``when="nominated"``: the future resolves with the channel the peer *nominates* (it dialled
        several and keeps one; it must call ``pipe.nominate()``). ``when="authenticated"``: with the
        first channel that completes the handshake (we pick, as the controlling side).
        """
        fut: asyncio.Future[Pipe] = asyncio.get_running_loop().create_future()
        self._expected[conn_id] = (when, fut)
        fut.add_done_callback(lambda _: self._expected.pop(conn_id, None))
        return fut

    def watch(self, conn_id: bytes, callback: Callable[[Pipe], None]) -> Callable[[], None]:
        """Call ``callback`` for every authenticated incoming channel carrying ``conn_id``."""
        self._watchers.setdefault(conn_id, []).append(callback)

        def stop() -> None:
            callbacks = self._watchers.get(conn_id, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._watchers.pop(conn_id, None)

        return stop

    def track(self, pipe: Pipe) -> None:
        """Own ``pipe``: it is closed when the node stops, or when its peer falls silent."""
        self._pipes.add(pipe)
        pipe._budget = self.inbox_budget
        self.reflection.prove(pipe.remote[0], asyncio.get_running_loop().time())
        if self.keepalive is not None:
            pipe.keep_alive(self.keepalive)
        previous = pipe.on_closed

        def closed(p: Pipe) -> None:
            self._pipes.discard(p)
            if previous is not None:
                previous(p)

        pipe.on_closed = closed

    def deliver(self, pipe: Pipe) -> None:
        """Hand a chosen pipe to the user (accept queue or on_pipe)."""
        if self.on_pipe is not None:
            result = self.on_pipe(pipe)
            if asyncio.iscoroutine(result):
                self.spawn(result)
            return
        try:
            self._accepted.put_nowait(pipe)
        except asyncio.QueueFull:
            self.stats["accept_backlog_full"] += 1
            log.warning("node %s: accept backlog full, closing %r", self.node_id[:8], pipe)
            self.spawn(pipe.close("the accept backlog is full"))

    def spawn(self, coro: Coroutine[object, object, object]) -> asyncio.Task[object]:
        """Run ``coro`` as a task the node owns: cancelled at stop, failures logged."""
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def adopt(self, task: asyncio.Task[Any]) -> None:
        """Own a task started elsewhere (a plugin that outlived its race): cancelled at stop."""
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("node %s: background task failed", self.node_id[:8], exc_info=task.exception())

    def incoming(self, pipe: Pipe, conn_id: bytes) -> None:
        """An authenticated channel a peer opened towards us (on any socket or relay)."""
        self._on_incoming(pipe, conn_id)

    def _on_incoming(self, pipe: Pipe, conn_id: bytes) -> None:
        self.track(pipe)
        if not self._wait_for_nomination(pipe):
            return
        for callback in list(self._watchers.get(conn_id, ())):
            callback(pipe)
        when, fut = self._expected.get(conn_id, ("nominated", None))
        if fut is not None and not fut.done():
            if when == "authenticated":
                fut.set_result(pipe)
                return

            # The peer dials us on our request, possibly over several endpoints at once; the one
            # it keeps is the one it nominates (its losers are closed and never resolve this).
            def chosen(p: Pipe) -> None:
                if not fut.done():
                    fut.set_result(p)

            pipe.on_nominated = chosen
            return
        # Reaches the user only once the dialling side nominates it (or sends data): the losers of
        # the peer's race are closed by the peer and never show up in accept().
        pipe.on_nominated = self._deliver_unasked

    def _deliver_unasked(self, pipe: Pipe) -> None:
        """A nominated pipe a peer opened unasked: held to ``MAX_PIPES_PER_PEER`` per key and
        ``MAX_PIPES`` in all, fairly (``make_room``: when full, the key holding the most loses
        its oldest); then delivered."""
        held = self._accepted_pipes
        try:
            victim = make_room(held.items(), pipe.peer_key, cap=MAX_PIPES, per_owner=MAX_PIPES_PER_PEER)
        except Refused as exc:
            self.stats[f"pipes_{exc.reason}"] += 1
            self.spawn(pipe.close(f"this node holds its share of pipes from this key ({exc.reason})"))
            return
        if victim is not None:
            del held[victim]
            self.stats["pipes_evicted"] += 1
            self.spawn(victim.close(f"evicted: the node holds {MAX_PIPES} pipes"))
        held[pipe] = pipe.peer_key
        previous = pipe.on_closed

        def closed(p: Pipe) -> None:
            held.pop(p, None)
            if previous is not None:
                previous(p)

        pipe.on_closed = closed
        self.deliver(pipe)

    def _wait_for_nomination(self, pipe: Pipe) -> bool:
        """An incoming channel lives until the dialling side nominates it, at most
        ``NOMINATION_TIMEOUT`` seconds (then closed, saying so). Every such channel holds a socket
        and an inbox, so a peer that opens channels and never picks one must not pile them up: one
        key may have ``MAX_UNNOMINATED_PER_PEER`` waiting (a new one beyond is refused), and when
        ``MAX_UNNOMINATED`` wait in all, the oldest is closed for the new one. A legitimate
        channel waits one round trip; a crowd of keys would have to open the whole table within
        that round trip to starve it."""
        waiting = self._unnominated
        if sum(1 for p in waiting if p.peer_key == pipe.peer_key) >= MAX_UNNOMINATED_PER_PEER:
            self.stats["unnominated_peer_cap"] += 1
            self.spawn(pipe.close(f"{MAX_UNNOMINATED_PER_PEER} channels of this peer already wait"))
            return False
        if len(waiting) >= MAX_UNNOMINATED:
            oldest = next(iter(waiting))
            del waiting[oldest]
            self.stats["unnominated_evicted"] += 1
            self.spawn(oldest.close(f"evicted: {MAX_UNNOMINATED} channels waited for nomination"))
        waiting[pipe] = None

        def expire() -> None:
            if pipe in waiting and not pipe.nominated and not pipe.chosen:
                self.stats["unnominated_timeout"] += 1
                self.spawn(pipe.close(f"not nominated within {NOMINATION_TIMEOUT:.0f} s"))

        handle = asyncio.get_running_loop().call_later(NOMINATION_TIMEOUT, expire)
        previous = pipe.on_closed

        def closed(p: Pipe) -> None:
            waiting.pop(p, None)
            handle.cancel()
            if previous is not None:
                previous(p)

        pipe.on_closed = closed
        pipe.on_settled = lambda p: waiting.pop(p, None)
        return True

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Connections still in their handshake (each bounded by HANDSHAKE_TIMEOUT) are capped too:
        # a peer that opens connections and never speaks holds a socket each until then. Fairly:
        # when all slots are held, a newcomer from another source takes the oldest of the source
        # holding the most (``make_room``), so idle connections cannot lock everyone else out.
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        try:
            victim = make_room(
                self._handshaking.items(), source, cap=MAX_HANDSHAKING, per_owner=MAX_HANDSHAKING_PER_SOURCE
            )
        except Refused:
            self.stats["handshake_cap"] += 1
            writer.close()
            return
        if victim is not None:
            del self._handshaking[victim]
            self.stats["handshake_evicted"] += 1
            victim.transport.abort()
        self._handshaking[writer] = source
        try:
            await tcp_respond(
                reader,
                writer,
                self.identity,
                self._on_incoming,
                self.queue_size,
                self.gater.asker("handshake", asyncio.get_running_loop().time),
            )
        finally:
            self._handshaking.pop(writer, None)

    # -- events ----------------------------------------------------------------------------------

    def add_listener(self, callback: EventCallback) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: EventCallback) -> None:
        self._listeners.remove(callback)

    def emit(self, event: AttemptEvent) -> None:
        for cb in list(self._listeners):
            cb(event)
