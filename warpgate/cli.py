"""``warpgate`` command line: run a node, connect to one like netcat, list plugins, read addresses."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warpgate import __version__, argtypes, portmap
from warpgate import plugins as registry
from warpgate.errors import (
    AddressError,
    ConnectError,
    IdentityError,
    LocalProtocolError,
    PluginError,
    WarpgateError,
)
from warpgate.events import AttemptEvent
from warpgate.identity import Identity
from warpgate.names import NameClient, NameServer
from warpgate.node import PORTMAP_MODES, Node
from warpgate.pipe import Pipe
from warpgate.proto.address import TEXT_PREFIX, Address, parse
from warpgate.proto.names import MAX_TTL, NameServiceError
from warpgate.proto.nat import shorthand, site_toml
from warpgate.race import auto_connect


def _node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i",
        "--interface",
        action="append",
        dest="interfaces",
        metavar="NAME",
        help="listen on this interface (repeatable; default: every non-loopback one)",
    )
    p.add_argument("-p", "--port", type=argtypes.port, default=0, help="TCP and UDP port (0: any free one)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("-4", dest="families", action="store_const", const=("ipv4",), help="IPv4 only")
    only.add_argument("-6", dest="families", action="store_const", const=("ipv6",), help="IPv6 only")
    p.add_argument(
        "--key",
        metavar="PATH",
        help="identity key file (created 0600 if missing, in a directory that exists; default: ephemeral)",
    )
    p.add_argument(
        "--broker",
        action="append",
        dest="brokers",
        metavar="URL",
        default=[],
        help="signal broker mqtt://host:port (repeatable); enables reverse connect and punching",
    )
    p.add_argument(
        "--turn",
        action="append",
        default=[],
        metavar="URL",
        help="TURN relay turn://user:pass@host[:port][?transport=udp|tcp] or turns://... (repeatable)",
    )
    p.add_argument(
        "--names-server", metavar="HOST:PORT", help="nickname server, to resolve and register names"
    )
    p.add_argument(
        "--stun",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="STUN server to learn the public address from (repeatable)",
    )
    p.add_argument(
        "--portmap",
        choices=PORTMAP_MODES,
        default="start",
        help="ask the gateway for a port mapping (PCP, NAT-PMP, UPnP IGD) at start, only when a peer "
        "asks, or never; at start also for an IPv6 pinhole (PCP, UPnP IGD v2)",
    )
    p.add_argument(
        "--portmap-lease",
        type=argtypes.whole(1, 2**32 - 1),
        default=portmap.LEASE,
        metavar="SECONDS",
        help="lease asked for; refreshed at half",
    )
    p.add_argument(
        "--allow",
        action="append",
        type=argtypes.node_id,
        metavar="NODE_ID",
        help="only this node may signal us, be dialled back or hold a pipe (repeatable; default: anyone)",
    )


def _make_node(args: argparse.Namespace) -> Node:
    return Node(
        port=args.port,
        interfaces=args.interfaces,
        families=args.families or ("ipv4", "ipv6"),
        key_path=args.key,
        brokers=args.brokers,
        names_server=args.names_server,
        nickname=getattr(args, "nickname", None),
        stun=args.stun,
        turn=args.turn,
        portmap=args.portmap,
        portmap_lease=args.portmap_lease,
        allow=args.allow,
    )


def _check_key_path(args: argparse.Namespace) -> None:
    """A key file's directory must exist: a mistyped path is refused before anything starts."""
    if args.key is not None and not Path(args.key).exists() and not Path(args.key).parent.is_dir():
        raise IdentityError(f"--key {args.key}: directory {Path(args.key).parent} does not exist")


def _warn_unreached(node: Node) -> None:
    """Say at start which of the given servers did not answer (the node goes on without them)."""
    if node.signal is not None:
        for link in node.signal.links.values():
            if not link.connected.is_set():
                print(
                    f"# warning: --broker {link.url} not reached ({link.last_error}); retrying",
                    file=sys.stderr,
                    flush=True,
                )
    if node.stun_servers and not node.discovered:
        said = ", ".join(f"{host}:{port}" for host, port in node.stun_servers)
        print(f"# warning: no --stun server answered ({said})", file=sys.stderr, flush=True)


