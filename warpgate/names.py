"""The nickname service: a server with SQLite storage, and a client that trusts only signatures.

Protocol: one JSON object per line over TCP. Requests::

    {"op": "put", "record": "<hex NameRecord>"}     claim or delete (the record's op says which)
    {"op": "get", "name": "alice"}

Answers: ``{"ok": true, "record": "<hex>"}`` or ``{"ok": false, "code": "...", "error": "..."}``.

Server rules: the signature must verify; a live name held by another key is ``taken``; the owner's
new record needs a higher sequence number (``stale`` otherwise); a delete is a signed record too and
stays as a tombstone, so an old claim cannot be replayed after it; records expire (at most
``MAX_TTL`` ahead) and an expired name is free for anyone; one source address holds at most
``quota`` live names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from warpgate.errors import WarpgateError
from warpgate.identity import Identity
from warpgate.proto.address import Address
from warpgate.proto.names import MAX_TTL, NameRecord, NameServiceError, Op, check_name, decode, sign

log = logging.getLogger(__name__)

MAX_LINE = 8192
DEFAULT_TTL = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    op INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    source TEXT NOT NULL,
    record BLOB NOT NULL
)
"""


class NameStore:
    """The server's rules over one SQLite file (``:memory:`` for a throw-away one). Time is passed in."""

    def __init__(self, path: str | Path, *, quota: int = 32) -> None:
        self.db = sqlite3.connect(str(path))
        self.db.execute(_SCHEMA)
        self.db.commit()
        self.quota = quota

    def close(self) -> None:
        self.db.close()

    def put(self, raw: bytes, *, source: str, now: float) -> NameRecord:
        rec = decode(raw).verify(now=now)
        row = self.db.execute(
            "SELECT key, op, seq, expires FROM names WHERE name = ?", (rec.name,)
        ).fetchone()
        if row is not None:
            key, op, seq, expires = row
            live = expires > now
            if key != rec.key and live and op == Op.CLAIM:
                raise NameServiceError("taken", f"{rec.name!r} belongs to another key")
            if key == rec.key and rec.seq <= seq:
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
        self.db.commit()
        return rec

    def get(self, name: str, *, now: float) -> bytes:
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
        try:
            while line := await reader.readline():
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
            writer.close()

    def _answer(self, line: bytes, source: str) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise NameServiceError("bad_request", "a request is a JSON object")
            if req.get("op") == "put":
                rec = self.store.put(bytes.fromhex(str(req["record"])), source=source, now=self.clock())
                return {"ok": True, "record": rec.to_bytes().hex()}
            if req.get("op") == "get":
                return {"ok": True, "record": self.store.get(str(req["name"]), now=self.clock()).hex()}
            raise NameServiceError("bad_request", f"unknown op {req.get('op')!r}")
        except NameServiceError as exc:
            return {"ok": False, "code": exc.code, "error": str(exc)}
        except (ValueError, KeyError) as exc:
            return {"ok": False, "code": "bad_request", "error": f"malformed request: {exc!r}"}


class NameClient:
    """Talks to one names server (``host:port``) and verifies every record it returns."""

    def __init__(self, server: str, *, timeout: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        host, sep, port = server.rpartition(":")
        if not sep or not port.isdigit():
            raise WarpgateError(f"names server {server!r} is not host:port")
        self.host, self.port = host.strip("[]"), int(port)
        self.timeout = timeout
        self.clock = clock

    async def _call(self, request: dict[str, Any]) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    answer = json.loads(await reader.readline() or b"null")
                finally:
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise NameServiceError("unreachable", f"names server {self.host}:{self.port}: {exc}") from exc
        except ValueError as exc:
            raise NameServiceError("bad_answer", "names server sent malformed JSON") from exc
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
        return rec.verify(now=self.clock(), name=name)

    async def lookup(self, name: str) -> Address:
        """The verified address registered for ``name``."""
        return (await self.lookup_record(name)).address
