"""The plugin contract: ``Plugin``, and the two contexts a plugin is given.

- ``AttemptContext``: the caller's side of one attempt (``Plugin.attempt``).
- ``ResponderContext``: the callee's side, for one signal message a peer sent (``Plugin.respond``).

A plugin uses what its context offers and nothing else: the node's sockets and NAT knowledge,
typed signal messages (``warpgate.proto.messages``), dialling with authentication, tasks and
resources with a lifecycle. It never reaches into ``Node``; only these contexts do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ClassVar, Literal, Protocol

from warpgate import channels, turn
from warpgate.channels import UdpEndpoint
from warpgate.errors import AttemptFailed, LocalProtocolError
from warpgate.identity import Identity
from warpgate.interfaces import LocalInterface
from warpgate.pipe import HostPort, Pipe
from warpgate.portmap import Lease, PortMapError
from warpgate.proto import frames, messages, timers
from warpgate.proto.address import Address, Endpoint
from warpgate.proto.discovery import Discovery
from warpgate.proto.gater import Gater
from warpgate.proto.messages import Message
from warpgate.proto.nat import Behaviours, Filtering, NatBehaviour
from warpgate.proto.reflection import Allowance, Reflection, Sweep, syn_cost
from warpgate.resources import Resources
from warpgate.signal import REQUEST_BYTES, SignalChannel
from warpgate.stun import StunError, reusable_tcp_socket, tcp_binding, udp_binding
from warpgate.turn import RelayEndpoint, TurnServer
from warpgate.udp import UdpSocket

log = logging.getLogger(__name__)

When = Literal["authenticated", "nominated"]


class Host(Protocol):
    """What the contexts need of the node (``warpgate.node.Node`` provides it)."""

    identity: Identity
    queue_size: int
    signal: SignalChannel | None
    resources: Resources
    stun_servers: list[HostPort]
    turn_servers: list[TurnServer]
    public6: dict[str, tuple[str, int]]
    relay_head_start: float
    local_interfaces: list[LocalInterface]
    reflection: Reflection
    gater: Gater

    @property
    def nat(self) -> Discovery | None: ...
    @property
    def address(self) -> Address: ...
    @property
    def udp_endpoints(self) -> list[UdpEndpoint]: ...
    def track(self, pipe: Pipe) -> None: ...
    def incoming(self, pipe: Pipe, conn_id: bytes) -> None: ...
    def deliver(self, pipe: Pipe) -> None: ...
    def expect(self, conn_id: bytes, when: When = "nominated") -> asyncio.Future[Pipe]: ...
    def watch(self, conn_id: bytes, callback: Callable[[Pipe], None]) -> Callable[[], None]: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
    async def map_port(self) -> Lease: ...


class Context:
    """What both sides share: the node's identity, sockets, NAT knowledge and signal channel."""

    def __init__(self, node: Host, peer: Address, plugin: str, conn_id: bytes) -> None:
        self._node = node
        self.peer = peer
        self.plugin = plugin
        self.conn_id = conn_id
        self.resources = Resources(f"{plugin} {conn_id.hex()[:8]}")
        """An attempt's are released when it ends; a response's are handed to the node when
        ``respond`` returns and released at node stop. See ``warpgate.resources``."""
        self.allowance: Allowance | None = None
        """A responder's: what the request may still make us send to unproven addresses
        (``warpgate.proto.reflection``); None for an attempt, whose sends the user asked for."""
        self.spent: Counter[str] = Counter()
        """What the attempt spent beyond its handshake: ``sockets`` opened, ``probes`` sent,
        ``chance_us`` waited on luck (``chance()``), reported in its ``AttemptEvent``."""

    # -- knowledge ---------------------------------------------------------------------------

    @property
    def nat(self) -> Discovery | None:
        """This node's NAT, as discovered at start (None without a STUN server)."""
        return self._node.nat

    @property
    def local_behaviour(self) -> NatBehaviour:
        nat = self._node.nat
        return nat.udp if nat is not None else NatBehaviour()

    @property
    def peer_behaviour(self) -> NatBehaviour:
        """The peer's UDP behaviour from its address (its first interface that states one)."""
        for iface in self.peer.interfaces:
            if iface.nat.mapping or iface.nat.filtering:
                return iface.nat
        return NatBehaviour()

    @property
    def peer_tcp_behaviour(self) -> NatBehaviour:
        """The peer's TCP behaviour: what its address states for TCP, else its UDP behaviour
        (unknown when its UDP is blocked)."""
        for iface in self.peer.interfaces:
            if iface.nat_tcp is not None:
                return iface.nat_tcp
        b = self.peer_behaviour
        return NatBehaviour() if b.filtering is Filtering.BLOCKED else b

    @property
    def address(self) -> Address:
        return self._node.address

    @property
    def own6(self) -> HostPort | None:
        """The node's IPv6 UDP endpoint, when an IPv6 STUN server answered it at start (the IPv6
        path works; no NAT66 changed it); None otherwise."""
        ep = self.udp_socket("ipv6")
        if ep is None:
            return None
        return self._node.public6.get(ep.local[0])

    @property
    def peer6(self) -> list[HostPort]:
        """The peer's IPv6 endpoints it confirmed the same way (``public6`` in its address)."""
        return [(str(i.public6), self.peer.udp_port) for i in self.peer.interfaces if i.public6 is not None]

    @property
    def peer_on_link(self) -> bool:
        """A private address of the peer is on one of our links (loopback included): no router,
        so no NAT, stands between us there."""
        ours = self._node.local_interfaces
        return any(
            ip is not None and any(i.on_link(ip) for i in ours)
            for iface in self.peer.interfaces
            for ip in (iface.private4, iface.private6)
        )

    @property
    def ipv6_path(self) -> bool:
        """Both sides have a working IPv6 path: no NAT between them, only firewalls."""
        return self.own6 is not None and bool(self.peer6)

    @property
    def signal_reason(self) -> str | None:
        """None when signal messages can be sent; otherwise why not."""
        if self._node.signal is None:
            return "no signal broker configured (--broker URL, Node(brokers=[...]))"
        return None

    # -- sockets -----------------------------------------------------------------------------

    def udp_socket(self, family: Literal["ipv4", "ipv6"] = "ipv4") -> UdpEndpoint | None:
        """The node's own UDP socket (shared with its listener): punched mappings are the pipe's."""
        for ep in self._node.udp_endpoints:
            if (":" in ep.local[0]) == (family == "ipv6"):
                return ep
        return None

    async def fresh_mapping(self) -> HostPort | None:
        """A new mapping's public endpoint, from a fresh socket to the node's STUN server.

        On a NAT with sequential allocation the node's next mapping gets the next port (plus
        ``delta``): this is the reference for port prediction (RFC 4787 §4.2.1).
        """
        ep = self.udp_socket()
        if ep is None or not self._node.stun_servers:
            return None
        sock = await UdpSocket.bind((ep.local[0], 0))
        try:
            got = await udp_binding(sock, self._node.stun_servers[0], backoff=timers.STUN)
        except StunError:
            return None
        finally:
            sock.close()
        return got.mapped

    def _auth(self) -> dict[str, Any]:
        return {
            "expected_key": self.peer.public_key,
            "conn_id": self.conn_id,
            "purpose": self.plugin,
            "queue_size": self._node.queue_size,
        }

    def _own(self, pipe: Pipe) -> Pipe:
        self._node.track(pipe)
        return pipe

    def gate(
        self, host: str, heard: Callable[[], bool] | None = None, cost: Callable[[int], int] | None = None
    ) -> channels.Gate | None:
        """What a peer's request makes us send towards ``host`` is bounded (3x the request, and a
        budget per destination: ``warpgate.proto.reflection``) until ``heard()`` says the path
        answered or the host has proved itself; ``cost`` turns a send's size into what it costs
        (a TCP connect: its SYN retransmissions). None for an attempt: the user asked for it."""
        allowance = self.allowance
        if allowance is None:
            return None
        reflection = self._node.reflection
        loop = asyncio.get_running_loop()

        def check(nbytes: int) -> bool:
            if heard is not None and heard():
                return True
            return reflection.spend(allowance, host, cost(nbytes) if cost else nbytes, loop.time())

        return check

    def _tcp_gate(self, host: str) -> channels.Gate | None:
        return self.gate(host, cost=lambda _syn: syn_cost(channels.GATED_CONNECT))

    async def dial(self, endpoint: Endpoint) -> Pipe:
        """Open and authenticate a channel to one endpoint of the peer, over its transport."""
        gate = self._tcp_gate(endpoint.host) if endpoint.proto == "tcp" else self.gate(endpoint.host)
        return self._own(await channels.dial(endpoint, self._node.identity, gate=gate, **self._auth()))

    async def connect_tcp(self, host: str, port: int, local_addr: HostPort | None = None) -> Pipe:
        return self._own(
            await channels.tcp_connect(
                host,
                port,
                self._node.identity,
                local_addr=local_addr,
                gate=self._tcp_gate(host),
                **self._auth(),
            )
        )

    async def connect_udp(self, host: str, port: int) -> Pipe:
        """Dial from a fresh UDP socket that the pipe then owns."""
        return self._own(
            await channels.udp_connect(host, port, self._node.identity, gate=self.gate(host), **self._auth())
        )

    async def dial_shared(
        self,
        peer: HostPort,
        backoff: timers.Backoff = timers.PUNCH,
        unclaimed: Callable[[Pipe], None] | None = None,
    ) -> Pipe:
        """Dial ``peer`` from the node's own UDP socket (hole punching); simultaneous open resolves.
        A channel that completes as the dial is cancelled goes, owned by the node, to
        ``unclaimed`` (``UdpEndpoint.connect``)."""
        ep = self.udp_socket("ipv6" if ":" in peer[0] else "ipv4")
        if ep is None:
            raise AttemptFailed("the node has no UDP socket of that family")
        auth = self._auth()
        auth.pop("queue_size")
        late = None if unclaimed is None else (lambda pipe: unclaimed(self._own(pipe)))
        gate = self.gate(peer[0], heard=lambda: ep.heard(peer))
        return self._own(await ep.connect(peer, backoff=backoff, unclaimed=late, gate=gate, **auth))

    @property
    def tcp_local(self) -> HostPort | None:
        """The node's IPv4 address and TCP port: where punched TCP connections leave from."""
        ep = self.udp_socket()
        return (ep.local[0], self._node.address.tcp_port) if ep is not None else None

    @property
    def tcp_local6(self) -> HostPort | None:
        """The node's IPv6 address and TCP port, when its IPv6 path works (``own6``)."""
        own = self.own6
        return (own[0], self._node.address.tcp_port) if own is not None else None

    async def fresh_tcp_mapping(self) -> HostPort | None:
        """A new TCP mapping's public endpoint: STUN over TCP from the node's port (SO_REUSEPORT).
        Under address-dependent mapping each new destination gets a new port, so on a sequential
        NAT this is the reference the next connection's port is predicted from (+ delta)."""
        local = self.tcp_local
        if local is None or not self._node.stun_servers:
            return None
        try:
            got = await tcp_binding(self._node.stun_servers[0], local=local)
        except StunError:
            return None
        return got.mapped

    async def dial_tcp_shared(self, peer: HostPort, until: float, retry: float = 0.05) -> Pipe:
        """Connect from the node's own TCP port to ``peer`` and authenticate (TCP simultaneous
        open, RFC 9293 §3.5: when both ends connect at once, both send HELLO and the key order
        decides who answers). A refused connect (a router that answers an early SYN with a
        reset) is tried again every ``retry`` seconds until loop time ``until``."""
        local = self.tcp_local6 if ":" in peer[0] else self.tcp_local
        if local is None:
            raise AttemptFailed(f"the node has no {'IPv6' if ':' in peer[0] else 'IPv4'} address")
        loop = asyncio.get_running_loop()
        reason = "no time left"
        # each connect's SYNs, retransmitted until it ends or ``until``, count against the bound
        gate = self.gate(peer[0], cost=lambda _syn: syn_cost(until - loop.time()))
        while loop.time() < until:
            if gate is not None and not gate(0):
                raise AttemptFailed(f"tcp {peer[0]}:{peer[1]}: {channels.NOT_SENT}")
            try:
                sock = reusable_tcp_socket(local)
            except OSError as exc:
                raise AttemptFailed(f"cannot bind {local[0]}:{local[1]}: {exc.strerror}") from None
            try:
                async with asyncio.timeout_at(until):
                    await loop.sock_connect(sock, peer)
            except TimeoutError:
                sock.close()
                raise AttemptFailed(f"tcp {peer[0]}:{peer[1]}: no SYN got through") from None
            except OSError as exc:
                sock.close()
                reason = f"tcp {peer[0]}:{peer[1]}: {exc.strerror or exc}"
                await asyncio.sleep(min(retry, max(0.0, until - loop.time())))  # a pacing timer
                continue
            except BaseException:
                sock.close()
                raise
            reader, writer = await asyncio.open_connection(sock=sock)
            return await self.authenticate_stream(reader, writer)
        raise AttemptFailed(reason)

    async def open_udp_sockets(
        self, count: int, peer: HostPort, gate: channels.Gate | None = None
    ) -> list[UdpEndpoint]:
        """``count`` fresh UDP sockets, each connected to ``peer`` and having sent it one PROBE
        frame, so that our NAT has mapped every one of them before this returns (random_probe's
        hard side). The caller closes them, or hands one to a pipe (``dial_from``)."""
        eps: list[UdpEndpoint] = []
        probe = frames.udp_frame(frames.Kind.PROBE, self.conn_id)
        local = ("::", 0) if ":" in peer[0] else ("0.0.0.0", 0)
        done = False
        try:
            for _ in range(count):
                ep = await UdpEndpoint.bind(
                    local, self._node.identity, None, self._node.queue_size, remote=peer
                )
                eps.append(ep)
                self.spent["sockets"] += 1
                if gate is None or gate(len(probe)):
                    ep.sendto(probe, peer)
                    self.spent["probes"] += 1
            done = True
        except OSError as exc:
            raise AttemptFailed(f"cannot open {count} UDP sockets: {exc.strerror}") from None
        finally:
            if not done:  # a failure, or a cancel between two binds: none of them is handed out
                for ep in eps:
                    ep.close()
        return eps

    async def dial_from(self, ep: UdpEndpoint, peer: HostPort, gate: channels.Gate | None = None) -> Pipe:
        """Dial ``peer`` from ``ep`` (from ``open_udp_sockets``); the pipe owns the socket. Sends
        ``gate`` refuses wait for the path to answer (``UdpEndpoint.heard``)."""
        auth = self._auth()
        auth.pop("queue_size")
        if gate is not None:
            gate = _or_heard(gate, ep, peer)
        return self._own(await channels.udp_dial_from(ep, peer, gate=gate, **auth))

    def sweep(self, host: str, packets: int) -> Sweep | None:
        """random_probe's budget towards ``host`` when a peer's request asks for a sweep: one a
        minute per target whoever asks (``Reflection.sweep``); None for an attempt."""
        if self.allowance is None:
            return None
        return self._node.reflection.sweep(host, packets, asyncio.get_running_loop().time())

    @contextlib.contextmanager
    def chance(self) -> Iterator[None]:
        """Time spent in the block counts as waiting on a chance (``AttemptEvent.chance_ms``),
        not as the attempt's own cost: random_probe's wait for a probe to hit."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            yield
        finally:
            self.spent["chance_us"] += round((loop.time() - t0) * 1e6)

    async def send_probes(
        self, host: str, ports: list[int], rate: float, gate: channels.Gate | None = None
    ) -> int:
        """random_probe's easy side: a PROBE frame carrying ``conn_id`` from the node's UDP socket
        to each ``host:port`` in turn, at most ``rate`` a second (paced in 10 ms slices); returns
        how many went out. Each opens our NAT's filter for that port of the peer."""
        ep = self.udp_socket("ipv6" if ":" in host else "ipv4")
        if ep is None:
            raise AttemptFailed("the node has no UDP socket of that family")
        probe = frames.udp_frame(frames.Kind.PROBE, self.conn_id)
        loop = asyncio.get_running_loop()
        t0, sent = loop.time(), 0
        while sent < len(ports):
            due = min(len(ports), int((loop.time() - t0) * rate) + 1)
            for port in ports[sent:due]:
                if gate is not None and not gate(len(probe)):
                    return sent  # the sweep's budget is spent
                ep.sendto(probe, (host, port))
                sent += 1
                self.spent["probes"] += 1
            await asyncio.sleep(0.01)  # a pacing timer (the rate), not synchronisation
        return sent

    def heard(self, peer: HostPort) -> bool:
        """Whether anything of a handshake arrived from ``peer`` on the node's UDP socket."""
        ep = self.udp_socket("ipv6" if ":" in peer[0] else "ipv4")
        return ep is not None and ep.heard(peer)

    # -- port mapping (PCP, NAT-PMP, UPnP IGD) -------------------------------------------------

    async def map_port(self) -> Lease:
        """The node's inbound mapping at its gateway (asked for now if it holds none); held until
        the node stops. ``AttemptFailed`` when there is no gateway or it grants none."""
        try:
            return await self._node.map_port()
        except PortMapError as exc:
            raise AttemptFailed(f"no gateway mapping: {exc}") from None

    # -- relays (RFC 8656) ---------------------------------------------------------------------

    @property
    def turn_servers(self) -> list[TurnServer]:
        """The node's TURN servers (``Node(turn=[...])``); their credentials never leave them."""
        return list(self._node.turn_servers)

    async def allocate_relay(self) -> RelayEndpoint:
        """A relayed address on the node's first TURN server: over UDP, or over TCP to the server
        when discovery found our UDP blocked. Released when this context's resources are, unless
        a pipe uses it then (its allocation is deleted when that pipe closes)."""
        servers = self.turn_servers
        if not servers:
            raise AttemptFailed("no TURN server configured (--turn URL, Node(turn=[...]))")
        server = servers[0]
        nat = self._node.nat
        # UDP blocked: discovery said so, or no STUN answer came over UDP while one came over TCP
        # (a node's discovery deadline may end before the verdict "blocked" is reached)
        udp_dead = self.local_behaviour.filtering is Filtering.BLOCKED or (
            nat is not None and nat.mapped_udp is None and nat.mapped_tcp is not None
        )
        if server.transport == "udp" and udp_dead:
            server = dataclasses.replace(server, transport="tcp")
        relay = await turn.allocate(server, self._node.identity, self._node.incoming, self._node.queue_size)
        relay.allow = self._node.gater.asker("handshake", asyncio.get_running_loop().time)
        self.resources.add(lambda: turn.release_unused(relay), "turn allocation")
        return relay

    async def dial_relayed(self, relay: RelayEndpoint, peer: HostPort) -> Pipe:
        """Dial ``peer`` (a relayed address) through our allocation; simultaneous open resolves.
        The relay forwards what we send to ``peer``: a request's dial is bounded like any other."""
        auth = self._auth()
        auth.pop("queue_size")
        gate = self.gate(peer[0], heard=lambda: relay.heard(peer))
        return self._own(await relay.connect(peer, backoff=timers.PUNCH, gate=gate, **auth))

    async def authenticate_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Pipe:
        """Authenticate a stream a plugin opened by its own means (a relay, a punched socket)."""
        return self._own(await channels.tcp_initiate(reader, writer, self._node.identity, **self._auth()))

    # -- lifecycle ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task owned by the node: it may outlive the attempt, and is cancelled at node stop."""
        return self._node.spawn(coro)

    def watch(self, callback: Callable[[Pipe], None]) -> Callable[[], None]:
        """Call ``callback`` with each authenticated incoming channel carrying this ``conn_id``.

        Returns the function that stops watching. The channel still takes its usual route.
        """
        return self._node.watch(self.conn_id, callback)


