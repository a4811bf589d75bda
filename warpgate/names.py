"""The nickname service: a server with SQLite storage, and a client that trusts only signatures.

Protocol: one JSON object per line over TCP. Requests::

    {"op": "put", "record": "<hex NameRecord>"}     claim or delete (the record's op says which)
    {"op": "get", "name": "alice"}

Answers: ``{"ok": true, "record": "<hex>"}`` or ``{"ok": false, "code": "...", "error": "..."}``.

Server rules: the signature must verify; a live name held by another key is ``taken``; a key's
new record for a name needs a higher sequence number than any record of that key for that name
the server ever took, kept while any of them could still verify (``stale`` otherwise), so a
captured claim cannot be replayed after a delete, nor after another key held the name since;
records live between ``MIN_TTL`` and ``MAX_TTL`` and an expired name is free for anyone; expired
rows are deleted. Per source address: at most ``quota`` live names, at most ``CLAIM_RATE`` puts
and ``LOOKUP_RATE`` lookups a minute. The server bounds its connections (``MAX_CONNECTIONS``,
``PER_SOURCE`` from one address; when all are taken, a newcomer takes the slot of an idle
connection of the source that holds the most, so clients that keep connections open cannot
lock others out), a request line (``MAX_LINE`` bytes, JSON depth 16) and the wait for it
(``READ_TIMEOUT``); every malformed request is answered ``bad_request``.

The client bounds an answer's size (``MAX_ANSWER``) and depth before parsing it, verifies every
record and remembers the highest sequence number it saw per name and
key: a server that answers with an older record than one it showed before is caught
(``rollback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from warpgate.errors import LocalProtocolError, WarpgateError
from warpgate.identity import Identity
from warpgate.proto.address import Address
from warpgate.proto.envelope import SignalRejected, check_json_depth
from warpgate.proto.names import MAX_TTL, NameRecord, NameServiceError, Op, check_name, decode, sign

log = logging.getLogger(__name__)

MAX_LINE = 8192
DEFAULT_TTL = 24 * 3600
MIN_TTL = 60
"""A record must live at least this long (seconds): shorter ones would only churn the table."""
CLAIM_RATE = 30
"""Puts one source address may make a minute."""
LOOKUP_RATE = 600
"""Lookups one source address may make a minute (a node looks a name up once per connect)."""
MAX_ANSWER = 4 * MAX_LINE
"""The longest answer line the client reads: a record with a full address fits many times."""
MAX_CONNECTIONS = 256
PER_SOURCE = 16
READ_TIMEOUT = 10.0
"""Seconds a connection may stay silent before the server closes it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    op INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    source TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS seqs (
    name TEXT NOT NULL,
    key BLOB NOT NULL,
    seq INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (name, key)
)
"""


class NameStore:
    """The server's rules over one SQLite file (``:memory:`` for a throw-away one). Time is passed in."""

    def __init__(self, path: str | Path, *, quota: int = 32) -> None:
        try:
            self.db = sqlite3.connect(str(path))
        except sqlite3.Error as exc:  # a missing directory
            raise LocalProtocolError(f"names database {path}: {exc}") from None
        try:
            self.db.executescript(_SCHEMA)
            self.db.commit()
        except sqlite3.Error as exc:  # a file that is not a database
            self.db.close()
            raise LocalProtocolError(f"names database {path}: {exc}") from None
        self.quota = quota
        self._recent: dict[tuple[str, str], deque[float]] = {}
        """(request kind, source) -> when it made that kind of request in the last minute."""

    def close(self) -> None:
        self.db.close()

    def _rate(self, kind: str, source: str, now: float, limit: int) -> None:
        recent = self._recent.setdefault((kind, source), deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= limit:
            raise NameServiceError("rate_limited", f"{source}: {limit} {kind} requests a minute")
        recent.append(now)
        if len(self._recent) > 10_000:  # sources seen in the last minute: drop the idle ones
            for who in [w for w, q in self._recent.items() if not q or q[-1] <= now - 60]:
                del self._recent[who]

    def expire(self, now: float) -> None:
        """Delete expired records, and the sequence numbers no record of theirs can still use."""
        self.db.execute("DELETE FROM names WHERE expires <= ?", (now,))
        self.db.execute("DELETE FROM seqs WHERE expires <= ?", (now,))

    def put(self, raw: bytes, *, source: str, now: float) -> NameRecord:
        self._rate("put", source, now, CLAIM_RATE)
        rec = decode(raw).verify(now=now)
        if rec.seq >= 2**63:  # SQLite integers are signed 64-bit; u64 on the wire
            raise NameServiceError("malformed", "sequence numbers stop at 2**63 - 1")
        if rec.expires < now + MIN_TTL:
            raise NameServiceError("too_short", f"a record lives at least {MIN_TTL} s")
        self.expire(now)
        seen = self.db.execute(
            "SELECT seq FROM seqs WHERE name = ? AND key = ?", (rec.name, rec.key)
        ).fetchone()
        if seen is not None and rec.seq <= seen[0]:
            raise NameServiceError("stale", f"sequence {rec.seq} is not above {seen[0]}")
        row = self.db.execute(
            "SELECT key, op, seq, expires FROM names WHERE name = ?", (rec.name,)
        ).fetchone()
        if row is not None:
            key, op, seq, expires = row
            live = expires > now
            if key != rec.key and live and op == Op.CLAIM:
                raise NameServiceError("taken", f"{rec.name!r} belongs to another key")
            if key == rec.key and rec.seq <= seq:  # a table written before ``seqs`` existed
                raise NameServiceError("stale", f"sequence {rec.seq} is not above {seq}")
        if rec.op is Op.DELETE and (row is None or row[0] != rec.key):
            raise NameServiceError("not_found", f"{rec.name!r} is not yours to delete")
        if rec.op is Op.CLAIM and (row is None or row[0] != rec.key or row[3] <= now):
            held = self.db.execute(
                "SELECT COUNT(*) FROM names WHERE source = ? AND op = ? AND expires > ?",
                (source, Op.CLAIM, now),
            ).fetchone()[0]
            if held >= self.quota:
                raise NameServiceError("quota", f"{source} already holds {held} names")
        self.db.execute(
            "INSERT OR REPLACE INTO names VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rec.name, rec.key, int(rec.op), rec.seq, rec.expires, source, raw),
        )
        # the highest sequence of this key for this name, kept while any record it signed for the
        # name may still verify (the latest expiry among them)
        self.db.execute(
            "INSERT INTO seqs VALUES (?, ?, ?, ?) ON CONFLICT (name, key) DO UPDATE SET "
            "seq = excluded.seq, expires = MAX(seqs.expires, excluded.expires)",
            (rec.name, rec.key, rec.seq, rec.expires),
        )
        self.db.commit()
        return rec

    def get(self, name: str, *, now: float, source: str = "") -> bytes:
        self._rate("get", source, now, LOOKUP_RATE)
        check_name(name)
        row = self.db.execute("SELECT record, op, expires FROM names WHERE name = ?", (name,)).fetchone()
        if row is None or row[1] != Op.CLAIM or row[2] <= now:
            raise NameServiceError("not_found", f"no live record for {name!r}")
        return bytes(row[0])


class NameServer:
    """``async with NameServer(db, host, port) as server:``; ``server.port`` is the bound port."""

    def __init__(
        self,
        db: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        quota: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = NameStore(db, quota=quota)
        self.host, self.port = host, port
        self.clock = clock
        self._server: asyncio.Server | None = None
        self._connections: Counter[str] = Counter()
        self._idle: dict[asyncio.StreamWriter, tuple[str, float]] = {}
        self._reclaimed: set[asyncio.StreamWriter] = set()
        """Connections waiting for their next request: their source and since when."""
        self.refused: Counter[str] = Counter()
        """Connections refused or ended by a bound: ``connections``, ``per_source``, ``timeout``,
        ``reclaimed`` (an idle one closed to admit a newcomer)."""

    async def start(self) -> NameServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.store.close()

    async def __aenter__(self) -> NameServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = str(writer.get_extra_info("peername")[0])
        full = sum(self._connections.values()) >= MAX_CONNECTIONS
        if full and self._connections[source] < PER_SOURCE and self._reclaim(source):
            full = False
        if full or self._connections[source] >= PER_SOURCE:
            why = "connections" if self._connections[source] < PER_SOURCE else "per_source"
            self.refused[why] += 1
            writer.write(
                json.dumps({"ok": False, "code": "busy", "error": f"too many {why}"}).encode() + b"\n"
            )
            writer.close()
            return
        self._connections[source] += 1
        try:
            while True:
                self._idle[writer] = (source, self.clock())
                try:
                    async with asyncio.timeout(READ_TIMEOUT):
                        line = await reader.readline()
                except TimeoutError:
                    self.refused["timeout"] += 1
                    break
                finally:
                    self._idle.pop(writer, None)
                if not line:
                    break
                if len(line) > MAX_LINE:
                    answer: dict[str, Any] = {
                        "ok": False,
                        "code": "too_large",
                        "error": "request line too long",
                    }
                else:
                    answer = self._answer(line, source)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.debug("names: client %s: %s", source, exc)
        finally:
            if writer in self._reclaimed:
                self._reclaimed.discard(writer)  # its slot was given away when it was reclaimed
            else:
                self._connections[source] -= 1
            if self._connections[source] <= 0:
                del self._connections[source]
            writer.close()

    def _reclaim(self, newcomer: str) -> bool:
        """Close one idle connection to admit ``newcomer``: of the source holding the most
        connections (never the newcomer's own), its longest idle. False when none is idle."""
        candidates = [(w, src, since) for w, (src, since) in self._idle.items() if src != newcomer]
        if not candidates:
            return False
        victim, src, _ = max(candidates, key=lambda c: (self._connections[c[1]], -c[2]))
        del self._idle[victim]
        self._connections[src] -= 1  # its slot is the newcomer's now; its handler finds EOF
        self._reclaimed.add(victim)
        victim.transport.abort()
        self.refused["reclaimed"] += 1
        return True

    def _answer(self, line: bytes, source: str) -> dict[str, Any]:
        try:
            check_json_depth(line, 16)
            req = json.loads(line)
            if not isinstance(req, dict):
                raise NameServiceError("bad_request", "a request is a JSON object")
            if req.get("op") == "put":
                rec = self.store.put(bytes.fromhex(str(req["record"])), source=source, now=self.clock())
                return {"ok": True, "record": rec.to_bytes().hex()}
            if req.get("op") == "get":
                record = self.store.get(str(req["name"]), now=self.clock(), source=source)
                return {"ok": True, "record": record.hex()}
            raise NameServiceError("bad_request", f"unknown op {req.get('op')!r}")
        except NameServiceError as exc:
            return {"ok": False, "code": exc.code, "error": str(exc)}
        except (ValueError, KeyError, TypeError, SignalRejected) as exc:
            return {"ok": False, "code": "bad_request", "error": f"malformed request: {exc!r}"[:200]}
        except Exception as exc:  # a bug reached by a request: answered, counted, logged
            self.refused["internal_error"] += 1
            log.error("names: request from %s failed", source, exc_info=exc)
            return {"ok": False, "code": "internal_error", "error": "internal error"}


class NameClient:
    """Talks to one names server (``host:port``) and verifies every record it returns."""

    def __init__(self, server: str, *, timeout: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        host, sep, port = server.rpartition(":")
        if not sep or not port.isdigit():
            raise WarpgateError(f"names server {server!r} is not host:port")
        self.host, self.port = host.strip("[]"), int(port)
        self.timeout = timeout
        self.clock = clock
        self._seen: dict[tuple[str, bytes], int] = {}
        """(name, key) -> the highest sequence number a verified lookup returned."""

    async def _call(self, request: dict[str, Any]) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_ANSWER)
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    line = await reader.readline()  # ValueError past MAX_ANSWER, before any parsing
                    check_json_depth(line, 16)  # json.loads would recurse first
                    answer = json.loads(line or b"null")
                finally:
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise NameServiceError("unreachable", f"names server {self.host}:{self.port}: {exc}") from exc
        except (ValueError, SignalRejected) as exc:
            raise NameServiceError(
                "bad_answer", f"names server sent a malformed answer: {exc}"[:200]
            ) from None
        if not isinstance(answer, dict):
            raise NameServiceError("bad_answer", "names server sent no answer")
        if not answer.get("ok"):
            raise NameServiceError(str(answer.get("code", "refused")), str(answer.get("error", "refused")))
        try:
            return bytes.fromhex(str(answer["record"]))
        except (KeyError, ValueError) as exc:
            raise NameServiceError("bad_answer", "names server answer has no record") from exc

    async def register(
        self, identity: Identity, address: Address, name: str, *, ttl: int = DEFAULT_TTL
    ) -> NameRecord:
        now = self.clock()
        rec = sign(
            identity, Op.CLAIM, name, address, seq=int(now * 1000), expires=int(now) + min(ttl, MAX_TTL)
        )
        await self._call({"op": "put", "record": rec.to_bytes().hex()})
        return rec

    async def delete(self, identity: Identity, address: Address, name: str) -> None:
        now = self.clock()
        rec = sign(identity, Op.DELETE, name, address, seq=int(now * 1000), expires=int(now) + MAX_TTL)
        await self._call({"op": "put", "record": rec.to_bytes().hex()})

    async def lookup_record(self, name: str) -> NameRecord:
        check_name(name)
        rec = decode(await self._call({"op": "get", "name": name}))
        if rec.op is not Op.CLAIM:
            raise NameServiceError("not_found", f"{name!r} was deleted")
        rec.verify(now=self.clock(), name=name)
        seen = self._seen.get((name, rec.key))
        if seen is not None and rec.seq < seen:
            raise NameServiceError(
                "rollback",
                f"the server answered {name!r} with sequence {rec.seq}, older than {seen} seen before",
            )
        if len(self._seen) >= 4096 and (name, rec.key) not in self._seen:
            self._seen.pop(next(iter(self._seen)))
        self._seen[(name, rec.key)] = rec.seq
        return rec

    async def lookup(self, name: str) -> Address:
        """The verified address registered for ``name``."""
        return (await self.lookup_record(name)).address
