"""Probes that run *inside* lab hosts: RFC 5780 classification, hairpinning, mapping lifetime.

    python -m netsim.hosts.probe classify --stun 203.0.113.10 --prober 203.0.113.10:7100
    python -m netsim.hosts.probe classify6 --stun 2001:db8::10 --stun2 2001:db8::11 --prober 203.0.113.10:7100
    python -m netsim.hosts.probe serve --ips 203.0.113.10 203.0.113.11        (on the STUN host)

UDP mapping, filtering and port allocation, and the TCP mapping, come from the engine's own
RFC 5780 classifier (``warpgate.discovery.classify``: the code every node runs at start and
``warpgate nat`` prints), so the lab and the engine cannot disagree on what a label means. RFC 5780
has no TCP filtering test (a STUN server cannot open connections), so the prober on the STUN host
connects to the client's mapping from another address (EIF), from another port of the same address
(ADF), or fails (APDF).

IPv6 has no NAT in the lab, only a firewall: ``classify6`` checks that the server sees the host's own
address, then has the prober send to it unasked, from the server's other address (EIF lets it in),
from another port of the same address (ADF does), and to a port that never sent (only an open
router lets that in).

Each command prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

from aioice import stun

from warpgate import discovery

Addr = tuple[str, int]
CHANGE_IP, CHANGE_PORT = 0x4, 0x2


# -- STUN over UDP and TCP (aioice codec) ------------------------------------------------------


def _request(change: int = 0) -> stun.Message:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    if change:
        msg.attributes["CHANGE-REQUEST"] = change
    return msg


def udp_binding(
    sock: socket.socket, dest: Addr, change: int = 0, tries: int = 3, rto: float = 0.2
) -> dict[str, Any] | None:
    """One RFC 5389 binding transaction; None when no answer came (RFC 5780: test failed)."""
    req = _request(change)
    data = bytes(req)
    for _ in range(tries):
        sock.sendto(data, dest)
        deadline = time.monotonic() + rto
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                raw, src = sock.recvfrom(2048)
            except (TimeoutError, OSError):
                break
            try:
                resp = stun.parse_message(raw)
            except ValueError:
                continue
            if resp.transaction_id == req.transaction_id:
                return {
                    "mapped": tuple(resp.attributes["XOR-MAPPED-ADDRESS"]),
                    "source": src,
                    "other": tuple(resp.attributes["OTHER-ADDRESS"])
                    if "OTHER-ADDRESS" in resp.attributes
                    else None,
                }
    return None


def tcp_binding(
    local_port: int, dest: Addr, timeout: float = 3.5, keep: list[socket.socket] | None = None
) -> Addr | None:
    """STUN over TCP from ``local_port``. The default timeout outlasts two lost SYNs (Linux resends
    after 1 s and 3 s), so a lossy wire does not read as "TCP blocked"."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.settimeout(timeout)
    try:
        s.bind(("0.0.0.0", local_port))
        s.connect(dest)
        s.sendall(bytes(_request()))
        head = _recv_exact(s, 20)
        length = struct.unpack("!H", head[2:4])[0]
        resp = stun.parse_message(head + _recv_exact(s, length))
        mapped: Addr = tuple(resp.attributes["XOR-MAPPED-ADDRESS"])
    except (OSError, ValueError, KeyError, struct.error):  # struct: a truncated attribute
        s.close()
        return None
    if keep is not None:
        keep.append(s)
    else:
        s.close()
    return mapped


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def fresh_udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    return s


# -- classification ------------------------------------------------------------------------------


def classify_engine(stun_ip: str) -> dict[str, Any]:
    """UDP mapping, filtering, allocation and the TCP mapping: the engine's own classifier
    (``warpgate.discovery.classify``), the code a node runs at start and ``warpgate nat`` prints."""
    other = (_OTHER[stun_ip], 3479) if stun_ip in _OTHER else None
    found = asyncio.run(discovery.classify((stun_ip, 3478), other=other))
    out = found.as_dict()
    return {"udp": out["udp"], "tcp": out["tcp"], "other": out["other"]}


