"""Signal channel and reverse connect against a real mosquitto broker on 127.0.0.1."""

import asyncio

import pytest

from tests.conftest import assert_no_tasks
from warpgate import ConnectError, Node, Outcome, auto_connect
from warpgate.proto.envelope import MsgType, seal


async def wait_for(predicate, timeout=10.0):
    """Poll a condition that has no event to wait on (broker-side state), bounded in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_reverse_only(mosquitto_factory):
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], brokers=[broker.url]) as b,
    ):
        assert a.signal.connected and b.signal.connected
        events = []
        pipe, plugin = await auto_connect(b, a.address, plugins=["reverse"], on_event=events.append)
        assert plugin.name == "reverse" and pipe.plugin == "reverse"
        incoming = await asyncio.wait_for(a.accept(), 5)
        assert incoming.peer_id == b.node_id
        await pipe.send(b"via reverse")
        assert await incoming.recv(timeout=5) == b"via reverse"
        await incoming.send(b"back")
        assert await pipe.recv(timeout=5) == b"back"
        assert events[0].outcome is Outcome.CONNECTED
    assert_no_tasks()


async def test_race_with_reverse_and_direct_cleans_up_both_sides(mosquitto_factory):
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], brokers=[broker.url]) as b,
    ):
        for _ in range(3):  # again and again between the same two nodes: nothing left over
            pipe, _plugin = await auto_connect(b, a.address)
            incoming = await asyncio.wait_for(a.accept(), 5)
            await pipe.send(b"x")
            assert await incoming.recv(timeout=5) == b"x"
            # Exactly one pipe reached A's user, whichever plugin won.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await a.accept()
            await pipe.close()
    assert_no_tasks()


async def test_no_broker_fails_fast_and_direct_still_connects(mosquitto_factory):
    from tests.daemons import free_port

    dead = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    async with Node(interfaces=["lo"], brokers=[dead]) as a, Node(interfaces=["lo"], brokers=[dead]) as b:
        assert not b.signal.connected
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ConnectError, match="no signal broker reachable") as info:
            await auto_connect(b, a.address, plugins=["reverse"], timeout=10)
        assert loop.time() - t0 < 0.1  # known without trying: not at the deadline, not after a try
        assert info.value.attempts[0].outcome is Outcome.NOT_APPLICABLE
        pipe, plugin = await auto_connect(b, a.address)
        assert plugin.name == "direct"


async def test_failover_to_second_broker_and_reconnect(mosquitto_factory):
    one, two = mosquitto_factory(), mosquitto_factory()
    async with (
        Node(interfaces=["lo"], brokers=[one.url, two.url]) as a,
        Node(interfaces=["lo"], brokers=[one.url, two.url]) as b,
    ):
        await wait_for(lambda: all(lk.connected.is_set() for n in (a, b) for lk in n.signal.links.values()))
        one.daemon.stop()
        pipe, plugin = await auto_connect(b, a.address, plugins=["reverse"], timeout=10)
        assert plugin.name == "reverse"
        await pipe.close()
        # restart the first broker on the same port: both nodes reconnect to it
        mosquitto_factory(one.port)
        await wait_for(lambda: all(n.signal.links[one.url].connected.is_set() for n in (a, b)))
        two.daemon.stop()
        pipe, plugin = await auto_connect(b, a.address, plugins=["reverse"], timeout=10)
        assert plugin.name == "reverse"


async def test_duplicates_from_several_brokers_are_dropped(mosquitto_factory):
    one, two = mosquitto_factory(), mosquitto_factory()
    async with (
        Node(interfaces=["lo"], brokers=[one.url, two.url]) as a,
        Node(interfaces=["lo"], brokers=[one.url, two.url]) as b,
    ):
        await wait_for(lambda: all(lk.connected.is_set() for n in (a, b) for lk in n.signal.links.values()))
        calls = []

        async def handler(sender, body):
            calls.append(body)
            return {"n": len(calls)}

        a.signal.on("test.count", handler)
        answer = await b.signal.request(a.address, "test.count", {"x": 1})
        assert answer == {"n": 1}
        await wait_for(lambda: a.signal.stats["replayed"] >= 1)  # the copy through the other broker
        assert len(calls) == 1


async def publish_raw(node: Node, dest: Node, data: bytes) -> None:
    link = next(lk for lk in node.signal.links.values() if lk.client is not None)
    await link.client.publish(f"warpgate/v1/{dest.node_id}", data, qos=1)


@pytest.fixture
async def pair(mosquitto_factory):
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], brokers=[broker.url]) as b,
        Node(interfaces=["lo"], brokers=[broker.url]) as c,
    ):
        calls = []

        async def handler(sender, body):
            calls.append((sender.node_id, body))
            return {}

        a.signal.on("test.act", handler)
        yield a, b, c, calls


def payload(body: dict) -> bytes:
    import json

    return json.dumps({"kind": "test.act", "rid": "r1", "body": body}).encode()


async def expect_rejected(a, reason, send):
    before = a.signal.stats[reason]
    await send()
    await wait_for(lambda: a.signal.stats[reason] > before)


async def test_forged_signature_rejected(pair):
    a, b, c, calls = pair
    import time

    env = bytearray(seal(b.identity, b.address, a.address, MsgType.NOTICE, payload({}), now=time.time()))
    env[-5] ^= 0x01  # inside the signature
    await expect_rejected(a, "bad_signature", lambda: publish_raw(b, a, bytes(env)))
    assert calls == []


async def test_impersonation_rejected(pair):
    """C signs with its own key but claims to be B (B's address in the sender field)."""
    a, b, c, calls = pair
    import time

    from warpgate.proto import envelope

    real = seal(c.identity, c.address, a.address, MsgType.NOTICE, payload({}), now=time.time())
    c_raw, b_raw = c.address.to_bytes(), b.address.to_bytes()
    assert len(c_raw) == len(b_raw)
    forged = real.replace(c_raw, b_raw)
    assert forged != real
    await expect_rejected(a, "bad_signature", lambda: publish_raw(c, a, forged))
    assert calls == [] and envelope is not None


async def test_tampered_ciphertext_rejected(pair):
    a, b, c, calls = pair
    import time

    env = bytearray(seal(b.identity, b.address, a.address, MsgType.NOTICE, payload({}), now=time.time()))
    env[-80] ^= 0x01  # inside the ciphertext: the signature no longer covers it
    await expect_rejected(a, "bad_signature", lambda: publish_raw(b, a, bytes(env)))
    assert calls == []


async def test_misaddressed_rejected(pair):
    """A message sealed for C, delivered to A's topic, is dropped by A."""
    a, b, c, calls = pair
    import time

    env = seal(b.identity, b.address, c.address, MsgType.NOTICE, payload({}), now=time.time())
    await expect_rejected(a, "misaddressed", lambda: publish_raw(b, a, env))
    assert calls == []


async def test_replayed_rejected(pair):
    a, b, c, calls = pair
    import time

    env = seal(b.identity, b.address, a.address, MsgType.NOTICE, payload({"n": 1}), now=time.time())
    await publish_raw(b, a, env)
    await wait_for(lambda: len(calls) == 1)
    await expect_rejected(a, "replayed", lambda: publish_raw(b, a, env))
    assert len(calls) == 1


async def test_a_flood_cannot_flush_the_replay_cache(pair):
    """C floods A with validly signed envelopes to push B's captured request out of A's replay
    cache: C meets its quota, nothing is forgotten inside the window, and the replay is refused."""
    import json
    import time

    from warpgate.proto.envelope import RateLimit, ReplayCache

    a, b, c, calls = pair
    a.signal.replay = ReplayCache(per_sender=20, limit=60)  # the default's rules, smaller numbers
    a.signal.limit = RateLimit(rate=1000, burst=1000)  # this test is about the cache
    captured = seal(b.identity, b.address, a.address, MsgType.NOTICE, payload({"n": 1}), now=time.time())
    await publish_raw(b, a, captured)
    await wait_for(lambda: len(calls) == 1)
    for i in range(100):
        flood = json.dumps({"kind": "test.act", "rid": f"f{i}", "body": {}}).encode()
        env = seal(c.identity, c.address, a.address, MsgType.NOTICE, flood, now=time.time())
        await publish_raw(c, a, env)
    await wait_for(lambda: a.signal.stats["sender_quota"] == 80)
    await expect_rejected(a, "replayed", lambda: publish_raw(b, a, captured))
    assert [who for who, _ in calls].count(b.node_id) == 1 and len(calls) == 21


async def test_a_senders_flood_meets_its_rate_limit_and_others_still_get_through(pair):
    """C sends 200 signed requests at once: beyond its burst they are dropped before any handler
    runs (rate_limited), while B, sending in the same moment, is handled."""
    import json
    import time

    a, b, c, calls = pair
    t0 = time.monotonic()
    for i in range(200):
        flood = json.dumps({"kind": "test.act", "rid": f"f{i}", "body": {}}).encode()
        await publish_raw(
            c, a, seal(c.identity, c.address, a.address, MsgType.NOTICE, flood, now=time.time())
        )
    env = seal(b.identity, b.address, a.address, MsgType.NOTICE, payload({"from": "b"}), now=time.time())
    await publish_raw(b, a, env)
    await wait_for(lambda: any(who == b.node_id for who, _ in calls))
    await wait_for(lambda: a.signal.stats["rate_limited"] + a.signal.stats["accepted"] >= 201)
    elapsed = time.monotonic() - t0
    handled_c = [who for who, _ in calls].count(c.node_id)
    limit = a.signal.limit
    assert handled_c <= limit.burst + limit.rate * elapsed + 1  # the bucket, however slow the run
    assert a.signal.stats["rate_limited"] == 200 - handled_c > 0


async def test_old_message_rejected(pair):
    a, b, c, calls = pair
    import time

    env = seal(b.identity, b.address, a.address, MsgType.NOTICE, payload({}), now=time.time() - 3600)
    await expect_rejected(a, "too_old", lambda: publish_raw(b, a, env))
    assert calls == []


async def test_garbage_and_oversized_rejected(mosquitto_factory):
    """The node's own checks, through a broker without a size limit (a user's may have none)."""
    broker = mosquitto_factory(size_limit=None)
    async with (
        Node(interfaces=["lo"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], brokers=[broker.url]) as b,
    ):
        calls = []

        async def act(sender, body):
            calls.append(body)
            return {}

        a.signal.on("test.act", act)
        await expect_rejected(a, "malformed", lambda: publish_raw(b, a, b"\x01\x01garbage"))
        await expect_rejected(a, "too_large", lambda: publish_raw(b, a, b"\x01" * 20000))
        assert calls == []


async def test_broker_sockets_send_at_once(mosquitto_factory):
    """TCP_NODELAY on every broker connection: with Nagle on, a request's second small write waits
    for the broker's delayed ACK (about 40 ms on Linux)."""
    import socket

    broker = mosquitto_factory()
    async with Node(interfaces=["lo"], brokers=[broker.url]) as node:
        links = list(node.signal.links.values())
        assert links and all(link.client is not None for link in links)
        for link in links:
            sock = link.client._client.socket()  # paho's socket under aiomqtt
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


async def test_a_race_against_a_dead_peer_ends_as_soon_as_every_plugin_failed():
    """TCP is refused and UDP gets ICMP port unreachable at once: no waiting for the deadline."""
    import time

    async with Node(interfaces=["lo"], families=["ipv4"]) as dead:
        address = dead.address
    async with Node(interfaces=["lo"], families=["ipv4"]) as node:
        events = []
        t0 = time.perf_counter()
        with pytest.raises(ConnectError):
            await auto_connect(node, address, timeout=10, on_event=events.append)
        elapsed = time.perf_counter() - t0
        last_failure = max(e.end_ms for e in events) / 1000
        assert elapsed - last_failure < 1.0
        assert elapsed < 2.0, events  # nothing waited for the 10 s deadline
        direct = next(e for e in events if e.plugin == "direct")
        assert direct.outcome is Outcome.FAILED and "unreachable" in direct.reason, direct.reason


async def test_signalling_plugins_give_direct_a_head_start_to_a_reachable_peer(mosquitto_factory):
    """The peer says it is reachable (EIM + EIF): direct wins before reverse and udp_punch start,
    so neither seals a single envelope. Without that claim, they start at once."""
    import dataclasses

    from warpgate import PRESETS

    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as b,
    ):
        iface = dataclasses.replace(a.address.interfaces[0], nat=PRESETS["full-cone"])
        a.set_address(dataclasses.replace(a.address, interfaces=(iface,)))
        events = []
        pipe, plugin = await auto_connect(b, a.address, on_event=events.append)
        assert plugin.name == "direct"
        assert {e.plugin: e.outcome for e in events}["reverse"] is Outcome.CANCELLED
        assert b.signal.stats["accepted"] == 0 and a.signal.stats["received"] == 0  # nothing was sent
        await pipe.close()
        solo_events = []
        await auto_connect(b, a.address, plugins=["reverse"], on_event=solo_events.append)
        assert solo_events[0].outcome is Outcome.CONNECTED  # no head start without direct racing


