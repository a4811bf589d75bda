"""The signal envelope codec: pure, time passed in, every rejection reason exercised and fuzzed."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warpgate import Address, Identity, Interface
from warpgate.proto.envelope import MsgType, ReplayCache, SignalRejected, open_envelope, seal

A, B, C = Identity.generate(), Identity.generate(), Identity.generate()


def addr(ident: Identity) -> Address:
    import ipaddress

    return Address(ident.public_key, 4000, 4000, (Interface(private4=ipaddress.IPv4Address("10.0.0.1")),))


NOW = 1_800_000_000.0


def sealed(payload=b'{"x": 1}', now=NOW, sender=A, recipient=B, claimed=None):
    return seal(sender, claimed or addr(sender), addr(recipient), MsgType.REQUEST, payload, now=now)


def reason_of(data, ident=B, now=NOW, replay=None):
    with pytest.raises(SignalRejected) as info:
        open_envelope(data, ident, now=now, replay=replay or ReplayCache())
    return info.value.reason


def test_round_trip():
    env = open_envelope(sealed(), B, now=NOW + 1, replay=ReplayCache())
    assert env.payload == b'{"x": 1}' and env.sender.public_key == A.public_key
    assert env.type is MsgType.REQUEST and env.recipient_id == B.node_id


def test_payload_is_encrypted():
    data = sealed(b"very secret conn id")
    assert b"very secret" not in data


def test_wrong_recipient():
    assert reason_of(sealed(), ident=C) == "misaddressed"


def test_too_old_and_from_the_future():
    assert reason_of(sealed(now=NOW - 61)) == "too_old"
    assert reason_of(sealed(now=NOW + 61)) == "too_old"


def test_replay():
    cache = ReplayCache()
    data = sealed()
    open_envelope(data, B, now=NOW, replay=cache)
    assert reason_of(data, replay=cache) == "replayed"


def test_replay_cache_forgets_after_window():
    cache = ReplayCache(window=60)
    assert cache.check_and_add("a", b"1", 0) is None
    assert cache.check_and_add("a", b"1", 10) == "replayed"
    assert cache.check_and_add("a", b"2", 200) is None  # expels b"1": too old to be accepted anyway
    assert cache.check_and_add("a", b"1", 200) is None and len(cache) == 2


def test_a_flood_refuses_instead_of_forgetting():
    """The flush attack: a sender's flood meets its quota, a crowd of senders meets the limit;
    inside the window no id is forgotten, so the victim's captured message stays a replay."""
    cache = ReplayCache(window=60, per_sender=3, limit=10)
    assert cache.check_and_add("victim", b"captured", 0) is None
    flood = [cache.check_and_add("attacker", b"f%d" % i, 1) for i in range(100)]
    assert flood[:3] == [None] * 3 and set(flood[3:]) == {"sender_quota"}
    crowd = [cache.check_and_add(f"sybil{i}", b"s%d" % i, 2) for i in range(100)]
    assert crowd.count(None) == 6 and set(crowd) == {None, "replay_cache_full"}
    assert cache.check_and_add("victim", b"captured", 59) == "replayed"
    assert cache.check_and_add("victim", b"captured", 121) is None  # after 2 windows: too old anyway


def test_impersonation_and_tampering():
    # signed by C while claiming A's address
    data = seal(C, addr(C), addr(B), MsgType.NOTICE, b"{}", now=NOW)
    forged = data.replace(addr(C).to_bytes(), addr(A).to_bytes())
    assert reason_of(forged) == "bad_signature"
    for pos in (5, 40, 100, -80, -3):
        flipped = bytearray(sealed())
        flipped[pos] ^= 0x20
        assert reason_of(bytes(flipped)) in {
            "bad_signature",
            "malformed",
            "bad_sender",
            "misaddressed",
            "too_old",
        }


def test_signature_is_checked_before_decryption():
    flipped = bytearray(sealed())
    flipped[-80] ^= 0x01  # ciphertext: AEAD would catch it too, but the signature must first
    assert reason_of(bytes(flipped)) == "bad_signature"


def test_size_limit():
    assert reason_of(b"\x01" * 20000) == "too_large"


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_only_signal_rejected(data):
    try:
        open_envelope(data, B, now=NOW, replay=ReplayCache())
    except SignalRejected:
        pass


