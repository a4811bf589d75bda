"""Nickname records and the server's rules, with time passed in (SQLite in memory)."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warpgate import Address, Identity, Interface
from warpgate.names import NameStore
from warpgate.proto.names import MAX_TTL, NameServiceError, Op, check_name, decode, sign

A, B = Identity.generate(), Identity.generate()
NOW = 1_800_000_000


def addr(ident, port=4000):
    return Address(ident.public_key, port, port, (Interface(private4=ipaddress.IPv4Address("10.0.0.1")),))


def claim(ident, name="alice", seq=1, ttl=3600, port=4000, op=Op.CLAIM):
    return sign(ident, op, name, addr(ident, port), seq=seq, expires=NOW + ttl).to_bytes()


@pytest.fixture
def store():
    s = NameStore(":memory:", quota=3)
    yield s
    s.close()


def code(fn):
    with pytest.raises(NameServiceError) as info:
        fn()
    return info.value.code


@pytest.mark.parametrize(
    "bad", ["ab", "a" * 33, "Alice", "al_ice", "-alice", "alice-", "wg1abc", "al ice", ""]
)
def test_name_rules(bad):
    assert code(lambda: check_name(bad)) == "invalid_name"


def test_good_names():
    for good in ("bob", "alice-2", "a" * 32, "0xdeadbeef"):
        assert check_name(good) == good


def test_record_round_trip_and_verify():
    raw = claim(A)
    rec = decode(raw)
    assert rec.to_bytes() == raw and rec.name == "alice" and rec.key == A.public_key
    assert rec.verify(now=NOW, name="alice") is rec
    assert code(lambda: rec.verify(now=NOW, name="bob")) == "mismatch"
    assert code(lambda: rec.verify(now=NOW + 3601)) == "expired"
    assert code(lambda: decode(claim(A, ttl=MAX_TTL + 3600)).verify(now=NOW)) == "invalid"


def test_tampered_record_fails_verification():
    raw = bytearray(claim(A))
    raw[-80] ^= 1  # inside the address: the signature no longer matches
    rec = decode(bytes(raw)) if True else None
    assert code(lambda: rec.verify(now=NOW)) == "bad_signature"


@given(st.binary(max_size=300))
def test_fuzz_decode(data):
    try:
        decode(data)
    except NameServiceError:
        pass


def test_register_update_lookup(store):
    store.put(claim(A, seq=1), source="s1", now=NOW)
    store.put(claim(A, seq=2, port=5000), source="s1", now=NOW)
    assert decode(store.get("alice", now=NOW)).address.tcp_port == 5000


def test_hijack_rejected(store):
    store.put(claim(A), source="s1", now=NOW)
    assert code(lambda: store.put(claim(B, seq=99), source="s2", now=NOW)) == "taken"
    assert decode(store.get("alice", now=NOW)).key == A.public_key


def test_stale_sequence_rejected(store):
    store.put(claim(A, seq=5), source="s1", now=NOW)
    assert code(lambda: store.put(claim(A, seq=5), source="s1", now=NOW)) == "stale"
    assert code(lambda: store.put(claim(A, seq=4), source="s1", now=NOW)) == "stale"


def test_delete_only_by_owner_and_no_replay_after(store):
    old = claim(A, seq=1)
    store.put(old, source="s1", now=NOW)
    assert code(lambda: store.put(claim(B, seq=9, op=Op.DELETE), source="s2", now=NOW)) == "taken"
    store.put(claim(A, seq=2, op=Op.DELETE), source="s1", now=NOW)
    assert code(lambda: store.get("alice", now=NOW)) == "not_found"
    assert code(lambda: store.put(old, source="s1", now=NOW)) == "stale"  # replayed old claim
    store.put(claim(B, seq=1), source="s2", now=NOW)  # a deleted name is free


def test_expiry_frees_the_name(store):
    store.put(claim(A, ttl=60), source="s1", now=NOW)
    assert code(lambda: store.get("alice", now=NOW + 61)) == "not_found"
    rec = sign(B, Op.CLAIM, "alice", addr(B), seq=1, expires=NOW + 3600)
    store.put(rec.to_bytes(), source="s2", now=NOW + 61)
    assert decode(store.get("alice", now=NOW + 62)).key == B.public_key


def test_quota(store):
    for n in ("one", "two", "three"):
        store.put(claim(A, name=n), source="s1", now=NOW)
    assert code(lambda: store.put(claim(A, name="four"), source="s1", now=NOW)) == "quota"
    store.put(claim(A, name="one", seq=2), source="s1", now=NOW)  # refreshing a held name is fine
    store.put(claim(A, name="four"), source="s2", now=NOW)


def test_forged_signature_rejected(store):
    rec = decode(claim(A))
    forged = type(rec)(rec.op, rec.name, rec.address, rec.seq, rec.expires, B.sign(b"x"))
    assert code(lambda: store.put(forged.to_bytes(), source="s1", now=NOW)) == "bad_signature"


def test_a_claim_cannot_be_replayed_after_another_key_held_the_name(store):
    """A claims and deletes; B holds the name and lets it expire; A's captured first claim is
    still signed and unexpired, but A's sequence numbers were kept across it all: stale."""
    old = claim(A, seq=1, ttl=7 * 24 * 3600)
    store.put(old, source="s1", now=NOW)
    store.put(claim(A, seq=2, op=Op.DELETE), source="s1", now=NOW)
    b_claim = sign(B, Op.CLAIM, "alice", addr(B), seq=1, expires=NOW + 120).to_bytes()
    store.put(b_claim, source="s2", now=NOW + 1)
    later = NOW + 3601  # B's claim and A's tombstone expired: their rows are gone
    assert code(lambda: store.put(old, source="s3", now=later)) == "stale"
    assert store.db.execute("SELECT COUNT(*) FROM names").fetchone()[0] == 0  # expired rows deleted


def test_short_lived_records_and_fast_sources_are_refused(store):
    from warpgate.names import CLAIM_RATE, MIN_TTL

    assert code(lambda: store.put(claim(A, ttl=MIN_TTL - 1), source="s1", now=NOW)) == "too_short"
    for seq in range(2, CLAIM_RATE + 1):  # the refused one above counted too
        store.put(claim(A, seq=seq), source="s1", now=NOW + seq / 100)
    assert code(lambda: store.put(claim(A, seq=99), source="s1", now=NOW + 1)) == "rate_limited"
    store.put(claim(A, seq=99), source="s1", now=NOW + 61)  # a minute later


def test_a_sequence_beyond_sqlite_is_refused_not_a_traceback(store):
    assert code(lambda: store.put(claim(A, seq=2**63), source="s1", now=NOW)) == "malformed"
    store.put(claim(A, seq=2**63 - 1), source="s1", now=NOW)