def _out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cmd_node(args: argparse.Namespace) -> int:
    async def serve(pipe: Pipe) -> None:
        print(f"# pipe from {pipe.peer_id} via {pipe.plugin} ({pipe.proto})", file=sys.stderr, flush=True)
        with contextlib.suppress(WarpgateError):
            while True:
                data = await pipe.recv()
                _out(data)
                if args.echo:
                    await pipe.send(data)

    _check_key_path(args)
    node = _make_node(args)
    node.on_pipe = serve
    async with node:
        print(node.addr_text, flush=True)
        print(f"# node {node.node_id} on port {node.port}; Ctrl-C stops it", file=sys.stderr, flush=True)
        _warn_unreached(node)
        lease = node.portmapper.lease if node.portmapper is not None else None
        if lease is not None:
            print(
                f"# gateway mapping by {lease.protocol}: {lease.external_ip} udp {lease.udp} tcp {lease.tcp}"
                f" (lease {lease.lifetime} s)",
                file=sys.stderr,
                flush=True,
            )
        hole = node.pinholer.lease if node.pinholer is not None else None
        if hole is not None:
            print(
                f"# IPv6 pinhole by {hole.protocol}: [{hole.external_ip}] udp {hole.udp} tcp {hole.tcp}"
                f" (lease {hole.lifetime} s)",
                file=sys.stderr,
                flush=True,
            )
        await _until_signalled()
    return 0


async def cmd_connect(args: argparse.Namespace) -> int:
    dest: Address | str = args.address
    if args.address.strip().lower().startswith(TEXT_PREFIX) or not args.names_server:
        dest = parse(args.address)  # AddressError before anything is started
    _check_key_path(args)
    node = _make_node(args)
    async with node:
        _warn_unreached(node)
        events: list[AttemptEvent] = []
        t0 = time.perf_counter()
        pipe, plugin = await auto_connect(
            node, dest, plugins=args.plugin, timeout=args.timeout, on_event=events.append
        )
        elapsed = (time.perf_counter() - t0) * 1000
        where = f"{pipe.proto} {pipe.remote[0]}:{pipe.remote[1]}"
        print(
            f"# connected via {plugin.name} ({where}) in {elapsed:.1f} ms",
            file=sys.stderr,
            flush=True,
        )
        if args.verbose:
            for ev in events:
                print(
                    f"#   {ev.plugin}: {ev.outcome.value} {ev.start_ms:.1f}-{ev.end_ms:.1f} ms {ev.reason}",
                    file=sys.stderr,
                )
        async with pipe:
            return await _netcat(pipe, args.wait)


PEER_ENDED = ("closed by the peer", "the connection ended")
"""Close reasons that are the peer's ordinary goodbye (exit 0, as netcat does); others exit 1."""


async def _netcat(pipe: Pipe, wait: float) -> int:
    """stdin to the pipe, the pipe to stdout; ends when the pipe closes, or when stdin has ended
    and the peer has been quiet for ``wait`` seconds."""
    received = [0]
    out = asyncio.get_running_loop().create_task(_pump_out(pipe, received))
    stdin = await _Stdin.open()
    try:
        while True:
            read = asyncio.ensure_future(stdin.read())
            await asyncio.wait([read, out], return_when=asyncio.FIRST_COMPLETED)
            if out.done():  # the pipe closed under us: say why, stop reading
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)
                break
            chunk = read.result()
            if not chunk:
                while not out.done():  # stdin ended: print replies until the peer is quiet
                    before = received[0]
                    await asyncio.wait([out], timeout=wait)
                    if received[0] == before:
                        return 0
                break
            await pipe.send(chunk)
    finally:
        stdin.close()
        out.cancel()
        await asyncio.gather(out, return_exceptions=True)
    reason = pipe.close_reason or "closed"
    print(f"# pipe closed: {reason}", file=sys.stderr, flush=True)
    return 0 if reason in PEER_ENDED else 1