class AttemptContext(Context):
    """The caller's side of one attempt: the destination, a deadline, a fresh ``conn_id``.

    The ``conn_id`` is carried through the handshake, so a channel the peer opens towards us on our
    request lands in this attempt (``expect``), not in ``accept()``.
    """

    def __init__(
        self, node: Host, dest: Address, plugin: str, deadline: float, racing: tuple[str, ...] = ()
    ) -> None:
        super().__init__(node, dest, plugin, os.urandom(16))
        self.dest = dest
        self.deadline = deadline
        """Loop time (``asyncio.get_running_loop().time()``) by which the attempt must be done."""
        self.racing = racing
        """The names of every applicable plugin in this race (this one included)."""
        self.options: dict[str, Any] = {}
        """This plugin's options for this race (``auto_connect(options={name: {...}})``)."""
        self.joining: frozenset[str] | None = None
        """The racing plugins whose rules say they join this pair, worked out once per race
        (``likely`` asks the rules itself while it is None)."""

    @property
    def signal_reason(self) -> str | None:
        """None when a signal message may reach the peer; otherwise why not, known without trying
        (no broker of ours is up, and every broker the peer lists has been tried and is down)."""
        reason = super().signal_reason
        if reason is None and self._node.signal is not None:
            reason = self._node.signal.unreachable(self.dest)
        return reason

    @property
    def relay_head_start(self) -> float:
        """Seconds a relay waits behind plugins likely to connect directly (``Node(...)``)."""
        return self._node.relay_head_start

    def likely(self, plugin: str) -> bool:
        """Does ``plugin``'s own reach rule (``Plugin.reach``) say it joins us to this peer, from
        what we know: our NAT as measured at start, the peer's from its address?"""
        if self.joining is not None and plugin in self.racing:
            return plugin in self.joining
        from warpgate import plugins  # the registry imports this module

        cls = plugins.available().get(plugin)
        if cls is None:
            return False
        try:
            return cls.joins(self) is True
        except Exception:  # a plugin's broken rule: nobody waits for it
            log.exception("plugin %s: its reach rule raised", plugin)
            return False

    def ours_and_theirs(self) -> tuple[Behaviours, Behaviours]:
        """(ours, the peer's) behaviours as reach rules read them: our NAT as measured at start and
        our gateway's mapping; the peer's from its address."""
        nat = self._node.nat
        own = self._node.address
        ours = Behaviours(mapped=own.mapped, maps=own.maps)
        if nat is not None:  # TCP as far as it is known (what tcp_punch reads too)
            ours = dataclasses.replace(ours, udp=nat.udp, tcp=nat.tcp_view)
        theirs = Behaviours(
            self.peer_behaviour, self.peer_tcp_behaviour, mapped=self.peer.mapped, maps=self.peer.maps
        )
        return ours, theirs

    def waits_for(self, policy: RacePolicy) -> tuple[str, ...]:
        """The plugins ``policy`` yields to here: those of ``policy.behind`` that race (other
        than this one) and whose reach rule says they join us to this peer; and, when this
        plugin's own rule does not say so (a long shot), every racing plugin whose rule does."""
        others = [p for p in self.racing if p != self.plugin]
        long_shot = not self.likely(self.plugin)
        behind = others if policy.behind == "*" or long_shot else policy.behind
        return tuple(p for p in behind if p in others and self.likely(p))

    def head_start(self, policy: RacePolicy) -> float:
        """The longest ``policy`` lets this plugin wait here (the race starts it earlier once every
        plugin of ``waits_for`` has ended without a pipe): 0 with nobody to wait for; else its
        patience, ``handshake`` or ``relay``."""
        if not self.waits_for(policy):
            return 0.0
        if policy.patience == "relay":
            return self._node.relay_head_start
        nat = self._node.nat
        rtt = nat.rtt if nat is not None and nat.rtt is not None else 0.0
        return min(max(4 * rtt, HANDSHAKE_FLOOR), HANDSHAKE_CAP)

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def expect(self, when: When = "nominated") -> asyncio.Future[Pipe]:
        """The incoming channel of this attempt: once the peer nominates it (it dialled several and
        keeps one), or as soon as it is authenticated (we nominate, as the controlling side)."""
        return self._node.expect(self.conn_id, when)

    async def request(self, msg: Message, *, timeout: float | None = None) -> Message | None:
        """Send a typed request to the peer; returns its typed reply (None for a bare ack).

        ``AttemptFailed`` when the signal channel is down, the peer does not answer in time, or it
        refuses (its reason is given).
        """
        signal = self._node.signal
        if signal is None:
            raise AttemptFailed(self.signal_reason or "no signal channel")
        limit = min(timeout if timeout is not None else 5.0, max(0.05, self.remaining))
        reply = await signal.request(self.dest, msg.kind, msg.to_body(), timeout=limit)
        return decode_reply(reply)

    def notify_later(self, msg: Message) -> None:
        """Send ``msg`` in a task the node owns (a cancel at the end of an attempt); a signal
        channel that cannot carry it now is not the attempt's failure: logged at debug."""
        if self.signal_reason is not None:
            return

        async def send() -> None:
            try:
                await self.notify(msg)
            except AttemptFailed as exc:
                log.debug("%s: %s not sent: %s", self.plugin, msg.kind, exc)

        self.spawn(send())

    async def notify(self, msg: Message) -> None:
        """Fire and forget (signed, encrypted, sent through every broker)."""
        signal = self._node.signal
        if signal is None:
            raise AttemptFailed(self.signal_reason or "no signal channel")
        await signal.notify(self.dest, msg.kind, msg.to_body())


