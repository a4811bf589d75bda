import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warpgate import HandshakeError, Identity
from warpgate.errors import RemoteProtocolError
from warpgate.proto import handshake as hs

A, B, C = Identity.generate(), Identity.generate(), Identity.generate()


def run(initiator_identity, responder_identity, expected_key):
    conn_id = os.urandom(16)
    i = hs.Initiator(initiator_identity, expected_key, conn_id, "direct")
    r = hs.Responder(responder_identity)
    challenge = r.receive(i.last)
    proof = i.receive(challenge)
    done = r.receive(proof)
    assert i.receive(done) is None
    return i, r


def test_both_sides_authenticated():
    i, r = run(A, B, B.public_key)
    assert i.done and r.done
    assert r.peer_key == A.public_key
    assert r.hello.purpose == "direct"


def test_wrong_peer_fails_closed_before_proving_anything():
    conn_id = os.urandom(16)
    i = hs.Initiator(A, B.public_key, conn_id, "direct")
    r = hs.Responder(C)
    with pytest.raises(HandshakeError, match="wrong peer"):
        i.receive(r.receive(i.last))
    assert i.last == hs.encode(i.hello)  # no PROOF was produced


def test_forged_challenge_signature():
    i = hs.Initiator(A, B.public_key, os.urandom(16), "direct")
    real = hs.decode(hs.Responder(B).receive(i.last))
    forged = hs.Challenge(real.conn_id, real.share, real.key, C.sign(b"anything"))
    with pytest.raises(HandshakeError, match="signature"):
        i.receive(hs.encode(forged))


def test_replayed_challenge_from_another_session_fails():
    # A challenge recorded from an earlier handshake does not fit a fresh key share.
    i1 = hs.Initiator(A, B.public_key, os.urandom(16), "direct")
    old = hs.decode(hs.Responder(B).receive(i1.last))
    i2 = hs.Initiator(A, B.public_key, old.conn_id, "direct")
    with pytest.raises(HandshakeError):
        i2.receive(hs.encode(old))


def test_forged_proof():
    i = hs.Initiator(A, B.public_key, os.urandom(16), "direct")
    r = hs.Responder(B)
    i.receive(r.receive(i.last))
    with pytest.raises(HandshakeError):
        r.receive(hs.encode(hs.Proof(i.hello.conn_id, C.sign(b"x"))))
    assert not r.done


def test_retransmitted_hello_gets_the_same_answer():
    i = hs.Initiator(A, B.public_key, os.urandom(16), "direct")
    r = hs.Responder(B)
    assert r.receive(i.last) == r.receive(i.last)


@given(st.binary(max_size=200))
def test_fuzz_decode(data):
    try:
        hs.decode(data)
    except RemoteProtocolError:
        pass


def test_a_hello_from_a_key_outside_the_gate_is_refused_before_we_sign():
    from warpgate.errors import NotAllowed

    i = hs.Initiator(A, B.public_key, os.urandom(16), "direct")
    r = hs.Responder(B, allow=lambda key: key == C.public_key)
    with pytest.raises(NotAllowed):
        r.receive(i.last)
    assert r.hello is None and r.challenge is None  # nothing signed, nothing kept
    friend = hs.Initiator(C, B.public_key, os.urandom(16), "direct")
    assert hs.Responder(B, allow=lambda key: key == C.public_key).receive(friend.last)
