"""random_probe's PROBE frame: a probe naming a dial's conn_id, from the dialled peer, makes that
dial send its HELLO at once; any other probe is counted and changes nothing (a stranger cannot
make us send)."""

import asyncio

import pytest

from warpgate.channels import UdpEndpoint
from warpgate.identity import Identity
from warpgate.proto import frames, timers
from warpgate.proto.frames import Kind


async def test_only_a_probe_naming_the_dial_hurries_it():
    me, peer_key = Identity.generate(), Identity.generate().public_key
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    peer = silent.get_extra_info("sockname")
    ep = await UdpEndpoint.bind(("127.0.0.1", 0), me, None, 16)
    hellos = asyncio.Queue()
    real = ep.sendto

    def spy(data, addr):
        if data[0] == Kind.HANDSHAKE:
            hellos.put_nowait(addr)
        real(data, addr)

    ep.sendto = spy
    conn_id = bytes(range(16))
    slow = timers.Backoff(initial=30.0, cap=30.0, tries=2)  # no retransmission during the test
    dial = asyncio.ensure_future(
        ep.connect(peer, expected_key=peer_key, conn_id=conn_id, purpose="t", backoff=slow)
    )
    try:
        assert await asyncio.wait_for(hellos.get(), 5) == peer  # the first HELLO
        ep.datagram_received(frames.udp_frame(Kind.PROBE, bytes(16)), peer)  # another attempt's probe
        ep.datagram_received(frames.udp_frame(Kind.PROBE, conn_id), ("127.0.0.1", 9))  # from a stranger
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(hellos.get(), 0.3)
        assert ep.drops["probe"] == 2
        ep.datagram_received(frames.udp_frame(Kind.PROBE, conn_id), peer)
        assert await asyncio.wait_for(hellos.get(), 5) == peer  # sent at once, not in 30 s
    finally:
        dial.cancel()
        await asyncio.gather(dial, return_exceptions=True)
        ep.close()
        silent.close()