@settings(max_examples=200)
@given(st.integers(0, 10_000), st.integers(1, 255))
def test_fuzz_mutations_never_accepted(pos, xor):
    data = bytearray(sealed())
    data[pos % len(data)] ^= xor
    with pytest.raises(SignalRejected):
        open_envelope(bytes(data), B, now=NOW, replay=ReplayCache())


def test_response_cache_is_per_sender_and_never_evicts_another_senders_answers():
    from warpgate.signal import ResponseCache

    cache = ResponseCache(per_sender=2, limit=5, keep=10)
    cache.put("victim", "r1", {"ok": 1}, 0)
    for i in range(50):  # one sender's flood only pushes out its own answers
        cache.put("attacker", f"a{i}", {}, 1)
    for i in range(50):  # a crowd of senders fills the cache, then is not cached
        cache.put(f"sybil{i}", "s", {}, 1)
    assert cache.get("victim", "r1", 2) == {"ok": 1}
    assert len(cache) == 5 and cache.refused == 48
    assert cache.get("attacker", "a49", 2) == {} and cache.get("attacker", "a0", 2) is None
    assert cache.get("victim", "r1", 10.5) is None and len(cache) == 4  # kept 10 s
    assert cache.get("attacker", "a49", 11.5) is None and len(cache) == 0


def test_rate_limit_buckets():
    from warpgate.proto.envelope import RateLimit

    limit = RateLimit(rate=2, burst=3, total_rate=100, total_burst=5, senders=2)
    assert [limit.admit("c", 0.0) for _ in range(5)] == [True, True, True, False, False]
    assert limit.admit("c", 0.5)  # one token back after half a second at 2 a second
    assert limit.admit("b", 0.5)  # another sender has its own bucket
    assert [limit.admit_any(0.0) for _ in range(6)] == [True] * 5 + [False]
    limit.admit("x", 0.6)
    limit.admit("y", 0.6)  # three senders seen, two kept: "c" forgotten (a fresh bucket)
    assert [limit.admit("c", 0.6) for _ in range(4)] == [True, True, True, False]


def test_replays_of_a_captured_envelope_spend_nothing_of_its_sender():
    """Anyone subscribed to a node's topic can capture a sender's envelope and replay it 1,000
    times a second: each replay is refused before the signature and the sender's bucket, so the
    sender's next real envelope is still admitted."""
    from warpgate.proto.envelope import RateLimit, admit

    cache, limit, checked = ReplayCache(), RateLimit(rate=20, burst=40), []

    def authentic():
        checked.append(1)
        return True

    admit("victim", b"captured", NOW, replay=cache, limit=limit, authentic=authentic)
    for i in range(1000):
        with pytest.raises(SignalRejected, match="replayed"):
            admit("victim", b"captured", NOW + i / 1000, replay=cache, limit=limit, authentic=authentic)
    admit("victim", b"fresh", NOW + 1, replay=cache, limit=limit, authentic=authentic)  # not rate_limited
    assert len(checked) == 2  # no signature was checked for a replay


def test_many_keys_cannot_fill_the_replay_cache():
    """100 keys, each within its own bucket and quota, send as fast as the total bucket lets
    them for two windows: the cache holds them all and a legitimate sender still gets in."""
    from warpgate.proto.envelope import RateLimit, admit

    cache, limit = ReplayCache(), RateLimit()
    now, refused = NOW, {}
    sent = 0
    while now < NOW + 2 * cache.window:
        for k in range(100):
            sent += 1
            now += 1 / limit.total_rate  # exactly what the total bucket admits
            try:
                admit(f"sybil{k}", b"%d" % sent, now, replay=cache, limit=limit, authentic=lambda: True)
            except SignalRejected as exc:
                refused[exc.reason] = refused.get(exc.reason, 0) + 1
    assert "replay_cache_full" not in refused and len(cache) > 100_000
    admit("legitimate", b"hello", now, replay=cache, limit=limit, authentic=lambda: True)


def test_the_gate_refuses_a_sender_before_its_signature_is_checked():
    flipped = bytearray(sealed())
    flipped[-80] ^= 0x01  # a bad signature too: the gate answers first, and spends nothing
    asked = []

    def allow(key):
        asked.append(key)
        return False

    for data in (sealed(), bytes(flipped)):
        with pytest.raises(SignalRejected) as info:
            open_envelope(data, B, now=NOW, replay=ReplayCache(), allow=allow)
        assert info.value.reason == "not_allowed"
    assert asked == [A.public_key, A.public_key]
    assert open_envelope(sealed(), B, now=NOW, replay=ReplayCache(), allow=lambda k: k == A.public_key)