def _or_heard(gate: channels.Gate, ep: UdpEndpoint, peer: HostPort) -> channels.Gate:
    return lambda nbytes: ep.heard(peer) or gate(nbytes)


class ResponderContext(Context):
    """The callee's side: ``sender`` signed the message; dials go to its address only."""

    def __init__(self, node: Host, sender: Address, plugin: str, conn_id: bytes) -> None:
        super().__init__(node, sender, plugin, conn_id)
        self.sender = sender
        self.allowance = node.reflection.allowance(REQUEST_BYTES.get())

    @property
    def known(self) -> bool:
        """The sender is a peer we dialled, or one the node's gate lets in: it keeps capacity
        strangers cannot take (``Sessions``)."""
        return self._node.gater.known(self.sender.public_key, asyncio.get_running_loop().time())

    @contextlib.contextmanager
    def arrival(self) -> Iterator[asyncio.Future[Pipe]]:
        """While inside: a future set to the first authenticated channel the caller completes
        towards us for this ``conn_id`` (so the callee can stop dialling its own)."""
        reached: asyncio.Future[Pipe] = asyncio.get_running_loop().create_future()

        def arrived(pipe: Pipe) -> None:
            if not reached.done():
                reached.set_result(pipe)

        unwatch = self.watch(arrived)
        try:
            yield reached
        finally:
            unwatch()

    def offer(self, pipe: Pipe) -> None:
        """Hand ``pipe`` to the node: it reaches ``accept()`` once the caller nominates it."""
        if pipe.on_nominated != self._node.deliver:  # idempotent: a pipe reaches accept() once
            pipe.on_nominated = self._node.deliver