class _Stdin:
    """stdin read through the event loop, so Ctrl-C and a closed pipe end the wait at once.

    A pipe, socket or terminal is watched by the loop; a regular file or ``/dev/null`` cannot be
    (epoll refuses them) but never blocks either, so it is read directly."""

    def __init__(self, reader: asyncio.StreamReader | None, transport: asyncio.BaseTransport | None) -> None:
        self.reader = reader
        self.transport = transport

    @classmethod
    async def open(cls) -> _Stdin:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 16)
        # a duplicate, so closing the transport leaves fd 0 itself open
        dup = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
        try:
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), dup)
        except (ValueError, OSError):  # a regular file or /dev/null
            dup.close()
            return cls(None, None)
        return cls(reader, transport)

    async def read(self) -> bytes:
        if self.reader is None:
            return os.read(sys.stdin.fileno(), 65536)
        return await self.reader.read(65536)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            # the loop made the shared file description non-blocking; give the shell it back as it was
            with contextlib.suppress(OSError):
                os.set_blocking(sys.stdin.fileno(), True)


async def _pump_out(pipe: Pipe, received: list[int]) -> None:
    with contextlib.suppress(WarpgateError):
        while True:
            data = await pipe.recv()
            received[0] += len(data)
            _out(data)


async def cmd_plugins(args: argparse.Namespace) -> int:
    from importlib.metadata import packages_distributions

    shipped_by = packages_distributions()  # one scan of the installed packages, not one per plugin
    rows = []
    for name, cls in registry.available().items():
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        top = cls.__module__.split(".")[0]
        rows.append((name, ",".join(shipped_by.get(top, [top])), doc[0] if doc else ""))
    for name, bad in registry.broken().items():
        rows.append((name, bad.package, f"NOT LOADED ({bad.target}): {bad.reason}"))
    width = max((len(r[1]) for r in rows), default=8)
    for name, package, text in rows:
        print(f"{name:14} {package:{width}}  {text}")
    return 0


async def cmd_address(args: argparse.Namespace) -> int:
    addr = parse(args.address)
    print(f"node id   {addr.node_id}")
    print(f"bytes     {len(addr.to_bytes())}")
    print(f"ports     tcp {addr.tcp_port}  udp {addr.udp_port}")
    for i, iface in enumerate(addr.interfaces):
        print(
            f"iface {i}   private {iface.private4 or '-'} {iface.private6 or '-'}  "
            f"public {iface.public4 or '-'} {iface.public6 or '-'}  nat {iface.nat.name}"
        )
    for b in addr.brokers:
        print(f"broker    {b}")
    return 0