def tcp_filtering(stun_ip: str, prober: Addr) -> str:
    """RFC 5780 has no TCP filtering test (a STUN server cannot open connections): from a fresh
    port, one connection keeps a mapping while a listener on the same port waits, and the prober
    tries to connect to that mapping from the other address (EIF), from the same address (ADF)."""
    port = _free_tcp_port()
    keep: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        fm = tcp_binding(port, (stun_ip, 3478), keep=keep)
        if fm is None:
            return "blocked"
        # each of the prober's connects waits several of our round trips (a delayed wire), and it
        # makes three at once (a lossy one)
        wait = max(0.6, 4 * (time.monotonic() - t0))
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(8)
        keep.append(listener)
        threading.Thread(target=_drain_accepts, args=(listener,), daemon=True).start()
        for source, verdict in ((_other_ip(stun_ip), "endpoint_independent"), (stun_ip, "address_dependent")):
            ask = {"op": "tcp_connect", "target": list(fm), "from": source, "timeout": wait, "tries": 3}
            if _ask(prober, ask)["ok"]:
                return verdict
        return "address_port_dependent"
    finally:
        for s in keep:
            s.close()


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _drain_accepts(listener: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while True:
            conn, _ = listener.accept()
            conn.close()


_OTHER: dict[str, str] = {}


def _other_ip(stun_ip: str) -> str:
    if stun_ip not in _OTHER:
        with fresh_udp() as s:
            r = udp_binding(s, (stun_ip, 3478))
        if r is None or r["other"] is None:
            raise SystemExit("no OTHER-ADDRESS from the STUN server")
        _OTHER[stun_ip] = r["other"][0]
    return _OTHER[stun_ip]


def _ask(prober: Addr, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    with socket.create_connection(prober, timeout=timeout) as s:
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


def cmd_classify(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.prober.rsplit(":", 1)
    if args.stun2:
        _OTHER[args.stun] = args.stun2  # known in the lab; over UDP-blocked paths it cannot be learned
    out: dict[str, Any] = {}
    # The TCP filtering probe is independent of the engine's tests: run them side by side.
    t = threading.Thread(
        target=lambda: out.__setitem__("tcp_filtering", tcp_filtering(args.stun, (host, int(port))))
    )
    t.start()
    out.update(classify_engine(args.stun))
    t.join()
    if out["tcp"]["filtering"] != "blocked":
        out["tcp"]["filtering"] = out.pop("tcp_filtering")
    else:
        out.pop("tcp_filtering")
    return out


def cmd_classify6(args: argparse.Namespace) -> dict[str, Any]:
    """The IPv6 side of a site: translated or not, filtering, and whether unsolicited packets pass."""
    host, port = args.prober.rsplit(":", 1)
    prober = (host, int(port))
    ip = discovery.local_ip_towards(args.stun)
    with contextlib.ExitStack() as stack:
        sent = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        quiet = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        sent.bind((ip, 0))
        quiet.bind((ip, 0))
        answer = udp_binding(sent, (args.stun, 3478))
        if answer is None:
            return {"blocked": True}
        mapped = answer["mapped"]
        local = sent.getsockname()[:2]
        asks = (
            (sent, mapped, args.stun2, "eif"),
            (sent, mapped, args.stun, "adf"),
            (quiet, (ip, quiet.getsockname()[1]), args.stun, "open"),
        )
        for _, target, source, tag in asks:
            _ask(prober, {"op": "udp_send", "target": list(target), "from": source, "data": tag, "tries": 3})
        got: set[str] = set()
        deadline = time.monotonic() + args.wait  # the window the prober's datagrams must arrive in
        while len(got) < len(asks) and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sent, quiet], [], [], left)
            for sock in ready:
                with contextlib.suppress(OSError):
                    got.add(sock.recv(2048).decode("ascii", "replace"))
    filtering = (
        "endpoint_independent"
        if "eif" in got
        else "address_dependent"
        if "adf" in got
        else "address_port_dependent"
    )
    return {
        "blocked": False,
        "translated": list(mapped) != [local[0], local[1]],
        "filtering": filtering,
        "unsolicited": "open" in got,
    }


# -- hairpinning and mapping lifetime ------------------------------------------------------------


def cmd_hairpin_listen(args: argparse.Namespace) -> dict[str, Any]:
    """Print our mapping, then wait for one datagram and answer it (the far end of a hairpin test)."""
    with fresh_udp() as s:
        r = udp_binding(s, (args.stun, 3478))
        if r is None:
            return {"mapped": None}
        print(json.dumps({"mapped": list(r["mapped"])}), flush=True)
        s.settimeout(args.wait)
        try:
            _, src = s.recvfrom(2048)
        except TimeoutError:
            return {"got": None}
        s.sendto(b"pong", src)
        return {"got": list(src)}


def cmd_hairpin_send(args: argparse.Namespace) -> dict[str, Any]:
    ip, port = args.target.rsplit(":", 1)
    with fresh_udp() as s:
        udp_binding(s, (args.stun, 3478))  # our own mapping exists, as in a real punch
        for _ in range(int(args.wait / 0.2)):
            s.sendto(b"ping", (ip, int(port)))
            s.settimeout(0.2)
            try:
                data, src = s.recvfrom(2048)
            except TimeoutError:
                continue
            if data == b"pong":
                return {"ok": True, "from": list(src)}
    return {"ok": False}


def cmd_lifetime(args: argparse.Namespace) -> dict[str, Any]:
    """Open mappings towards the prober's echo port; it answers each after its delay, unsolicited."""
    host, port = args.prober.rsplit(":", 1)
    socks = []
    for delay in args.after:
        s = fresh_udp()
        s.sendto(json.dumps({"delay": delay}).encode(), (host, int(port) + 1))
        socks.append((delay, s))
    out = {}
    deadline = time.monotonic() + max(args.after) + 2.0
    for delay, s in socks:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, _ = s.recvfrom(2048)
            out[str(delay)] = data == b"late"
        except TimeoutError:
            out[str(delay)] = False
        s.close()
    return {"alive_after": out}


def cmd_reach(args: argparse.Namespace) -> dict[str, Any]:
    """Can this host reach each TCP service, and get a STUN answer over UDP?"""
    out: dict[str, Any] = {}
    for target in args.tcp:
        host, port = target.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            out[f"tcp:{target}"] = True
        except OSError:
            out[f"tcp:{target}"] = False
    for target in args.stun:
        with fresh_udp() as s:
            out[f"stun:{target}"] = udp_binding(s, (target, 3478)) is not None
    return out


# -- the prober (runs on the STUN host) ------------------------------------------------------------


async def _connects(target: Addr, source: str, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, w = await asyncio.open_connection(*target, local_addr=(source, 0))
    except (OSError, TimeoutError):
        return False
    w.close()
    return True


async def serve(ips: list[str], port: int) -> None:
    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = json.loads(await reader.readline())
            answer: dict[str, Any] = {"ok": False}
            if req.get("op") == "tcp_connect":
                target = (str(req["target"][0]), int(req["target"][1]))
                timeout = min(5.0, max(0.2, float(req.get("timeout", 0.6))))
                tries = min(5, max(1, int(req.get("tries", 1))))
                # Several connects at once, each from its own port: a lost SYN or SYN-ACK (a lossy
                # lab wire) costs one of them, not the verdict; filtering drops them all.
                results = await asyncio.gather(
                    *(_connects(target, str(req["from"]), timeout) for _ in range(tries))
                )
                answer = {"ok": any(results), "tries": tries, "connected": sum(results)}
            elif req.get("op") == "udp_send":
                # unasked datagrams from ``from`` (a port of its own): what a firewall lets in
                target = (str(req["target"][0]), int(req["target"][1]))
                source = str(req["from"])
                family = socket.AF_INET6 if ":" in source else socket.AF_INET
                with socket.socket(family, socket.SOCK_DGRAM) as out:
                    out.bind((source, 0))
                    for _ in range(min(5, max(1, int(req.get("tries", 1))))):
                        out.sendto(str(req.get("data", "x"))[:16].encode(), target)
                answer = {"ok": True}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ValueError, KeyError, OSError) as exc:
            print(f"prober: bad request: {exc!r}", file=sys.stderr, flush=True)
        finally:
            writer.close()

    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            try:
                delay = float(json.loads(data)["delay"])
            except (ValueError, KeyError, TypeError):
                return
            # answer later, without any packet from the client in between: does the mapping live?
            loop.call_later(delay, self.transport.sendto, b"late", addr)  # type: ignore[attr-defined]

    servers = [await asyncio.start_server(control, ip, port) for ip in ips]
    await loop.create_datagram_endpoint(Echo, local_addr=(ips[0], port + 1))
    print(f"prober ready on {', '.join(ips)} port {port}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m netsim.hosts.probe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("classify")
    p.add_argument("--stun", required=True)
    p.add_argument("--stun2", help="the STUN server's other address (else learned from OTHER-ADDRESS)")
    p.add_argument("--prober", required=True, help="IP:PORT of the prober's control port")
    p = sub.add_parser("classify6")
    p.add_argument("--stun", required=True, help="the STUN server's IPv6 address")
    p.add_argument("--stun2", required=True, help="its second IPv6 address")
    p.add_argument("--prober", required=True, help="IP:PORT of the prober's control port")
    p.add_argument("--wait", type=float, default=0.5, help="seconds to wait for the prober's datagrams")
    p = sub.add_parser("hairpin-listen")
    p.add_argument("--stun", required=True)
    p.add_argument("--wait", type=float, default=4.0)
    p = sub.add_parser("hairpin-send")
    p.add_argument("--stun", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--wait", type=float, default=3.0)
    p = sub.add_parser("lifetime")
    p.add_argument("--prober", required=True)
    p.add_argument("--after", type=float, nargs="+", required=True)
    p = sub.add_parser("reach")
    p.add_argument("--tcp", nargs="*", default=[], metavar="HOST:PORT")
    p.add_argument("--stun", nargs="*", default=[], metavar="HOST")
    p = sub.add_parser("serve")
    p.add_argument("--ips", nargs="+", required=True)
    p.add_argument("--port", type=int, default=7100)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.ips, args.port))
        return 0
    result = {
        "classify": cmd_classify,
        "classify6": cmd_classify6,
        "hairpin-listen": cmd_hairpin_listen,
        "hairpin-send": cmd_hairpin_send,
        "lifetime": cmd_lifetime,
        "reach": cmd_reach,
    }[args.cmd](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
