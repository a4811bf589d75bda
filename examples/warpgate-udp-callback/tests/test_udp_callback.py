"""The plugin on loopback against a real broker: found through its entry point, it connects over
UDP through its own signal messages, says why when it cannot, and bounds what a stranger's
requests make the callee do."""

import asyncio
import dataclasses
import os
import socket

import pytest
from warpgate_udp_callback import CallbackRequest, UdpCallback

from warpgate import ConnectError, Node, Outcome, auto_connect
from warpgate.plugins import available
from warpgate.proto.nat import PRESETS, Behaviours


def lo(broker=None):
    return Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url] if broker else [])


def test_the_entry_point_registers_it():
    assert available()["udp_callback"] is UdpCallback


def test_its_rule_follows_the_rfc_4787_axes():
    def b(name):
        return Behaviours(PRESETS[name], PRESETS[name])

    assert UdpCallback.reach(b("full-cone"), b("symmetric")) is True  # the caller takes anyone's UDP
    assert UdpCallback.reach(b("port-restricted-cone"), b("open")) is False  # it filters the callee
    assert UdpCallback.reach(b("open"), b("udp-blocked")) is False  # the callee cannot send UDP


async def test_it_connects_over_udp_through_its_own_messages(broker):
    async with lo(broker) as callee, lo(broker) as caller:
        accepted = asyncio.ensure_future(callee.accept())
        events = []
        pipe, plugin = await auto_connect(
            caller, callee.address, plugins=["udp_callback"], timeout=5, on_event=events.append
        )
        assert plugin.name == "udp_callback" and pipe.proto == "udp"
        theirs = await asyncio.wait_for(accepted, 5)  # the caller's race nominated it back
        await pipe.send(b"called back")
        assert await theirs.recv(timeout=5) == b"called back"
        await theirs.send(b"and answered")
        assert await pipe.recv(timeout=5) == b"and answered"
        assert [e.outcome for e in events] == [Outcome.CONNECTED]
        await pipe.close()


async def test_without_a_broker_it_says_why_at_once():
    async with lo() as callee, lo() as caller:
        events = []
        with pytest.raises(ConnectError, match="no signal broker"):
            await auto_connect(
                caller, callee.address, plugins=["udp_callback"], timeout=2, on_event=events.append
            )
        assert events[0].outcome is Outcome.NOT_APPLICABLE


async def test_a_strangers_requests_are_capped_per_sender(broker):
    """Each request makes the callee dial the requester's signed UDP endpoints. The stranger signs
    addresses whose UDP ports never answer (a new one per request: the node's socket runs one dial
    per peer endpoint anyway), so each dial runs its whole timeout: two at once per sender, the
    rest refused as busy."""
    silent = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
    for s in silent:
        s.bind(("127.0.0.1", 0))
    try:
        async with lo(broker) as victim, lo(broker) as stranger:
            answers = []
            for s in silent:
                forged = dataclasses.replace(stranger.address, udp_port=s.getsockname()[1])
                stranger.signal._address = lambda forged=forged: forged  # signed by its own key: valid
                body = CallbackRequest(os.urandom(16)).to_body()
                answers.append(await stranger.signal.request(victim.address, CallbackRequest.kind, body))
            assert sum("busy" in a.get("error", "") for a in answers) == 3
    finally:
        for s in silent:
            s.close()
