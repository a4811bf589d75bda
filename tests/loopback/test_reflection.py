"""A node is no reflector: an attacker signs an address whose public IPv4 is a bystander's
(127.0.0.77) and asks the victim to punch, connect back or probe towards it. What reaches the
bystander is measured where it arrives (its own sockets, or the kernel's counters for SYNs and
for datagrams to closed ports), and must stay within the bound of ``warpgate.proto.reflection``:
3x the request's envelope, or one probe sweep a minute whatever the number of keys."""

import asyncio
import contextlib
import dataclasses
import os

import pytest

import warpgate.signal
from tests.peers import behind, bystander, claim, snmp
from warpgate import Node
from warpgate.plugins import random_probe, tcp_punch, udp_punch
from warpgate.proto.messages import Candidate, ProbeOffer, PunchOffer, ReverseConnect, TcpPunchOffer
from warpgate.proto.reflection import FACTOR, SWEEP, SYN_BYTES

VICTIM_HOST = "127.0.0.77"


def lo(broker, **kw):
    return Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url], portmap="off", **kw)


@pytest.fixture
def sealed(monkeypatch):
    """Bytes of every envelope each identity sealed, by public key: what a request weighs on
    the wire, measured at the sender."""
    sizes: dict[bytes, list[int]] = {}
    real = warpgate.signal.seal

    def recording(identity, *args, **kw):
        data = real(identity, *args, **kw)
        sizes.setdefault(identity.public_key, []).append(len(data))
        return data

    monkeypatch.setattr(warpgate.signal, "seal", recording)
    return sizes


async def settle(victim, plugin):
    """Until the victim's work for the plugin's offers has ended (its sessions are counters)."""
    sessions = victim._responders[plugin]
    work = getattr(sessions, "_sessions", None) or sessions._dialing
    async with asyncio.timeout(20):
        while len(work):
            await asyncio.sleep(0.02)


async def test_a_punch_offer_sends_a_third_party_at_most_three_times_its_bytes(
    mosquitto_factory, sealed, monkeypatch
):
    monkeypatch.setattr(udp_punch, "RESPONDER_LIMIT", 3.0)
    broker = mosquitto_factory()
    async with (
        bystander(VICTIM_HOST, ports=16) as (ports, heard),
        lo(broker) as victim,
        lo(broker) as attacker,
    ):
        claim(attacker, VICTIM_HOST)
        offer = PunchOffer(os.urandom(16), tuple(Candidate(VICTIM_HOST, p) for p in ports), ())
        answer = await attacker.signal.request(victim.address, PunchOffer.kind, offer.to_body())
        assert "error" not in answer
        await settle(victim, "udp_punch")
        asked = max(sealed[attacker.identity.public_key])
        assert 0 < heard.bytes <= FACTOR * asked, (heard.bytes, asked)
        assert victim.reflection.refused["sends"] > 0


async def test_a_tcp_punch_offer_sends_a_third_party_at_most_three_times_its_bytes(
    mosquitto_factory, sealed, monkeypatch
):
    """Each connect to a closed port is one SYN (answered by a reset, tried again): counted by
    the kernel as an active open."""
    monkeypatch.setattr(tcp_punch, "RESPONDER_LIMIT", 2.0)
    broker = mosquitto_factory()
    async with lo(broker) as victim, lo(broker) as attacker:
        claim(attacker, VICTIM_HOST)
        closed = [40000 + i for i in range(8)]
        offer = TcpPunchOffer(os.urandom(16), tuple(Candidate(VICTIM_HOST, p) for p in closed), ())
        before = snmp("Tcp", "ActiveOpens")
        answer = await attacker.signal.request(victim.address, TcpPunchOffer.kind, offer.to_body())
        assert "error" not in answer
        await settle(victim, "tcp_punch")
        syns = snmp("Tcp", "ActiveOpens") - before
        asked = max(sealed[attacker.identity.public_key])
        assert 0 < syns * SYN_BYTES <= FACTOR * asked, (syns, asked)


async def test_dial_backs_to_a_third_party_stay_within_three_times_their_requests(mosquitto_factory, sealed):
    """Six keys ask for two dial-backs each towards the bystander (its UDP port silent, its
    TCP port closed; twelve: all that strangers may hold at once): together they get at most 3x
    their requests' bytes."""
    broker = mosquitto_factory()
    async with (
        bystander(VICTIM_HOST) as (ports, heard),
        lo(broker) as victim,
        contextlib.AsyncExitStack() as stack,
    ):
        attackers = [await stack.enter_async_context(lo(broker)) for _ in range(6)]
        before = snmp("Tcp", "ActiveOpens")
        for attacker in attackers:
            claim(attacker, VICTIM_HOST)
            forged = attacker.signal._address()
            # only the bystander's address: the attacker's own 127.0.0.1 is dropped
            only = dataclasses.replace(
                forged,
                udp_port=ports[0],
                tcp_port=40100,
                interfaces=(dataclasses.replace(forged.interfaces[0], private4=None),),
            )
            attacker.signal._address = lambda only=only: only
            for _ in range(2):
                body = ReverseConnect(os.urandom(16)).to_body()
                answer = await attacker.signal.request(victim.address, ReverseConnect.kind, body)
                assert "error" not in answer
        await settle(victim, "reverse")
        syns = snmp("Tcp", "ActiveOpens") - before
        asked = sum(sum(sealed[a.identity.public_key]) for a in attackers)
        sent = heard.bytes + syns * SYN_BYTES
        assert 0 < sent <= FACTOR * asked, (heard.bytes, syns, asked)


async def test_many_keys_get_one_probe_sweep_of_a_third_party_a_minute(mosquitto_factory):
    """Eight keys offer random probing towards the bystander's address at once, asking for
    65,535 probes at 20,000 a second over every port: the victim (a cone) sends one sweep of
    at most ``SWEEP`` probes, within its own defaults, and refuses the rest as busy."""
    broker = mosquitto_factory()
    async with lo(broker) as victim:
        behind(victim, "port-restricted-cone")
        async with contextlib.AsyncExitStack() as stack:
            attackers = [await stack.enter_async_context(lo(broker)) for _ in range(8)]
            before = snmp("Udp", "NoPorts")
            answers = []
            for attacker in attackers:
                claim(attacker, VICTIM_HOST, "symmetric")
                offer = ProbeOffer(
                    os.urandom(16), (Candidate(VICTIM_HOST, 5000),), 1024, 65535, 20000, 1, 65535
                )
                answers.append(
                    await attacker.signal.request(victim.address, ProbeOffer.kind, offer.to_body())
                )
            await settle(victim, "random_probe")
            probes = snmp("Udp", "NoPorts") - before  # no socket listens on 127.0.0.77
        assert sum("error" not in a for a in answers) == 1
        assert sum("busy" in a.get("error", "") for a in answers) == 7
        assert 0 < probes <= min(SWEEP, random_probe.DEFAULTS["budget"]), probes
        assert victim.reflection.refused["sweeps"] == 7
