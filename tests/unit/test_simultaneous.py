"""Simultaneous open: two ends dial each other on one path and exactly one channel comes out."""

import asyncio
import socket

import pytest

from warpgate.channels import UdpEndpoint, tcp_initiate
from warpgate.errors import AttemptFailed, LocalProtocolError
from warpgate.identity import Identity
from warpgate.proto import handshake


def pair() -> tuple[Identity, Identity]:
    a, b = Identity.generate(), Identity.generate()
    return (a, b) if a.public_key < b.public_key else (b, a)


def test_key_order_decides_and_both_ends_agree():
    lo, hi = pair()
    assert handshake.yields(hi.public_key, lo.public_key)
    assert not handshake.yields(lo.public_key, hi.public_key)
    with pytest.raises(LocalProtocolError):
        handshake.yields(lo.public_key, lo.public_key)


async def test_tcp_simultaneous_open_over_one_stream():
    lo, hi = pair()
    s1, s2 = socket.socketpair()
    r1, w1 = await asyncio.open_connection(sock=s1)
    r2, w2 = await asyncio.open_connection(sock=s2)
    conn = bytes(16)
    p_lo, p_hi = await asyncio.gather(
        tcp_initiate(r1, w1, lo, expected_key=hi.public_key, conn_id=conn, purpose="t"),
        tcp_initiate(r2, w2, hi, expected_key=lo.public_key, conn_id=conn, purpose="t"),
    )
    assert p_lo.peer_key == hi.public_key and p_hi.peer_key == lo.public_key
    await p_lo.send(b"one stream")
    assert await p_hi.recv(timeout=2) == b"one stream"
    await p_lo.close()
    await p_hi.close()


@pytest.mark.parametrize("delay_hi", [0.0, 0.05])
async def test_udp_simultaneous_open_gives_one_pipe_per_path(delay_hi):
    lo, hi = pair()
    incoming = []
    e_lo = await UdpEndpoint.bind(("127.0.0.1", 0), lo, lambda p, c: incoming.append(p))
    e_hi = await UdpEndpoint.bind(("127.0.0.1", 0), hi, lambda p, c: incoming.append(p))
    conn = bytes(range(16))

    async def dial_hi():
        await asyncio.sleep(delay_hi)  # a start offset: the two HELLOs cross or not
        return await e_hi.connect(e_lo.local, expected_key=lo.public_key, conn_id=conn, purpose="t")

    try:
        p_lo, p_hi = await asyncio.wait_for(
            asyncio.gather(
                e_lo.connect(e_hi.local, expected_key=hi.public_key, conn_id=conn, purpose="t"), dial_hi()
            ),
            5,
        )
        # One channel on the path, whoever started first; a HELLO that arrived before the other
        # side dialled was answered, and that side's dial then returned the same channel.
        assert e_lo.pipes == {e_hi.local: p_lo} and e_hi.pipes == {e_lo.local: p_hi}
        assert all(p is p_lo or p is p_hi for p in incoming) and len(incoming) == (1 if delay_hi else 0)
        await p_hi.send(b"crossed")
        assert await p_lo.recv(timeout=2) == b"crossed"
    finally:
        e_lo.close()
        e_hi.close()


async def test_a_hello_from_another_key_does_not_take_over_a_dial():
    lo, hi = pair()
    stranger = Identity.generate()
    e_a = await UdpEndpoint.bind(("127.0.0.1", 0), lo, None)
    e_b = await UdpEndpoint.bind(("127.0.0.1", 0), stranger, None)
    try:
        # e_a expects `hi` at e_b's address; the stranger there dials e_a: no pipe may come of it
        dial = asyncio.ensure_future(
            e_a.connect(e_b.local, expected_key=hi.public_key, conn_id=bytes(16), purpose="t")
        )
        with pytest.raises(Exception):  # noqa: B017  (AttemptFailed or a timeout, never a pipe)
            await asyncio.wait_for(
                e_b.connect(e_a.local, expected_key=lo.public_key, conn_id=bytes(16), purpose="t"), 0.5
            )
        assert e_a.pipes == {}
        if dial.done():  # the stranger answered as responder: its CHALLENGE fails the dial closed
            assert isinstance(dial.exception(), AttemptFailed)
            assert "wrong peer" in dial.exception().reason
        dial.cancel()
        await asyncio.gather(dial, return_exceptions=True)
    finally:
        e_a.close()
        e_b.close()


