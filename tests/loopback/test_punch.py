"""udp_punch between real nodes on loopback, signalling through a real mosquitto broker.

On loopback both nodes advertise only their own socket address, so each dials the other's node
socket while the other dials it: the simultaneous-open path of the handshake, every time.
"""

import asyncio

import pytest

from tests.conftest import assert_no_tasks
from warpgate import Node, Outcome, auto_connect
from warpgate.proto.messages import Candidate, PunchOffer


async def test_udp_punch_connects_and_reaches_accept(mosquitto_factory):
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as b,
    ):
        events = []
        pipe, plugin = await auto_connect(b, a.address, plugins=["udp_punch"], on_event=events.append)
        assert plugin.name == "udp_punch" and pipe.proto == "udp"
        # the punched pipe runs on the nodes' own sockets: the mapping that opened is the pipe's
        assert pipe.local == b.udp_endpoints[0].local and pipe.remote == a.udp_endpoints[0].local
        incoming = await asyncio.wait_for(a.accept(), 5)
        assert incoming.peer_id == b.node_id
        await pipe.send(b"punched")
        assert await incoming.recv(timeout=5) == b"punched"
        await incoming.send(b"back")
        assert await pipe.recv(timeout=5) == b"back"
        assert [e.outcome for e in events] == [Outcome.CONNECTED]
        # exactly one pipe reached A's user
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await a.accept()
    assert_no_tasks()


async def test_punch_again_on_the_same_path(mosquitto_factory):
    """A finished handshake on a path must not block the next channel on it (new conn_id)."""
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as b,
    ):
        for i in range(3):
            pipe, _ = await auto_connect(b, a.address, plugins=["udp_punch"], timeout=5)
            incoming = await asyncio.wait_for(a.accept(), 5)
            await pipe.send(b"%d" % i)
            assert await incoming.recv(timeout=5) == b"%d" % i
            await pipe.close()
            await incoming.close()


@pytest.mark.parametrize("swap", [False, True])
async def test_udp_punch_works_whichever_key_is_greater(mosquitto_factory, swap):
    """The key order decides who answers on a crossed path; both orders must connect."""
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as x,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as y,
    ):
        lo, hi = sorted((x, y), key=lambda n: n.identity.public_key)
        caller, callee = (hi, lo) if swap else (lo, hi)
        pipe, _ = await auto_connect(caller, callee.address, plugins=["udp_punch"])
        incoming = await asyncio.wait_for(callee.accept(), 5)
        await pipe.send(b"ping")
        assert await incoming.recv(timeout=5) == b"ping"


def _sent_datagrams(node: Node) -> list:
    """Record every datagram the node's UDP socket sends (to prove none went out)."""
    sent = []
    ep = node.udp_endpoints[0]
    original = ep.sendto

    def spy(data, addr):
        sent.append(addr)
        original(data, addr)

    ep.sendto = spy
    return sent


async def test_hostile_offers_are_refused_counted_and_send_nothing(mosquitto_factory):
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as victim,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as attacker,
    ):
        sent = _sent_datagrams(victim)
        own = attacker.udp_endpoints[0].local
        conn_id = bytes(16)
        bad_bodies = {
            "bad_port": {"v": 1, "conn_id": conn_id.hex(), "public": [["127.0.0.1", 70000]], "private": []},
            "too_many_candidates": {
                "v": 1,
                "conn_id": conn_id.hex(),
                "public": [["127.0.0.1", 1000 + i] for i in range(17)],
                "private": [],
            },
            # a stranger's address: the victim would be made to send packets to a third party
            "foreign_candidate": PunchOffer(conn_id, (Candidate("192.0.2.77", 9),), ()).to_body(),
            "malformed": {"v": 1, "conn_id": "zz", "public": [], "private": []},
        }
        for reason, body in bad_bodies.items():
            reply = await attacker.signal.request(victim.address, PunchOffer.kind, body)
            assert "error" in reply and reason in reply["error"], (reason, reply)
            assert victim.signal.stats["request_" + reason] == 1
        # a valid offer runs once; the same offer again (new envelope, same conn_id) is a replay
        good = PunchOffer(bytes(range(16)), (Candidate(*own),), ()).to_body()
        first = await attacker.signal.request(victim.address, PunchOffer.kind, good)
        assert "reply" in first
        sent_after_good = len(sent)
        again = await attacker.signal.request(victim.address, PunchOffer.kind, good)
        assert "replayed" in again["error"] and victim.signal.stats["request_replayed"] == 1
        assert len(sent) == sent_after_good  # the replay sent nothing
        assert all(addr == own for addr in sent)  # only the valid offer's candidate was ever dialled
