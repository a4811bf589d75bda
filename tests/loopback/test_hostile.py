"""Hostile peers against real nodes and a real mosquitto on loopback: what a stranger's signed
requests may make a node do is bounded, refused beyond the bound, and counted, while a legitimate
peer still connects."""

import asyncio
import contextlib
import dataclasses
import os

import pytest

from tests.daemons import tarpit
from tests.peers import channel
from warpgate import Node, auto_connect
from warpgate.errors import PipeClosed
from warpgate.identity import Identity
from warpgate.plugins import reverse
from warpgate.proto.messages import ReverseConnect


def lo(broker, **kw):
    return Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url], **kw)


async def test_a_strangers_dial_back_requests_are_capped(mosquitto_factory):
    """Each ReverseConnect makes the callee dial every endpoint of the requester's signed address.
    The attacker signs an address whose TCP port accepts and never answers (a tarpit) and whose
    UDP port is silent, so each dial-back holds its sockets for its whole timeout: two at once
    per sender, the rest refused as busy. A friend's reverse connect still succeeds meanwhile."""
    broker = mosquitto_factory()
    async with (
        tarpit() as (tcp_port, udp_port, held),
        lo(broker) as victim,
        lo(broker) as attacker,
        lo(broker) as friend,
    ):
        forged = dataclasses.replace(attacker.address, tcp_port=tcp_port, udp_port=udp_port)
        attacker.signal._address = lambda: forged  # signed by the attacker's own key: valid
        answers = []
        for _ in range(6):
            body = ReverseConnect(os.urandom(16)).to_body()
            answers.append(await attacker.signal.request(victim.address, ReverseConnect.kind, body))
        busy = [a for a in answers if "busy" in a.get("error", "")]
        assert len(busy) == 4 and victim.signal.stats["request_busy"] == 4
        assert len(held) <= 2  # the tarpit saw at most one connection per admitted dial-back
        pipe, plugin = await auto_connect(friend, victim.address, plugins=["reverse"], timeout=5)
        assert plugin.name == "reverse"
        await pipe.close()


async def test_dial_backs_are_capped_in_total(mosquitto_factory, monkeypatch):
    """Many strangers (keys cost nothing) meet the total cap: two of three slots, the third kept
    for known peers (``warpgate.proto.gater.STRANGERS_SHARE``)."""
    monkeypatch.setattr(reverse, "MAX_DIAL_BACKS", 3)
    broker = mosquitto_factory()
    async with tarpit() as (tcp_port, _, _held), lo(broker) as victim:
        answers = []
        for _ in range(5):
            async with lo(broker) as stranger:
                forged = dataclasses.replace(stranger.address, tcp_port=tcp_port)
                stranger.signal._address = lambda forged=forged: forged
                body = ReverseConnect(os.urandom(16)).to_body()
                answers.append(await stranger.signal.request(victim.address, ReverseConnect.kind, body))
        assert sum("busy" in a.get("error", "") for a in answers) == 3


async def test_a_strangers_broker_hints_open_no_link(mosquitto_factory):
    """Answering a request goes back over our own links: the sender's hints are not followed
    (250 requests with four hints each used to leave 1,000 permanent links)."""
    broker = mosquitto_factory()
    async with lo(broker) as victim, lo(broker) as attacker:
        hints = tuple(f"mqtt://127.0.0.1:{port}" for port in (1, 2, 3))
        forged = dataclasses.replace(attacker.address, brokers=(broker.url, *hints))
        attacker.signal._address = lambda: forged
        before = set(victim.signal.links)
        for _ in range(3):
            body = ReverseConnect(os.urandom(16)).to_body()
            await attacker.signal.request(victim.address, ReverseConnect.kind, body)
        assert set(victim.signal.links) == before


async def test_a_flood_of_broker_messages_is_bounded_and_counted(mosquitto_factory, monkeypatch):
    """While the node is busy (its loop blocked), 500 messages arrive on its topic: the incoming
    queue keeps at most MAX_QUEUED, counts the rest as queue_full, and the channel still works."""
    import subprocess
    import time

    from warpgate import signal as signal_module
    from warpgate.signal import topic_of

    monkeypatch.setattr(signal_module, "MAX_QUEUED", 50)
    broker = mosquitto_factory()
    async with lo(broker) as victim, lo(broker) as friend:
        host, port = broker.url.removeprefix("mqtt://").split(":")
        flood = subprocess.Popen(
            ["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", topic_of(victim.node_id), "-l"],
            stdin=subprocess.PIPE,
        )
        flood.communicate(b"junk\n" * 500, timeout=10)  # returns once all 500 are acknowledged
        assert flood.returncode == 0
        time.sleep(0.5)  # the victim is busy: its loop runs nothing while the broker delivers
        body = ReverseConnect(os.urandom(16)).to_body()
        await friend.signal.request(victim.address, ReverseConnect.kind, body)  # still answered
        stats = victim.signal.stats
        # every one read or dropped before the answer (QoS 1 may deliver one twice)
        assert stats["queue_full"] > 0 and stats["malformed"] + stats["queue_full"] >= 500


