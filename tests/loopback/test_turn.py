"""The ``turn`` plugin against a real coturn on loopback: relayed pipes over UDP and TCP to the
server, nothing left allocated after close, clear reasons for a dead server and bad credentials,
coturn's REST credentials, and credentials in no error or log."""

import asyncio
import logging

import pytest

from warpgate import ConnectError, Node, Outcome, auto_connect
from warpgate.errors import LocalProtocolError
from warpgate.turn import TurnServer

PASSWORD = "s3cret-pass"


def start_coturn(tmp_path, **kw):
    from netsim.daemons import Daemon, coturn

    daemon = Daemon(
        coturn("127.0.0.1", "127.0.0.2", password=PASSWORD, loopback_peers=True, **kw), tmp_path / "coturn"
    )
    daemon.start()
    return daemon


@pytest.fixture
def coturn(tmp_path):
    daemon = start_coturn(tmp_path)
    yield daemon
    daemon.stop()
    assert not daemon.running


def node(broker, turn, **kw):
    return Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url], turn=turn, **kw)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_relayed_pipe_carries_data_and_its_allocations_end_with_it(
    coturn, mosquitto_factory, transport, caplog
):
    caplog.set_level(logging.INFO, logger="aioice.turn")
    broker = mosquitto_factory()
    url = f"turn://wg:{PASSWORD}@127.0.0.1:3478?transport={transport}"
    async with node(broker, [url]) as a, node(broker, [url]) as b:
        accepted = asyncio.ensure_future(a.accept())
        events = []
        pipe, plugin = await auto_connect(b, a.address, plugins=["turn"], timeout=5, on_event=events.append)
        assert plugin.name == "turn" and pipe.path == "relayed" and events[0].path == "relayed"
        theirs = await accepted
        await pipe.send(b"through the relay")
        assert await theirs.recv() == b"through the relay"
        await theirs.send(b"x" * 1000)
        assert await pipe.recv() == b"x" * 1000
        await pipe.close()
        await theirs.close()
        # both relays deleted their allocation when their pipe closed: the server acknowledged a
        # Refresh with lifetime 0 for each (RFC 8656 §7.3), before the nodes stopped
        created = [r for r in caplog.records if r.getMessage().startswith("TURN allocation created")]
        deleted = [r for r in caplog.records if r.getMessage().startswith("TURN allocation deleted")]
        assert len(created) == 2 and len(deleted) == 2


async def test_a_dead_server_is_a_clear_reason_within_a_second(mosquitto_factory):
    from tests.daemons import free_port

    broker = mosquitto_factory()
    dead = f"turn://wg:{PASSWORD}@127.0.0.1:{free_port()}?transport=udp"
    async with node(broker, [dead]) as a, node(broker, [dead]) as b:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ConnectError) as info:
            await auto_connect(b, a.address, plugins=["turn"], timeout=5)
        assert loop.time() - t0 < 1.5
        event = info.value.attempts[0]
        assert event.outcome is Outcome.FAILED and event.reason.startswith("turn: server unreachable")


async def test_wrong_credentials_are_a_401_at_once_and_no_password_is_shown(
    coturn, mosquitto_factory, caplog
):
    caplog.set_level(logging.DEBUG)
    broker = mosquitto_factory()
    wrong = "turn://wg:not-the-password@127.0.0.1:3478"
    async with node(broker, [wrong]) as a, node(broker, [wrong]) as b:
        with pytest.raises(ConnectError) as info:
            await auto_connect(b, a.address, plugins=["turn"], timeout=5)
    reason = info.value.attempts[0].reason
    assert "401" in reason and "wrong credentials" in reason
    for text in (
        reason,
        str(info.value),
        caplog.text,
        repr(TurnServer.parse(wrong)),
        str(TurnServer.parse(wrong)),
    ):
        assert "not-the-password" not in text and PASSWORD not in text


async def test_rest_credentials(tmp_path, mosquitto_factory):
    """coturn's use-auth-secret: the node makes expiry:name and HMAC-SHA1 per allocation."""
    daemon = start_coturn(tmp_path, secret="shared-secret")
    try:
        broker = mosquitto_factory()
        url = "turn://alice@127.0.0.1:3478?secret=shared-secret"
        async with node(broker, [url]) as a, node(broker, [url]) as b:
            pipe, plugin = await auto_connect(b, a.address, plugins=["turn"], timeout=5)
            assert pipe.path == "relayed"
            await pipe.close()
        bad = "turn://alice@127.0.0.1:3478?secret=another-secret"
        async with node(broker, [bad]) as a, node(broker, [bad]) as b:
            with pytest.raises(ConnectError, match="401"):
                await auto_connect(b, a.address, plugins=["turn"], timeout=5)
    finally:
        daemon.stop()


def test_turn_urls_are_checked():
    s = TurnServer.parse("turn://alice:hunter2@203.0.113.10?transport=tcp")
    assert (s.host, s.port, s.transport) == ("203.0.113.10", 3478, "tcp")
    assert s.credentials() == ("alice", "hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    for bad in ("http://u:p@h", "turn://h", "turn://u:p@h?transport=sctp", "turns://u:p@h"):
        with pytest.raises(LocalProtocolError):
            TurnServer.parse(bad)


async def test_hostile_relay_offers_are_refused_and_bounded(coturn, mosquitto_factory, monkeypatch):
    """Each offer makes the callee allocate on its server: a stranger may hold at most
    MAX_SESSIONS allocations at once (then ``busy``), never two for one offer, and an offer naming
    several relayed addresses is malformed."""
    from warpgate.plugins import turn as turn_plugin
    from warpgate.proto.messages import Candidate, RelayOffer

    monkeypatch.setattr(turn_plugin, "MAX_SESSIONS", 2)
    broker = mosquitto_factory()
    url = f"turn://wg:{PASSWORD}@127.0.0.1:3478"
    async with node(broker, [url]) as victim, node(broker, []) as attacker:
        nowhere = Candidate("127.0.0.1", 9)  # nobody answers there: each dial-back keeps going

        async def offer(conn_id, relayed=(nowhere,)):
            body = RelayOffer(conn_id, relayed).to_body()
            return await attacker.signal.request(victim.address, RelayOffer.kind, body)

        two = await offer(bytes(16), (nowhere, Candidate("127.0.0.1", 10)))
        assert "malformed" in two["error"] and victim.signal.stats["request_malformed"] == 1
        assert "reply" in await offer(bytes([1]) * 16)
        again = await offer(bytes([1]) * 16)  # the same offer while it is being answered
        assert "replayed" in again["error"]
        assert "reply" in await offer(bytes([2]) * 16)
        third = await offer(bytes([3]) * 16)
        assert "busy" in third["error"] and victim.signal.stats["request_busy"] == 1
