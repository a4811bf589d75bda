"""The record layer (``warpgate.proto.record``): sealed frames open only unmodified, once, in the
window; and the handshake gives both ends the same two keys, fresh per handshake."""

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from warpgate.errors import HandshakeError, RemoteProtocolError
from warpgate.identity import Identity
from warpgate.proto import handshake as hs
from warpgate.proto.frames import Kind
from warpgate.proto.record import (
    MAX_UDP_PAYLOAD,
    RecordError,
    ReplayWindow,
    TcpOpener,
    TcpSealer,
    UdpOpener,
    UdpSealer,
)


def pair(window=1024):
    key = os.urandom(32)
    return UdpSealer(key), UdpOpener(key, window)


def refused(opener, datagram):
    with pytest.raises(RecordError) as info:
        opener.open(datagram)
    return info.value.reason


def test_udp_records_open_once_and_only_unmodified():
    seal, opener = pair()
    d = seal.seal(Kind.DATA, b"attack at dawn")
    assert b"attack at dawn" not in d
    assert opener.open(d) == (Kind.DATA, b"attack at dawn")
    assert refused(opener, d) == "replay"
    d2 = seal.seal(Kind.DATA, b"x")
    for i in range(len(d2)):  # any flipped bit anywhere: kind, sequence number, ciphertext, tag
        bad = bytearray(d2)
        bad[i] ^= 0x01
        with pytest.raises(RemoteProtocolError):  # RecordError, or an unknown kind byte
            opener.open(bytes(bad))
    assert opener.open(d2) == (Kind.DATA, b"x")  # the real one still opens afterwards
    assert refused(opener, b"\xd0" + bytes(10)) == "record_short"


def test_the_kind_is_authenticated():
    seal, opener = pair()
    close = bytearray(seal.seal(Kind.DATA, b""))
    close[0] = Kind.CLOSE
    assert refused(opener, bytes(close)) == "record_auth"


def test_other_keys_do_not_open():
    seal, _ = pair()
    _, other = pair()
    assert refused(other, seal.seal(Kind.DATA, b"hi")) == "record_auth"


def test_reordering_within_the_window_is_fine_and_older_is_dropped():
    seal, opener = pair(window=64)
    frames = [seal.seal(Kind.DATA, bytes([i])) for i in range(200)]
    assert opener.open(frames[100])[1] == bytes([100])
    assert opener.open(frames[60])[1] == bytes([60])  # 40 back: inside the window
    assert refused(opener, frames[30]) == "too_old"  # 70 back: outside
    assert refused(opener, frames[60]) == "replay"
    assert opener.open(frames[199])[1] == bytes([199])  # a jump clears the old bits
    assert refused(opener, frames[100]) == "too_old"
    assert opener.open(frames[150])[1] == bytes([150])


def test_a_forged_sequence_number_does_not_move_the_window():
    seal, opener = pair(window=64)
    real = [seal.seal(Kind.DATA, b"r%d" % i) for i in range(3)]
    forged = bytearray(real[0])
    forged[1:9] = (10**12).to_bytes(8, "big")
    assert refused(opener, bytes(forged)) == "record_auth"
    assert [opener.open(d)[1] for d in real] == [b"r0", b"r1", b"r2"]


def test_replay_window_bits():
    w = ReplayWindow(8)
    for seq in (0, 1, 5):
        assert w.check(seq) is None
        w.mark(seq)
    assert w.check(1) == "replay" and w.check(3) is None
    w.mark(20)
    assert w.check(12) == "too_old" and w.check(13) is None and w.check(5) == "too_old"


def test_udp_payload_is_bounded():
    seal, opener = pair()
    assert opener.open(seal.seal(Kind.DATA, bytes(MAX_UDP_PAYLOAD)))[1] == bytes(MAX_UDP_PAYLOAD)
    with pytest.raises(ValueError):
        seal.seal(Kind.DATA, bytes(MAX_UDP_PAYLOAD + 1))


def test_tcp_records_must_come_in_order_unmodified():
    key = os.urandom(32)
    seal, opener = TcpSealer(key), TcpOpener(key)
    h1, s1 = seal.seal(Kind.DATA, b"one")
    h2, s2 = seal.seal(Kind.DATA, b"two")
    assert b"one" not in s1
    with pytest.raises(RecordError):
        opener.open(h2, s2)  # out of order: the implicit number is 0, not 1
    assert opener.open(h1, s1) == b"one"
    with pytest.raises(RecordError):
        opener.open(h1, s1)  # replayed
    assert opener.open(h2, s2) == b"two"