async def test_deeply_nested_json_is_dropped_and_the_channel_lives_on(pair):
    """A validly sealed payload nested 5,000 deep once raised RecursionError out of the broker link
    (which then died for good): it is now refused before parsing, and the link keeps working."""
    import time

    a, b, c, calls = pair
    deep = b"[" * 5000 + b"]" * 5000
    env = seal(b.identity, b.address, a.address, MsgType.NOTICE, deep, now=time.time())
    await expect_rejected(a, "too_deep", lambda: publish_raw(b, a, env))
    assert a.signal.stats["error"] == 0
    # the same link still delivers: a legitimate request is answered
    assert await b.signal.request(a.address, "test.act", {"after": True}) == {}
    assert calls == [(b.node_id, {"after": True})]


async def test_a_handler_bug_is_answered_and_counted(pair):
    a, b, c, calls = pair

    async def broken(sender, body):
        raise RuntimeError("bug in a handler")

    a.signal.on("test.broken", broken)
    answer = await b.signal.request(a.address, "test.broken", {})
    assert answer == {"error": "internal error"} and a.signal.stats["request_handler_error"] == 1
    assert await b.signal.request(a.address, "test.act", {"still": 1}) == {}


async def test_a_sender_with_a_malformed_broker_hint_is_still_answered(mosquitto_factory):
    """Broker hints come from the sender's address: "mqtt://[bad" once made every handler die."""
    import dataclasses

    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], brokers=[broker.url]) as b,
    ):
        a.signal.on("test.echo", lambda sender, body: _echo(body))
        b.set_address(dataclasses.replace(b.address, brokers=(broker.url, "mqtt://[bad")))
        assert await b.signal.request(a.address, "test.echo", {"x": 1}) == {"x": 1}