def encode_reply(reply: Message | None) -> dict[str, Any]:
    if reply is None:
        return {"ok": True}
    return {"reply": reply.kind, "body": reply.to_body()}


def decode_reply(reply: dict[str, Any]) -> Message | None:
    if "error" in reply:
        raise AttemptFailed(f"peer refused: {str(reply['error'])[:200]}")
    if "reply" not in reply:
        return None
    try:
        return messages.decode(str(reply["reply"]), reply.get("body"))
    except messages.MessageError as exc:
        raise AttemptFailed(f"peer sent a bad reply: {exc}") from None


HANDSHAKE_FLOOR = 0.05
"""Seconds: the least a cheaper plugin is given to finish its handshake before a plugin that yields
to it starts anyway. Four round trips on a LAN-fast path are a few ms, but the signed envelopes
and the handshake's signatures take their CPU time on both nodes (a 2-core machine: udp_punch alone
takes 5..30 ms at zero delay); a cheaper plugin that fails says so and ends the wait at once, so
this only bounds what a cheaper plugin that hangs can cost."""
HANDSHAKE_CAP = 0.1
"""Seconds: the most a plugin waits behind a cheaper one's handshake, however long the round trip."""


@dataclasses.dataclass(frozen=True, slots=True)
class RacePolicy:
    """When a plugin starts in a race (``Plugin.policy``): the whole race policy, as data.

    A plugin yields to the cheaper plugins in ``behind`` (``"*"``: every other one) that race and
    whose own reach rule (``Plugin.reach``) says they join this pair; a long shot, a plugin whose
    own rule does not say it joins the pair, yields to every racing plugin whose rule does (the
    relay included: a plugin that is expected to work goes first, whatever it costs). It starts
    at once when there are none; otherwise as soon as every one of them has ended without a pipe,
    and at the latest
    after its patience: ``handshake`` (four round trips to our STUN server, within
    ``HANDSHAKE_FLOOR``..``HANDSHAKE_CAP``) or ``relay`` (``Node(relay_head_start=...)``). A cheaper
    plugin whose rule lies therefore costs at most that patience. If a plugin it yields to wins
    while it waits, it never starts: no packet, no signal message, no socket, even when the race
    observes its losers (``auto_connect(observe=...)`` runs on only what had started).
    """

    behind: tuple[str, ...] | Literal["*"] = ()
    patience: Literal["handshake", "relay"] = "handshake"


