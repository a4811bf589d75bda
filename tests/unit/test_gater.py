"""The connection gate, sans-I/O: what ``Node(allow=...)`` accepts, who it lets in, who is known."""

import pytest

from warpgate.errors import LocalProtocolError
from warpgate.identity import Identity
from warpgate.proto.gater import DIALLED_TTL, Gater

A, B, C = Identity.generate(), Identity.generate(), Identity.generate()


def test_an_open_gate_lets_anyone_in_and_asks_nothing():
    g = Gater()
    assert not g.closed and g.asker("signal", lambda: 0.0) is None
    assert g.admits(A.public_key, 0.0, "signal") and not g.known(A.public_key, 0.0)


@pytest.mark.parametrize(
    "allow", [[A.public_key], {A.node_id}, (A.node_id.upper(),), lambda k: k == A.public_key]
)
def test_keys_node_ids_or_a_callable(allow):
    g = Gater(allow)
    assert g.closed
    assert g.admits(A.public_key, 0.0, "signal") and g.known(A.public_key, 0.0)
    assert not g.admits(B.public_key, 0.0, "signal") and not g.known(B.public_key, 0.0)
    assert g.refused == {"signal": 1}
    ask = g.asker("handshake", lambda: 0.0)
    assert ask is not None and not ask(C.public_key) and g.refused["handshake"] == 1


def test_a_peer_we_dial_may_answer_and_is_known_until_the_ttl():
    g = Gater([A.public_key])
    g.dialled(B.public_key, 0.0)
    assert g.admits(B.public_key, 1.0, "signal") and g.known(B.public_key, 1.0)
    assert not g.admits(B.public_key, DIALLED_TTL + 1, "signal")
    open_gate = Gater()
    open_gate.dialled(C.public_key, 0.0)
    assert open_gate.known(C.public_key, 1.0) and not open_gate.known(A.public_key, 1.0)


def test_a_callable_that_raises_keeps_the_key_out():
    def broken(key):
        raise RuntimeError("user bug")

    g = Gater(broken)
    assert not g.admits(A.public_key, 0.0, "signal") and not g.admits(A.public_key, 0.0, "signal")
    assert g.refused["allow_raised"] == 2 and g.refused["signal"] == 2


@pytest.mark.parametrize("allow", [A.public_key, A.node_id, [1, 2], ["not-a-node-id"], [A.node_id[:-1]]])
def test_a_wrong_allow_is_the_callers_mistake(allow):
    with pytest.raises(LocalProtocolError):
        Gater(allow)