async def _echo(body):
    return body


async def test_handlers_at_once_are_capped(pair, monkeypatch):
    """Handlers that hang (a slow plugin, or one a peer keeps busy) hold at most MAX_HANDLING
    tasks; more messages are dropped and counted until one finishes."""
    import time

    from warpgate import signal as signal_module

    monkeypatch.setattr(signal_module, "MAX_HANDLING", 2)
    a, b, c, calls = pair
    release = asyncio.Event()

    async def slow(sender, body):
        await release.wait()
        return {}

    a.signal.on("test.slow", slow)

    def notice(i):
        import json

        body = json.dumps({"kind": "test.slow", "rid": f"s{i}", "body": {}}).encode()
        return seal(b.identity, b.address, a.address, MsgType.NOTICE, body, now=time.time())

    for i in range(5):
        await publish_raw(b, a, notice(i))
    await wait_for(lambda: a.signal.stats["handlers_busy"] == 3)
    release.set()
    await publish_raw(b, a, notice(9))  # room again once the slow ones finished
    await wait_for(lambda: a.signal.stats["accepted"] == 6 and a.signal._handling == 0)


async def test_the_broker_drops_a_publish_larger_than_an_envelope(pair):
    """The lab's brokers (and the docs' advice for users' brokers) refuse a publish above the
    envelope's 16 KiB: a 1 MiB one to a node's topic never reaches its client, which would read
    it whole before any check of ours."""
    import time

    a, b, c, calls = pair
    before = a.signal.stats["received"]
    await publish_raw(c, a, bytes(1024 * 1024))
    env = seal(b.identity, b.address, a.address, MsgType.NOTICE, payload({"after": 1}), now=time.time())
    await publish_raw(b, a, env)  # the same topic, after it: delivered in order had it been
    await wait_for(lambda: len(calls) == 1)
    assert a.signal.stats["received"] == before + 1 and a.signal.stats["too_large"] == 0


async def test_a_long_kind_is_refused_before_its_answer_could_overflow(pair):
    """A request whose kind (echoed in the acknowledgement) is 8 KB long would make the answer
    too large to send and kill its handler task: it is refused as malformed, counted."""
    import json
    import time

    a, b, c, calls = pair
    long = json.dumps({"kind": "x" * 8192, "rid": "r1", "body": {}}).encode()
    env = seal(c.identity, c.address, a.address, MsgType.REQUEST, long, now=time.time())
    await expect_rejected(a, "malformed", lambda: publish_raw(c, a, env))
    assert a.signal.stats["error"] == 0 and not calls
