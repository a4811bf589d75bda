"""An attacker on the path of a pipe (a forwarder that records and injects, real sockets on
loopback): it sees no plaintext, and nothing it forges, tampers with or replays reaches the
application or closes the pipe; each such datagram is dropped and counted under its reason."""

import asyncio
import os

import pytest

from warpgate.channels import UdpEndpoint, tcp_connect, tcp_respond, udp_connect
from warpgate.errors import PipeClosed
from warpgate.identity import Identity
from warpgate.proto.frames import Kind

SECRET = b"the plaintext an eavesdropper wants"
ANSWER = b"and the answer it wants too"


class UdpForwarder(asyncio.DatagramProtocol):
    """Between a client and ``target``: forwards both ways, keeps a copy of every datagram."""

    def __init__(self, target):
        self.target = target
        self.client = None
        self.to_target: list[bytes] = []
        self.to_client: list[bytes] = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if addr == self.target:
            self.to_client.append(data)
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.to_target.append(data)
            self.transport.sendto(data, self.target)

    def inject(self, data):
        """A datagram to the target from the path's own address, as an on-path attacker can."""
        self.transport.sendto(data, self.target)


async def test_udp_pipe_on_a_hostile_path():
    a_id, b_id = Identity.generate(), Identity.generate()
    incoming: asyncio.Queue = asyncio.Queue()
    b = await UdpEndpoint.bind(("127.0.0.1", 0), b_id, lambda pipe, _c: incoming.put_nowait(pipe))
    loop = asyncio.get_running_loop()
    _, mitm = await loop.create_datagram_endpoint(lambda: UdpForwarder(b.local), local_addr=("127.0.0.1", 0))
    port = mitm.transport.get_extra_info("sockname")[1]
    pipe = await udp_connect(
        "127.0.0.1", port, a_id, expected_key=b_id.public_key, conn_id=os.urandom(16), purpose="direct"
    )
    theirs = await incoming.get()
    try:
        await pipe.send(SECRET)
        assert await theirs.recv(timeout=2) == SECRET
        await theirs.send(ANSWER)
        assert await pipe.recv(timeout=2) == ANSWER
        captured = mitm.to_target + mitm.to_client
        assert len(captured) >= 6  # handshake and data both ways went through the attacker
        assert not any(SECRET in d or ANSWER in d for d in captured), "plaintext on the wire"

        sealed = [d for d in mitm.to_target if d[0] == Kind.DATA]
        replayed = sealed[-1]
        tampered = bytearray(sealed[-1])
        tampered[-1] ^= 0x01  # the same number as one seen: refused by the window, unopened
        renumbered = bytearray(sealed[-1])
        renumbered[1:9] = (10**5).to_bytes(8, "big")  # a fresh number: opened, fails its tag
        forged_data = bytes([Kind.DATA]) + (10**6).to_bytes(8, "big") + os.urandom(40)
        forged_close = bytes([Kind.CLOSE]) + (10**6 + 1).to_bytes(8, "big") + os.urandom(16)
        unsealed = bytes([Kind.DATA]) + b"an unsealed frame, as before the record layer"
        bad_ones = (replayed, bytes(tampered), bytes(renumbered), forged_data, forged_close, unsealed)
        for bad in (*bad_ones, b"\xd0short"):
            mitm.inject(bad)
        # sent after the injected datagrams over the same path: once it arrives, they have too
        await pipe.send(b"after the attack")
        assert await theirs.recv(timeout=2) == b"after the attack"  # not one forged message first
        assert not theirs.closed, theirs.close_reason  # the forged CLOSE closed nothing
        assert b.drops["replay"] == 2  # replayed, tampered
        assert b.drops["record_auth"] == 4  # renumbered, forged data, forged close, unsealed
        assert b.drops["record_short"] == 1
        await theirs.send(b"still both ways")
        assert await pipe.recv(timeout=2) == b"still both ways"
    finally:
        await pipe.close()
        await theirs.close()
        b.close()
        mitm.transport.close()