async def cmd_nat(args: argparse.Namespace) -> int:
    """Start a node with the STUN server, print what its discovery found (RFC 4787 axes)."""
    node = Node(
        interfaces=args.interfaces,
        port=args.port,
        stun=args.stun,
        discovery_timeout=args.timeout,
        portmap="demand",  # probed below (no mapping is made), to report what the gateway offers
    )
    async with node:
        found = node.nat
        if found is None:
            raise WarpgateError(f"no STUN server answered ({', '.join(args.stun)})")
        if args.export is not None:
            note = (
                f"warpgate nat --export: measured on {socket.gethostname()} at "
                f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} against {', '.join(args.stun)}\n"
                f"udp: {shorthand(found.udp)}; tcp: {shorthand(found.tcp)}"
            )
            try:
                text = site_toml(found.udp, found.tcp, args.site, note)
            except ValueError as exc:
                raise WarpgateError(str(exc)) from None
            Path(args.export).write_text(text)
            print(f"wrote {args.export}: [sites.{args.site}] (replay it: netsim verify {args.export})")
        offers = await node.portmapper.probe() if node.portmapper is not None else {}
        # an IPv6 STUN server given (--stun '[2001:db8::10]'): does the IPv6 path work, untranslated?
        six = next(iter(node.public6.values()), None)
        if args.json:
            print(
                json.dumps(
                    {"port": node.port, **found.as_dict(), "port_mapping": offers, "ipv6": six and six[0]}
                )
            )
            return 0
        print(f"node port  {node.port}")
        print(f"udp        {shorthand(found.udp):30} {found.udp.name}")
        print(f"tcp        {shorthand(found.tcp):30} (RFC 5780 has no TCP filtering test)")
        for what, mapped in (("public udp", found.mapped_udp), ("public tcp", found.mapped_tcp)):
            print(f"{what} {mapped[0]}:{mapped[1]}" if mapped else f"{what} -")
        if node.portmapper is None:
            print("port map   - (no default route through these interfaces: no gateway to ask)")
        else:
            gateway = node.portmapper.gateway
            said = ", ".join(f"{k} ({v})" for k, v in offers.items())
            print(f"port map   gateway {gateway}: {said or 'answers none of PCP, NAT-PMP, UPnP IGD'}")
        if six is not None:
            print(f"ipv6       {six[0]} reaches the STUN server as itself (a firewall at most, no NAT66)")
        elif any(":" in host for host, _ in node.stun_servers):
            print("ipv6       - (no IPv6 STUN server saw this host's own address)")
        if found.other is None:
            print("note       the server has no second address: mapping and filtering may be unknown")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    """Two nodes on loopback: race the plugins, echo a message, show every attempt."""
    async with Node(interfaces=["lo"]) as server, Node(interfaces=["lo"]) as client:
        print(f"server {server.node_id[:12]}  address {server.addr_text}")
        print(f"client {client.node_id[:12]}")
        events: list[AttemptEvent] = []
        t0 = time.perf_counter()
        pipe, plugin = await auto_connect(client, server.addr_bytes, on_event=events.append)
        elapsed = (time.perf_counter() - t0) * 1000
        peer = await server.accept()
        await pipe.send(b"hello through warpgate")
        await peer.send(await peer.recv(timeout=5))
        reply = await pipe.recv(timeout=5)
        print(f"connected via {plugin.name} over {pipe.proto} in {elapsed:.2f} ms; echo: {reply.decode()}")
        print(f"{'plugin':12} {'outcome':15} {'start ms':>9} {'end ms':>9}  detail")
        for ev in events:
            detail = ev.reason or f"{ev.local} -> {ev.remote}"
            print(f"{ev.plugin:12} {ev.outcome.value:15} {ev.start_ms:9.2f} {ev.end_ms:9.2f}  {detail}")
        await pipe.close()
    return 0


async def cmd_names_server(args: argparse.Namespace) -> int:
    db = Path(args.db)
    if str(db) != ":memory:" and not db.parent.is_dir():
        raise LocalProtocolError(f"--db {args.db}: directory {db.parent} does not exist")
    async with NameServer(args.db, args.host, args.port, quota=args.quota) as server:
        print(f"listening on {args.host}:{server.port}", flush=True)
        serve = asyncio.ensure_future(server.serve_forever())
        await _until_signalled()
        serve.cancel()
        await asyncio.gather(serve, return_exceptions=True)
    return 0


async def cmd_name(args: argparse.Namespace) -> int:
    client = NameClient(args.server)
    if args.action == "lookup":
        addr = await client.lookup(args.name)
        print(addr.to_text())
        return 0
    if not args.key or not args.address:
        raise LocalProtocolError(f"name {args.action} needs --key (the owner's key file) and --address")
    ident = Identity.load(args.key)
    addr = parse(args.address)
    if args.action == "register":
        rec = await client.register(ident, addr, args.name, ttl=args.ttl)
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rec.expires))
        print(f"registered {rec.name} -> {addr.node_id} until {until} UTC")
    else:
        await client.delete(ident, addr, args.name)
        print(f"deleted {args.name}")
    return 0


def _site_name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", text):
        raise argparse.ArgumentTypeError("a site name is 1-40 of a-z, 0-9 and '-'")
    return text