class Plugin(ABC):
    """One traversal strategy. Subclass, set ``name``, implement ``attempt``, decorate ``@register``.

    A plugin that needs the peer's help lists the message types it answers in ``messages`` and
    implements ``respond``; the node creates one instance per node for that side (so per-node
    state lives on ``self``) and calls ``respond`` for each valid message from a peer.
    """

    name: ClassVar[str]
    messages: ClassVar[tuple[type[Message], ...]] = ()
    families: ClassVar[tuple[str, ...]] = ("ipv4",)
    """The address families the plugin connects over. With ``ipv6`` the lab's theory applies
    ``reach`` to the sites' IPv6 side as well (a firewall: a NAT that does not translate)."""

    def applicable(self, ctx: AttemptContext) -> str | None:
        """None if the plugin can try; otherwise the reason it cannot (reported as not_applicable)."""
        return None

    policy: ClassVar[RacePolicy] = RacePolicy()
    """Which cheaper plugins this one yields to in a race, and how long at most (``RacePolicy``)."""

    def head_start(self, ctx: AttemptContext) -> float:
        """Seconds at most to wait before ``attempt`` starts, to let a cheaper plugin win first
        (from ``policy``; override only for a wait no policy expresses).

        A plugin cancelled during its wait has spent nothing: no packet, no signal message.
        """
        return ctx.head_start(self.policy)

    @abstractmethod
    async def attempt(self, ctx: AttemptContext) -> Pipe:
        """Open and authenticate a channel to ``ctx.dest``; raise ``AttemptFailed`` if you cannot."""

    async def respond(self, ctx: ResponderContext, msg: Message) -> Message | None:
        """Answer one of ``messages`` from a peer; the returned message is the reply (None: ack)."""
        raise LocalProtocolError(f"plugin {self.name!r} lists messages but does not respond to them")

    @classmethod
    def joins(cls, ctx: AttemptContext) -> bool:
        """Does this plugin join us to ``ctx``'s peer, as far as we know before trying? Its
        ``reach`` rule over our measured NAT and the peer's address (what ``RacePolicy`` yields to)."""
        ours, theirs = ctx.ours_and_theirs()
        return cls.reach(ours, theirs) is True

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        """Theory: does this plugin alone connect ``caller`` to ``callee``? None: not modelled.

        The lab derives every cell's expected outcome from this rule over RFC 4787 axes.
        """
        return None

    async def stop(self) -> None:  # noqa: B027  (an optional hook, empty by default)
        """Called at node stop on the responding instance: end what ``respond`` started."""