async def test_large_messages_into_a_pipe_nobody_reads_cost_bounded_memory():
    """A peer that authenticated (any key does) sends 4 MiB messages that nobody reads: the inbox
    stops at INBOX_BYTES and TCP flow control stops the sender (40 of them were 683 MB of RSS)."""
    from warpgate.pipe import INBOX_BYTES

    attacker_id = Identity.generate()
    async with Node(interfaces=["lo"], families=["ipv4"]) as victim:
        pipe = await channel(victim.address, attacker_id)
        sent = 0

        async def flood():
            nonlocal sent
            for _ in range(40):
                await pipe.send(bytes(4 * 1024 * 1024))
                sent += 1

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flood(), 3)  # the sender is held: it cannot finish
        (theirs,) = [p for p in victim._pipes if p.peer_key == attacker_id.public_key]
        held = sum(inbox.size for inbox in theirs._subs.values())
        assert held <= INBOX_BYTES + 4 * 1024 * 1024 and sent < 40
        await pipe.close()


async def test_many_pipes_nobody_reads_share_one_node_budget():
    """Sixteen pipes (one key each: keys cost nothing) flood 4 MiB messages nobody reads: what
    the node holds in all its inboxes stays within its inbox budget (the biggest unread holders
    are closed to make room), where each pipe alone could hold 8 MiB and more; a friend's pipe,
    read as it arrives, keeps working."""
    limit = 16 * 1024 * 1024
    async with Node(interfaces=["lo"], families=["ipv4"]) as victim:
        victim.inbox_budget.limit = limit
        pipes = [await channel(victim.address, Identity.generate()) for _ in range(16)]

        async def flood(pipe):
            with contextlib.suppress(PipeClosed):
                for _ in range(8):
                    await pipe.send(bytes(4 * 1024 * 1024))

        floods = [asyncio.ensure_future(flood(p)) for p in pipes]
        await asyncio.wait(floods, timeout=3)  # the victim stops reading: most floods never end
        held = sum(inbox.size for p in victim._pipes for inbox in p._subs.values())
        assert held <= limit + 4 * 1024 * 1024, held
        assert victim.inbox_budget.used <= limit + 4 * 1024 * 1024
        assert victim.inbox_budget.evicted > 0
        friend_id = Identity.generate()
        mine = await channel(victim.address, friend_id)
        (theirs,) = [p for p in victim._pipes if p.peer_key == friend_id.public_key]
        for i in range(10):
            await mine.send(b"%d" % i)
            assert await asyncio.wait_for(theirs.recv(), 5) == b"%d" % i
        for f in floods:
            f.cancel()
        await asyncio.gather(*floods, return_exceptions=True)
        for p in [*pipes, mine]:
            await p.close()


async def test_a_slow_reader_is_not_a_silent_peer():
    """The application stops reading for three of the keepalive's dead windows while the peer
    sends: the pipe stops reading its socket (TCP flow control), and its keepalive must not take
    that for a dead peer. Every message arrives once the reader resumes."""
    from warpgate.proto.timers import Liveness

    quick = Liveness(idle=0.1, interval=0.05, dead=0.5)
    sender_id = Identity.generate()
    async with Node(interfaces=["lo"], families=["ipv4"], queue_size=4, keepalive=quick) as victim:
        pipe = await channel(victim.address, sender_id)
        (theirs,) = [p for p in victim._pipes if p.peer_key == sender_id.public_key]

        async def send_all():
            for i in range(200):
                await pipe.send(i.to_bytes(4, "big") + bytes(64 * 1024))

        sending = asyncio.ensure_future(send_all())
        await asyncio.sleep(3 * quick.dead)  # the slow reader under test, not a synchronisation
        assert not theirs.closed, theirs.close_reason
        got = [int.from_bytes((await asyncio.wait_for(theirs.recv(), 5))[:4], "big") for _ in range(200)]
        assert got == list(range(200))
        await sending
        await pipe.close()


async def test_channels_that_are_never_nominated_are_capped_and_expire(monkeypatch):
    """A key opens channels it never nominates: a few wait, more are refused; a crowd of keys
    fills the table: the oldest waiting one makes room; after the timeout all are closed."""
    from warpgate import node as node_module

    monkeypatch.setattr(node_module, "MAX_UNNOMINATED", 5)
    monkeypatch.setattr(node_module, "MAX_UNNOMINATED_PER_PEER", 3)
    monkeypatch.setattr(node_module, "NOMINATION_TIMEOUT", 0.5)
    first, second = Identity.generate(), Identity.generate()
    async with Node(interfaces=["lo"], families=["ipv4"]) as victim:
        pipes = [await channel(victim.address, first) for _ in range(5)] + [
            await channel(victim.address, second) for _ in range(3)
        ]
        for p in pipes:  # each is closed by the victim: refused, evicted, or timed out
            with pytest.raises(PipeClosed):
                await p.recv(timeout=5)
        stats = victim.stats
        assert stats["unnominated_peer_cap"] == 2  # first's 4th and 5th
        assert stats["unnominated_evicted"] == 1  # first's 1st, for second's 3rd
        assert stats["unnominated_timeout"] == 5
        assert not victim._pipes