def handshake(i_id, r_id):
    conn_id = os.urandom(16)
    i = hs.Initiator(i_id, r_id.public_key, conn_id, "direct")
    r = hs.Responder(r_id)
    challenge = r.receive(i.last)
    proof = i.receive(challenge)
    assert proof is not None
    done = r.receive(proof)
    assert i.receive(done) is None and i.done and r.done
    return i, r


def test_both_ends_derive_the_same_keys_fresh_per_handshake():
    a, b = Identity.generate(), Identity.generate()
    i, r = handshake(a, b)
    assert i.keys is not None and r.keys is not None
    assert i.keys.send == r.keys.recv and i.keys.recv == r.keys.send and i.keys.send != i.keys.recv
    assert i._ephemeral is None and r._ephemeral is None  # forward secrecy: the private shares are gone
    i2, _ = handshake(a, b)
    assert i2.keys is not None and {i2.keys.send, i2.keys.recv}.isdisjoint({i.keys.send, i.keys.recv})
    assert repr(i.keys) == "Keys()"  # keys never reach a log


def test_a_low_order_share_is_refused():
    """X25519 with the all-zero point gives the all-zero secret (RFC 7748 §6.1): refused."""
    a, b = Identity.generate(), Identity.generate()
    i = hs.Initiator(a, b.public_key, os.urandom(16), "direct")
    hello = hs.decode(i.last)
    assert isinstance(hello, hs.Hello)
    evil = hs.encode(hs.Hello(hello.conn_id, bytes(32), hello.key, hello.purpose))
    r = hs.Responder(b, X25519PrivateKey.generate())
    r.receive(evil)
    t = hs.transcript(hello.conn_id, bytes(32), r.share, a.public_key, b.public_key, "direct")
    with pytest.raises(HandshakeError, match="share is invalid"):
        r.receive(hs.encode(hs.Proof(hello.conn_id, a.sign(b"I" + t))))


def test_hello_is_padded_beyond_any_answer_and_strictly_parsed():
    a, b = Identity.generate(), Identity.generate()
    i = hs.Initiator(a, b.public_key, os.urandom(16), "udp_punch")
    assert len(i.last) == hs.MIN_HELLO
    challenge = hs.Responder(b).receive(i.last)
    cookie = hs.encode(hs.Cookie(os.urandom(16), os.urandom(hs.COOKIE_SIZE)))
    assert len(challenge) < len(i.last) and len(cookie) < len(i.last)  # no amplification
    for bad in (i.last[:-1], i.last[:-1] + b"\x01"):  # short, or padding that is not zeros
        with pytest.raises(RemoteProtocolError):
            hs.decode(bad)


def test_a_cookie_round_trip():
    from warpgate.proto.cookie import Cookies

    a, b = Identity.generate(), Identity.generate()
    i = hs.Initiator(a, b.public_key, os.urandom(16), "direct")
    hello = hs.decode(i.last)
    assert isinstance(hello, hs.Hello)
    jar = Cookies(now=0.0, threshold=3)
    for t in (0.1, 0.2):
        assert not jar.under_load(t)
        jar.started(t)
    jar.started(0.3)
    assert jar.under_load(0.4) and not jar.valid(("192.0.2.1", 5), hello, 0.4)
    reply = i.receive(hs.encode(hs.Cookie(hello.conn_id, jar.make(("192.0.2.1", 5), hello, 0.4))))
    assert reply is not None and reply == i.last
    again = hs.decode(reply)
    assert isinstance(again, hs.Hello) and len(reply) == hs.MIN_HELLO
    assert jar.valid(("192.0.2.1", 5), again, 1.0)
    assert not jar.valid(("192.0.2.1", 6), again, 1.0)  # another source address: no
    assert jar.valid(("192.0.2.1", 5), again, 200.0)  # the previous secret still counts
    assert not jar.valid(("192.0.2.1", 5), again, 400.0)  # two rotations later: expired
    assert not jar.under_load(10.0)  # the load decays
    r = hs.Responder(b)
    assert r.receive(reply)  # the responder takes the HELLO with its cookie