async def test_a_nomination_that_arrives_before_the_callback_is_not_lost():
    lo, hi = pair()
    e_lo = await UdpEndpoint.bind(("127.0.0.1", 0), lo, None)
    e_hi = await UdpEndpoint.bind(("127.0.0.1", 0), hi, lambda p, c: None)
    try:
        p_lo, p_hi = await asyncio.gather(
            e_lo.connect(e_hi.local, expected_key=hi.public_key, conn_id=bytes(16), purpose="t"),
            e_hi.connect(e_lo.local, expected_key=lo.public_key, conn_id=bytes(16), purpose="t"),
        )
        await p_lo.send(b"data counts as nomination")
        assert await p_hi.recv(timeout=2) == b"data counts as nomination"
        assert p_hi.nominated
        chosen = []
        p_hi.on_nominated = chosen.append  # set late, as a plugin handing the pipe on does
        assert chosen == [p_hi]
    finally:
        e_lo.close()
        e_hi.close()


async def test_another_channel_on_a_dialled_path_is_answered_apart():
    """A HELLO with another conn_id from the address we dial (another plugin's dial that rides a
    hole we punched) becomes its own incoming channel; our dial is left alone."""
    lo, hi = pair()
    incoming = []
    e_dialer = await UdpEndpoint.bind(("127.0.0.1", 0), hi, lambda p, c: incoming.append((p, c)))
    e_other = await UdpEndpoint.bind(("127.0.0.1", 0), lo, None)  # answers nothing, only dials
    try:
        punch = asyncio.ensure_future(
            e_dialer.connect(e_other.local, expected_key=lo.public_key, conn_id=bytes(16), purpose="punch")
        )
        rider = await asyncio.wait_for(
            e_other.connect(
                e_dialer.local, expected_key=hi.public_key, conn_id=b"\x01" * 16, purpose="direct"
            ),
            5,
        )
        assert [c for _, c in incoming] == [b"\x01" * 16] and incoming[0][0].plugin == "direct"
        assert not punch.done()  # untouched: it neither failed nor took the other channel
        await rider.send(b"rides")
        assert await incoming[0][0].recv(timeout=2) == b"rides"
        punch.cancel()
        await asyncio.gather(punch, return_exceptions=True)
    finally:
        e_dialer.close()
        e_other.close()


async def test_a_second_attempt_on_a_live_path_fails_and_leaves_the_pipe():
    """A race's loser (or a callee still punching back) dialling the winner's path with another
    conn_id must not start a handshake there: the peer would replace the winner's pipe by the new
    channel (its rule for a restarted peer), and data on the path would go to the loser's."""
    lo, hi = pair()
    incoming = []
    e_lo = await UdpEndpoint.bind(("127.0.0.1", 0), lo, None)
    e_hi = await UdpEndpoint.bind(("127.0.0.1", 0), hi, lambda p, c: incoming.append(p))
    try:
        winner = await e_lo.connect(e_hi.local, expected_key=hi.public_key, conn_id=bytes(16), purpose="t")
        with pytest.raises(AttemptFailed, match="already carries a pipe to this peer"):
            await e_lo.connect(e_hi.local, expected_key=hi.public_key, conn_id=bytes([1]) * 16, purpose="t")
        assert e_lo.drops["dial_path_busy"] == 1
        (theirs,) = incoming
        assert not winner.closed and not theirs.closed
        await winner.send(b"still ours")
        assert await theirs.recv(timeout=2) == b"still ours"
    finally:
        e_lo.close()
        e_hi.close()