async def test_links_to_peers_brokers_end_when_idle(mosquitto_factory, monkeypatch):
    """Calling a peer links to the brokers its address lists; such a link ends once unused for
    LINK_IDLE (here 0: at the next new link), while our own broker's link stays."""
    from warpgate import signal as signal_module

    own, theirs, third = mosquitto_factory(), mosquitto_factory(), mosquitto_factory()
    async with lo(own) as caller, lo(theirs) as peer, lo(third) as other:
        await caller.signal.notify(peer.address, "test.none", {})
        assert set(caller.signal.links) == {own.url, theirs.url}
        monkeypatch.setattr(signal_module, "LINK_IDLE", 0.0)
        await caller.signal.notify(other.address, "test.none", {})
        assert set(caller.signal.links) == {own.url, third.url}
        assert caller.signal.stats["link_expired"] == 1


async def test_silent_tcp_connections_are_capped(monkeypatch):
    """Connections that never speak hold a socket until the handshake times out: beyond
    MAX_HANDSHAKING at once, new ones are closed at once; a real peer still gets through after."""
    from warpgate import node as node_module

    monkeypatch.setattr(node_module, "MAX_HANDSHAKING", 4)
    async with (
        Node(interfaces=["lo"], families=["ipv4"]) as victim,
        Node(interfaces=["lo"], families=["ipv4"]) as friend,
    ):
        ep = next(e for e in victim.address.endpoints("tcp"))
        silent = [await asyncio.open_connection(ep.host, ep.port) for _ in range(6)]
        for reader, _ in silent[4:]:
            assert await reader.read() == b""  # closed at once: the cap
        assert victim.stats["handshake_cap"] == 2
        for _, writer in silent[:4]:
            writer.close()
        pipe, _ = await auto_connect(friend, victim.address, plugins=["direct"], timeout=5)
        await pipe.close()


async def test_idle_tcp_connections_cannot_lock_a_peer_out(monkeypatch):
    """Every handshake slot held by silent connections of one source: a peer from another
    source still completes its handshake, in the slot of the oldest of the source holding the
    most; a newcomer from the crowd's own source is refused as before."""
    from warpgate import node as node_module

    monkeypatch.setattr(node_module, "MAX_HANDSHAKING", 8)
    async with Node(interfaces=["lo"], families=["ipv4"]) as victim:
        ep = next(e for e in victim.address.endpoints("tcp"))
        silent = [
            await asyncio.open_connection(ep.host, ep.port, local_addr=("127.0.1.1", 0)) for _ in range(8)
        ]
        more = await asyncio.open_connection(ep.host, ep.port, local_addr=("127.0.1.1", 0))
        assert await more[0].read() == b""  # the crowd's own source waits its turn
        pipe = await channel(victim.address, Identity.generate())
        assert victim.stats["handshake_evicted"] == 1 and victim.stats["handshake_cap"] == 1
        await pipe.close()
        for _, writer in [*silent, more]:
            writer.close()


async def test_one_key_cannot_hold_every_pipe(monkeypatch):
    """Nominating is free: one key that opens and nominates pipe after pipe is held to its share
    (the rest refused, counted); keys beyond the total make room from the key holding the most;
    a friend still connects."""
    from warpgate import node as node_module

    monkeypatch.setattr(node_module, "MAX_PIPES_PER_PEER", 4)
    monkeypatch.setattr(node_module, "MAX_PIPES", 6)
    hog, other = Identity.generate(), Identity.generate()
    async with (
        Node(interfaces=["lo"], families=["ipv4"]) as victim,
        Node(interfaces=["lo"], families=["ipv4"]) as friend,
    ):

        async def nominated(who):
            pipe = await channel(victim.address, who)
            pipe.nominate()
            return pipe

        hogs = [await nominated(hog) for _ in range(10)]
        await wait_until(lambda: victim.stats["pipes_per_owner"] == 6)
        others = [await nominated(other) for _ in range(3)]
        await wait_until(lambda: victim.stats["pipes_evicted"] == 1)
        held = list(victim._accepted_pipes.values())
        assert held.count(hog.public_key) == 3 and held.count(other.public_key) == 3
        pipe, _ = await auto_connect(friend, victim.address, plugins=["direct"], timeout=5)
        await pipe.close()
        for p in hogs + others:
            await p.close()


async def wait_until(predicate, timeout=10.0):
    """Until the victim has counted what the test did (its events are counters, not futures)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