class _Help(argparse.HelpFormatter):
    """Shows each option's default, unless its help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
            or isinstance(default, tuple)
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Subparsers:
    """Every subcommand also takes ``-v`` after its name (``warpgate plugins -v``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self.inner.add_parser(name, formatter_class=_Help, **kw)
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log to stderr"
        )
        return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warpgate",
        description="NAT traversal: race every strategy, keep one pipe.",
        formatter_class=_Help,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens to stderr")
    parser.add_argument("--version", action="version", version=f"warpgate {__version__}")
    sub = _Subparsers(parser.add_subparsers(dest="command", required=True))

    p = sub.add_parser("node", help="run a node; prints its address first, then what peers send")
    _node_args(p)
    p.add_argument("--echo", action="store_true", help="send every message back to its sender")
    p.add_argument("--nickname", help="register this name for the node (needs --names-server)")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("connect", help="connect to ADDR: stdin to the pipe, the pipe to stdout")
    p.add_argument("address", help="the peer's text address (wg1...), or a nickname with --names-server")
    _node_args(p)
    p.add_argument("--plugin", action="append", metavar="NAME", help="race only these plugins (repeatable)")
    p.add_argument(
        "--timeout", type=argtypes.seconds, default=10.0, help="give up connecting after this many seconds"
    )
    p.add_argument(
        "--wait",
        type=argtypes.seconds_or_zero,
        default=1.0,
        help="after stdin ends, wait for replies until the peer is quiet this long (s)",
    )
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("plugins", help="list the registered traversal plugins")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("nat", help="classify this host's NAT (RFC 5780 against a STUN server)")
    p.add_argument(
        "--stun", action="append", required=True, metavar="HOST[:PORT]", help="STUN server (repeatable)"
    )
    p.add_argument("-i", "--interface", action="append", dest="interfaces", metavar="NAME")
    p.add_argument(
        "-p", "--port", type=argtypes.port, default=0, help="the node's port (default: any free one)"
    )
    p.add_argument("--timeout", type=argtypes.seconds, default=3.0, help="seconds discovery may take")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument(
        "--export",
        metavar="FILE.toml",
        help="also write the behaviour as a lab site ([sites.NAME] of a netsim scenario)",
    )
    p.add_argument("--site", default="measured", type=_site_name, help="the site's name in --export")
    p.set_defaults(func=cmd_nat)

    p = sub.add_parser("demo", help="two nodes on loopback connect, echo a message and show the race")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("names-server", help="run the nickname server (SQLite storage)")
    p.add_argument("--db", default="names.sqlite", help="SQLite file (default: names.sqlite)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port", type=argtypes.port, default=5300, help="TCP port (0: any free one; printed first)"
    )
    p.add_argument(
        "--quota", type=argtypes.whole(1), default=32, help="live names one source address may hold"
    )
    p.set_defaults(func=cmd_names_server)

    p = sub.add_parser("name", help="register, look up or delete a nickname")
    p.add_argument("action", choices=["register", "lookup", "delete"])
    p.add_argument("name")
    p.add_argument("--server", required=True, metavar="HOST:PORT", help="names server")
    p.add_argument("--key", metavar="PATH", help="owner's key file (register, delete)")
    p.add_argument("--address", metavar="ADDR", help="the address to bind the name to (register, delete)")
    p.add_argument(
        "--ttl",
        type=argtypes.whole(1, MAX_TTL),
        default=24 * 3600,
        help="seconds until the record expires",
    )
    p.set_defaults(func=cmd_name)

    p = sub.add_parser("address", help="decode and show an address")
    p.add_argument("address")
    p.set_defaults(func=cmd_address)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argtypes.join_values(argv, argtypes.numeric_options(parser)))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        rc: int = asyncio.run(args.func(args))
        return rc
    except (AddressError, PluginError, LocalProtocolError, IdentityError) as exc:  # bad input: exit 2
        print(f"warpgate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except NameServiceError as exc:
        print(f"warpgate: {exc}", file=sys.stderr)
        return 2 if exc.code in ("invalid_name", "mismatch") else 1
    except ConnectError as exc:
        print(f"warpgate: {exc}", file=sys.stderr)
        return 1
    except WarpgateError as exc:
        print(f"warpgate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a port taken, a file that cannot be read: said, not a traceback
        print(f"warpgate: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
