"""The agent: a process inside a lab host that drives a real ``warpgate.Node``.

    python -m netsim.hosts.agent --interface wgh1x0-eth0 --stun 203.0.113.10 --broker mqtt://203.0.113.20:1883

Control protocol: ``netsim.model.protocol`` (JSON lines on stdin and stdout, in order).

Outcomes: ``connected`` (the payload came back), ``payload_failed`` (connected, but the echo did
not come back within the deadline, or differed), ``failed`` (no pipe). An exception anywhere is
this trial's recorded error, never the agent's end.

The agent never imports lab state; the runner never imports engine state across namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import asdict
from typing import Any

from netsim.model import protocol
from warpgate import AttemptFailed, Node, Plugin, auto_connect, register
from warpgate import plugins as registry
from warpgate.errors import WarpgateError
from warpgate.events import AttemptEvent
from warpgate.pipe import Pipe
from warpgate.proto.nat import shorthand
from warpgate.proto.timers import Backoff
from warpgate.race import CANCEL_GRACE
from warpgate.retry import retransmit


class Agent:
    def __init__(self, args: argparse.Namespace, control: asyncio.StreamReader | None = None) -> None:
        self.args = args
        self.listener: Node | None = None
        self.control = control

    def node(self) -> Node:
        a = self.args
        return Node(
            interfaces=[a.interface],
            families=["ipv4", "ipv6"],  # a host without IPv6 (most sites) has no IPv6 address
            stun=a.stun,
            brokers=a.broker,
            names_server=a.names,
            turn=a.turn,
            portmap=a.portmap,
        )

    async def listen(self, req: protocol.Listen) -> dict[str, Any]:
        await self.reset(protocol.Reset())
        logging.getLogger("netsim.hosts.agent").info("trial %s: listen", req.trial or "?")

        async def echo(pipe: Pipe) -> None:
            with contextlib.suppress(WarpgateError):
                while True:
                    await pipe.send(await pipe.recv())

        node = self.node()
        node.on_pipe = echo
        t0 = time.perf_counter()
        self.listener = await node.start()
        return {
            "ok": True,
            "address": node.addr_text,
            "public": {k: list(v) for k, v in node.public.items()},
            **measured(node, t0),
        }

    async def reset(self, req: protocol.Reset) -> dict[str, Any]:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        return {"ok": True}

    async def connect(self, req: protocol.Connect) -> dict[str, Any]:
        events: list[AttemptEvent] = []
        reported = asyncio.Event()

        def report(event: AttemptEvent) -> None:
            events.append(event)
            reported.set()

        out: dict[str, Any] = {
            "ok": False,
            "outcome": "failed",
            "winner": None,
            "ms": None,
            "bytes_echoed": 0,
            "error_class": "",
            "error": "",
        }
        node = self.node()
        started = time.perf_counter()
        logging.getLogger("netsim.hosts.agent").info("trial %s: connect", req.trial or "?")
        async with node:
            out |= measured(node, started)
            t0 = time.perf_counter()
            try:
                pipe, plugin = await auto_connect(
                    node,
                    req.address,
                    plugins=list(req.plugins) or None,
                    timeout=float(req.timeout),
                    on_event=report,
                    observe=req.observe,
                    options=req.options,
                )
                out["ms"] = round((time.perf_counter() - t0) * 1000, 3)
                out["winner"] = plugin.name
                out["path"] = pipe.path
                out["transport"] = pipe.proto
                out["family"] = pipe.family
                out["outcome"] = "payload_failed"  # until the echo proves the pipe carries data
                limit = float(req.timeout)
                payload = os.urandom(req.payload)
                out["bytes_echoed"] = await check_echo(pipe, payload, limit)
                out["ok"] = True
                out["outcome"] = "connected"
                if req.pause:
                    out["after_fault"] = await self.after_fault(pipe, payload, limit)
                await pipe.close()
                if req.observe:
                    names = list(req.plugins) or list(registry.available())
                    await all_reported(events, reported, names, req.observe)
            except (WarpgateError, TimeoutError) as exc:
                out["error_class"], out["error"] = describe(exc)
            if node.signal is not None and node.signal.min_rtt is not None:
                out["signal_rtt_ms"] = round(node.signal.min_rtt * 1000, 3)
        out["events"] = [{**asdict(e), "outcome": e.outcome.value} for e in events]
        return out

    async def after_fault(self, pipe: Pipe, payload: bytes, limit: float) -> dict[str, Any]:
        """Tell the runner the pipe is up, wait while it breaks something, check the pipe again."""
        assert self.control is not None
        print(json.dumps(protocol.PAUSED), flush=True)
        line = await self.control.readline()
        if not isinstance(protocol.decode(line or b"{}"), protocol.Resume):
            raise protocol.AgentProtocolError(f"expected resume, got {line[:80]!r}")
        t0 = time.perf_counter()
        try:
            await check_echo(pipe, payload, limit)
        except (WarpgateError, TimeoutError) as exc:
            error_class, error = describe(exc)
            return {"ok": False, "error_class": error_class, "error": error}
        return {"ok": True, "ms": round((time.perf_counter() - t0) * 1000, 3)}


def describe(exc: BaseException) -> tuple[str, str]:
    """An exception as a record's (class, message); the first line, or its repr when it has no
    message (a bare ``TimeoutError``)."""
    return type(exc).__name__, (str(exc).splitlines() or [repr(exc)])[0]


async def all_reported(
    events: list[AttemptEvent], reported: asyncio.Event, plugins: list[str], observe: float
) -> None:
    """Wait until every plugin of the race has its event (losers observed after the winner end
    within ``observe`` seconds, plus the race's grace for a cancelled plugin to stop); the events
    arrive from a task the node owns, each one setting ``reported``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(observe + CANCEL_GRACE + 1.0):
            while {e.plugin for e in events} < set(plugins):
                reported.clear()
                await reported.wait()


async def check_echo(pipe: Pipe, payload: bytes, limit: float) -> int:
    echoed = await echo(pipe, payload, limit)
    if echoed != payload:
        raise EchoMismatch(f"the echo differs from what was sent ({len(echoed)} of {len(payload)} bytes)")
    return len(echoed)


class EchoMismatch(WarpgateError):
    """Connected, but what came back is not what was sent."""


def measured(node: Node, started: float) -> dict[str, Any]:
    """What a node measured while starting: its start-up time, its NAT, its STUN round trip."""
    nat = node.nat
    mapper = node.portmapper
    lease = mapper.lease if mapper is not None else None
    return {
        "portmap": lease.protocol if lease is not None else None,
        "pinhole": node.pinholer.lease.protocol if node.pinholer and node.pinholer.lease else None,
        "portmap_ms": None if lease is None or mapper is None else round(mapper.took * 1000, 3),
        "start_ms": round((time.perf_counter() - started) * 1000, 3),
        "nat": shorthand(nat.udp) if nat is not None else None,
        "stun_rtt_ms": None if nat is None or nat.rtt is None else round(nat.rtt * 1000, 3),
    }


class EchoTimeout(WarpgateError):
    """Connected, but the payload's echo never came back (not the same as "could not connect")."""


async def echo(pipe: Pipe, payload: bytes, limit: float) -> bytes:
    """Send ``payload`` and wait for its echo; over UDP, resend on a schedule until ``limit``."""
    policy = (
        Backoff(initial=0.2, cap=1.0, limit=limit)
        if pipe.proto == "udp"
        else Backoff(initial=limit, tries=1, cap=limit)
    )
    answer = asyncio.ensure_future(pipe.recv())
    try:
        return await retransmit(policy, lambda: pipe.send(payload), answer)
    except TimeoutError:
        raise EchoTimeout(f"connected over {pipe.proto}, but no echo within {limit:.1f} s") from None
    finally:
        answer.cancel()
        await asyncio.gather(answer, return_exceptions=True)


def sabotage(name: str) -> None:
    """Replace plugin ``name`` with one that always fails (to test that ``netsim compare`` notices)."""
    registry._load()
    registry.unregister(name)

    class Broken(Plugin):
        async def attempt(self, ctx: Any) -> Pipe:
            raise AttemptFailed("sabotaged for a regression test")

    Broken.name = name
    register(Broken)


async def bounded(handler: Any, req: protocol.Request) -> dict[str, Any]:
    """Run one command with a deadline, so the runner always gets an answer; on a hang, log where."""
    name = type(req).__name__.lower()
    limit = 2 * float(getattr(req, "timeout", 10)) + 15
    task = asyncio.ensure_future(handler(req))
    done, _ = await asyncio.wait([task], timeout=limit)
    if done:
        exc = task.exception()
        if exc is None:
            result: dict[str, Any] = task.result()
            return result
        # one trial's bug must not end the agent: it becomes this trial's recorded error
        traceback.print_exception(exc, file=sys.stderr)
        return protocol.failure(*describe(exc))
    print(f"agent: {name} still running after {limit:.0f} s; tasks:", file=sys.stderr, flush=True)
    for t in asyncio.all_tasks():
        t.print_stack(file=sys.stderr)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return protocol.failure("AgentTimeout", f"{name} did not finish within {limit:.0f} s")


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=protocol.MAX_LINE + 2)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    agent = Agent(args, reader)
    handlers: dict[type, Any] = {
        protocol.Listen: agent.listen,
        protocol.Connect: agent.connect,
        protocol.Reset: agent.reset,
    }
    print(json.dumps(protocol.READY), flush=True)
    try:
        while line := await reader.readline():
            try:
                req = protocol.decode(line)
            except protocol.AgentProtocolError as exc:
                print(json.dumps(protocol.failure(*describe(exc))), flush=True)
                continue
            if isinstance(req, protocol.Quit):
                break
            handler = handlers.get(type(req))
            if handler is None:
                answer = protocol.failure("AgentProtocolError", f"{type(req).__name__} is not a request here")
            else:
                answer = await bounded(handler, req)
            print(json.dumps(answer), flush=True)
    finally:
        await agent.reset(protocol.Reset())


def main(argv: list[str] | None = None) -> int:
    # the runner sends SIGUSR1 before it gives up on a silent agent: the stacks land in its log
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # the engine's own account of each trial (why a plugin gave up) goes to agent-<site>.log
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    parser = argparse.ArgumentParser(
        prog="python -m netsim.hosts.agent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--interface", required=True)
    parser.add_argument("--stun", action="append", default=[])
    parser.add_argument("--broker", action="append", default=[])
    parser.add_argument("--names")
    parser.add_argument("--turn", action="append", default=[], help="turn://user:pass@host:port")
    parser.add_argument("--portmap", choices=("start", "demand", "off"), default="start")
    parser.add_argument("--sabotage", metavar="PLUGIN", help="make PLUGIN always fail (regression tests)")
    args = parser.parse_args(argv)
    if args.sabotage:
        sabotage(args.sabotage)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
