"""Engine benchmark over loopback: time to connect, and pipe throughput against raw asyncio.

    .venv/bin/python bench/engine.py [--connects 200] [--megabytes 256]

Targets: median connect <= 5 ms; a TCP pipe (sealed: ChaCha20-Poly1305) carries >= 80% of an
asyncio TLS stream's throughput, in the same run. The raw stream is printed too, as the floor.
Prints one table; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo's tests/

from tests.daemons import self_signed_cert
from warpgate import Node, Plugin, auto_connect, register
from warpgate.pipe import Pipe
from warpgate.plugins.base import AttemptContext

CHUNK = 64 * 1024
UDP_BATCH = 1  # asyncio reads one datagram per readiness event: yield after each, or the buffer overflows


@register
class _UdpBench(Plugin):
    name = "bench_udp"

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        ep = next(ctx.dest.endpoints("udp"))
        return await ctx.connect_udp(ep.host, ep.port)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def bench_connect(n: int) -> list[float]:
    times = []
    a_node, b_node = Node(interfaces=["lo"], families=["ipv4"]), Node(interfaces=["lo"], families=["ipv4"])
    async with a_node as a, b_node as b:
        for _ in range(n):
            t0 = time.perf_counter()
            pipe, _ = await auto_connect(b, a.address, plugins=["direct"])
            times.append((time.perf_counter() - t0) * 1000)
            peer = await a.accept()
            await pipe.close()
            await peer.close()
    return times


def tls_contexts(directory: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for a TLS stream on loopback: the floor a sealed pipe is held to."""
    cert, key = self_signed_cert(directory)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=cert)
    return server, client


async def raw_tcp(total: int, tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None) -> float:
    """A plain asyncio stream, or with ``tls`` an asyncio TLS stream (what TLS 1.3 negotiates here)."""
    done = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = 0
        while got < total:
            data = await reader.read(1 << 20)
            if not data:
                break
            got += len(data)
        done.set_result(None)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls[0] if tls else None)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls[1] if tls else None)
    payload = b"x" * CHUNK
    t0 = time.perf_counter()
    for _ in range(total // CHUNK):
        writer.write(payload)
        await writer.drain()
    await done
    elapsed = time.perf_counter() - t0
    writer.close()
    server.close()
    await server.wait_closed()
    return total / elapsed / 1e6


async def pipe_throughput(total: int, plugin: str, chunk: int) -> tuple[float, float]:
    a_node, b_node = Node(interfaces=["lo"], families=["ipv4"]), Node(interfaces=["lo"], families=["ipv4"])
    async with a_node as a, b_node as b:
        return await throughput_between(a, b, plugin, total, chunk, pace=plugin != "direct")


async def throughput_between(
    a: Node, b: Node, plugin: str, total: int, chunk: int, *, pace: bool
) -> tuple[float, float]:
    """MB/s delivered from B to A over a pipe ``plugin`` makes, and the share lost. ``pace``: yield
    after each datagram (one process plays both ends, and asyncio reads one datagram per event)."""
    accepted = asyncio.ensure_future(a.accept())
    pipe, _ = await auto_connect(b, a.address, plugins=[plugin])
    peer = await accepted
    count = total // chunk
    marker = b"end"

    async def receive() -> int:
        got = 0
        while True:
            try:
                data = await peer.recv(timeout=2)
            except TimeoutError:
                return got
            if data == marker:
                return got
            got += len(data)

    receiver = asyncio.ensure_future(receive())
    payload = b"x" * chunk
    t0 = time.perf_counter()
    for i in range(count):
        await pipe.send(payload)
        if pace and i % UDP_BATCH == UDP_BATCH - 1:
            await asyncio.sleep(0)
    for _ in range(3 if pace else 1):  # over datagrams the end marker may be lost: send it thrice
        await pipe.send(marker)
    got = await receiver
    elapsed = time.perf_counter() - t0
    await pipe.close()
    await peer.close()
    return got / elapsed / 1e6, 1 - got / (count * chunk)


async def raw_udp(total: int, chunk: int) -> tuple[float, float]:
    """Raw datagram socket whose datagrams reach a coroutine through an asyncio.Queue, as the pipe's do."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    class Recv(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            queue.put_nowait(data)

    async def receive() -> int:
        got = 0
        while True:
            try:
                async with asyncio.timeout(2):
                    data = await queue.get()
            except TimeoutError:
                return got
            if data == b"end":
                return got
            got += len(data)

    rt, _ = await loop.create_datagram_endpoint(Recv, local_addr=("127.0.0.1", 0))
    port = rt.get_extra_info("sockname")[1]
    st, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port))
    receiver = asyncio.ensure_future(receive())
    payload = b"x" * chunk
    count = total // chunk
    t0 = time.perf_counter()
    for i in range(count):
        st.sendto(payload)
        if i % UDP_BATCH == UDP_BATCH - 1:
            await asyncio.sleep(0)
    st.sendto(b"end")
    got = await receiver
    elapsed = time.perf_counter() - t0
    st.close()
    rt.close()
    return got / elapsed / 1e6, 1 - got / (count * chunk)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=256)
    args = parser.parse_args()
    total = args.megabytes * 1024 * 1024

    await bench_connect(5)  # warm-up: imports, first sockets
    times = await bench_connect(args.connects)
    raw = await raw_tcp(total)
    with tempfile.TemporaryDirectory() as directory:
        tls = await raw_tcp(total, tls_contexts(directory))
    tcp, _ = await pipe_throughput(total, "direct", CHUNK)
    udp_total = total // 8
    raw_u, raw_loss = await raw_udp(udp_total, 1200)
    pipe_u, pipe_loss = await pipe_throughput(udp_total, "bench_udp", 1200)

    print(f"connect over loopback (auto_connect, direct, {args.connects} runs)")
    median, p90 = statistics.median(times), pct(times, 0.9)
    print(f"  median {median:6.2f} ms   p90 {p90:6.2f} ms   target: median <= 5 ms")
    print(f"TCP throughput, {args.megabytes} MiB in {CHUNK // 1024} KiB messages")
    print(f"  raw asyncio {raw:8.1f} MB/s   pipe {tcp:8.1f} MB/s   ratio {tcp / raw:5.1%}")
    print(f"  TLS stream  {tls:8.1f} MB/s   pipe {tcp:8.1f} MB/s   ratio {tcp / tls:5.1%}   target >= 80%")
    print(f"UDP throughput, {udp_total // 1048576} MiB in 1200-byte datagrams (one process, both ends)")
    print(f"  raw asyncio {raw_u:8.1f} MB/s (loss {raw_loss:.1%})")
    print(f"  pipe        {pipe_u:8.1f} MB/s (loss {pipe_loss:.1%})   ratio {pipe_u / raw_u:5.1%}")


if __name__ == "__main__":
    asyncio.run(main())