async def test_oversized_handshake_datagrams_are_dropped_before_parsing():
    from warpgate.proto import handshake

    a_id, b_id = Identity.generate(), Identity.generate()
    b = await UdpEndpoint.bind(("127.0.0.1", 0), b_id, lambda pipe, _c: None)
    loop = asyncio.get_running_loop()
    answered = loop.create_future()

    class Sender(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not answered.done():
                answered.set_result(data)

    sender, _ = await loop.create_datagram_endpoint(Sender, remote_addr=b.local)
    try:
        hello = handshake.Initiator(a_id, b_id.public_key, os.urandom(16), "direct").last
        sender.sendto(bytes([Kind.HANDSHAKE]) + hello + bytes(600))  # a HELLO with 600 bytes more
        sender.sendto(bytes([Kind.HANDSHAKE]) + hello)  # the same HELLO, its true size: answered
        reply = await asyncio.wait_for(answered, 2)
        assert reply[0] == Kind.HANDSHAKE  # the CHALLENGE to the second: the first was dropped unread
        assert b.drops["handshake_oversize"] == 1 and b.drops["handshake"] == 0
    finally:
        sender.close()
        b.close()


async def test_tcp_pipe_on_a_hostile_path():
    """A TCP stream cannot resync after an injected frame, so the pipe closes, saying why; what
    was injected never reaches the application."""
    a_id, b_id = Identity.generate(), Identity.generate()
    incoming: asyncio.Queue = asyncio.Queue()
    server = await asyncio.start_server(
        lambda r, w: tcp_respond(r, w, b_id, lambda pipe, _c: incoming.put_nowait(pipe)), "127.0.0.1", 0
    )
    target = server.sockets[0].getsockname()[:2]
    captured: list[bytes] = []
    inject: asyncio.Queue = asyncio.Queue()

    async def relay(reader, writer, record):
        while data := await reader.read(65536):
            record.append(data)
            writer.write(data)
        writer.close()

    async def on_client(reader, writer):
        up_reader, up_writer = await asyncio.open_connection(*target)
        inject.put_nowait(up_writer)
        await asyncio.gather(relay(reader, up_writer, captured), relay(up_reader, writer, captured))

    mitm = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = mitm.sockets[0].getsockname()[1]
    pipe = await tcp_connect(
        "127.0.0.1", port, a_id, expected_key=b_id.public_key, conn_id=os.urandom(16), purpose="direct"
    )
    theirs = await incoming.get()
    try:
        await pipe.send(SECRET)
        assert await theirs.recv(timeout=2) == SECRET
        await theirs.send(ANSWER)
        assert await pipe.recv(timeout=2) == ANSWER
        assert captured and not any(SECRET in d or ANSWER in d for d in captured), "plaintext on the wire"
        up_writer = await inject.get()
        forged = b"forged by the path"
        up_writer.write((1 + len(forged) + 16).to_bytes(4, "big") + bytes([Kind.DATA]) + forged + bytes(16))
        with pytest.raises(PipeClosed, match="does not authenticate"):
            await theirs.recv(timeout=2)
    finally:
        await pipe.close()
        await theirs.close()
        mitm.close()
        server.close()
        await mitm.wait_closed()
        await server.wait_closed()


async def test_under_load_a_hello_gets_a_small_cookie_and_no_signature():
    """A HELLO from an address that never answers (a forged source) costs the responder an HMAC
    and a reply smaller than itself; a real initiator answers the cookie and connects."""
    from warpgate.proto import handshake

    a_id, b_id = Identity.generate(), Identity.generate()
    incoming: asyncio.Queue = asyncio.Queue()
    b = await UdpEndpoint.bind(("127.0.0.1", 0), b_id, lambda pipe, _c: incoming.put_nowait(pipe))
    b.cookies.threshold = 0  # always under load
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue = asyncio.Queue()

    class Victim(asyncio.DatagramProtocol):  # where a forged HELLO's answer would land
        def datagram_received(self, data, addr):
            replies.put_nowait(data)

    victim, _ = await loop.create_datagram_endpoint(Victim, remote_addr=b.local)
    try:
        hello = handshake.Initiator(a_id, b_id.public_key, os.urandom(16), "direct").last
        victim.sendto(bytes([Kind.HANDSHAKE]) + hello)
        reply = await asyncio.wait_for(replies.get(), 2)
        assert len(reply) < len(hello) + 1  # smaller than what came in
        assert isinstance(handshake.decode(reply[1:]), handshake.Cookie)
        assert not b._responders and b.drops["hello_without_cookie"] == 1  # no state, no signature
        pipe = await udp_connect(
            "127.0.0.1",
            b.local[1],
            a_id,
            expected_key=b_id.public_key,
            conn_id=os.urandom(16),
            purpose="direct",
        )
        theirs = await incoming.get()
        await pipe.send(b"through the cookie")
        assert await theirs.recv(timeout=2) == b"through the cookie"
        assert b.drops["hello_without_cookie"] == 2  # the real initiator was asked once too
        await pipe.close()
        await theirs.close()
    finally:
        victim.close()
        b.close()


async def test_under_load_one_source_gets_a_bounded_number_of_signatures():
    """A real address answers every cookie (a cookie proves an address, not good faith): from
    50 ports of one IP, under load, only ``PER_SOURCE`` HELLOs a second get a signed answer."""
    import math

    from warpgate.proto import handshake
    from warpgate.proto.cookie import PER_SOURCE

    a_id, b_id = Identity.generate(), Identity.generate()
    b = await UdpEndpoint.bind(("127.0.0.1", 0), b_id, lambda pipe, _c: None)
    b.cookies.threshold = 0  # always under load
    loop = asyncio.get_running_loop()

    class Answering(asyncio.DatagramProtocol):
        def __init__(self):
            self.init = handshake.Initiator(a_id, b_id.public_key, os.urandom(16), "direct")

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            if isinstance(handshake.decode(data[1:]), handshake.Cookie):
                again = self.init.receive(data[1:])  # the HELLO again, with the cookie
                self.transport.sendto(bytes([Kind.HANDSHAKE]) + again)

    sources = [(await loop.create_datagram_endpoint(Answering, remote_addr=b.local)) for _ in range(50)]
    try:
        t0 = loop.time()
        for transport, proto in sources:
            transport.sendto(bytes([Kind.HANDSHAKE]) + proto.init.last)
        async with asyncio.timeout(10):
            while len(b._responders) + b.drops["hello_source_rate"] < 50:
                await asyncio.sleep(0.01)
        windows = math.ceil(loop.time() - t0) + 1
        assert 0 < len(b._responders) <= PER_SOURCE * windows < 50
        assert b.drops["hello_source_rate"] >= 50 - PER_SOURCE * windows
    finally:
        for transport, _ in sources:
            transport.close()
        b.close()
