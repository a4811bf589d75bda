"""The callee's side of offer-based plugins: the work it runs for each offer in progress.

``udp_punch`` and ``turn`` answer an offer and keep working for it in the background (punching,
dialling through a relay); ``reverse`` dials back. ``Sessions`` holds that work by ``conn_id``: at
most ``limit`` at once and ``per_sender`` for one peer (more offers are refused as ``busy``: a
stranger's requests cost bounded sockets, packets and allocations), cancelled only by the peer
that made the offer, and all of it at the plugin's ``stop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from warpgate.plugins.base import ResponderContext
from warpgate.proto.gater import STRANGERS_SHARE
from warpgate.proto.messages import MessageError


class Sessions:
    def __init__(self, limit: int, what: str, per_sender: int = 2) -> None:
        self.limit = limit
        self.per_sender = per_sender
        self.what = what
        self._tasks: dict[bytes, tuple[str, asyncio.Task[None]]] = {}

    def __contains__(self, conn_id: bytes) -> bool:
        return conn_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def admit(self, ctx: ResponderContext) -> None:
        """Refuse a new offer while ``limit`` are in progress, or ``per_sender`` for its sender.
        Strangers share ``STRANGERS_SHARE`` of the slots; the rest stay for known peers (ones we
        dialled, or that the node's gate lets in: ``warpgate.proto.gater``)."""
        if len(self._tasks) >= self.limit:
            raise MessageError("busy", f"{self.limit} {self.what} in progress")
        strangers = max(1, int(self.limit * STRANGERS_SHARE))
        if len(self._tasks) >= strangers and not ctx.known:
            raise MessageError("busy", f"{strangers} {self.what} in progress (the rest kept for known peers)")
        mine = sum(1 for who, _ in self._tasks.values() if who == ctx.sender.node_id)
        if mine >= self.per_sender:
            raise MessageError("busy", f"{self.per_sender} {self.what} for this peer in progress")

    def start(self, ctx: ResponderContext, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` for the offer ``ctx.conn_id`` (a task owned by the node)."""
        conn_id = ctx.conn_id
        task = ctx.spawn(coro)
        self._tasks[conn_id] = (ctx.sender.node_id, task)
        task.add_done_callback(lambda _: self._tasks.pop(conn_id, None))
        return task

    def cancel(self, ctx: ResponderContext, conn_id: bytes) -> None:
        entry = self._tasks.get(conn_id)
        if entry is not None and entry[0] == ctx.sender.node_id:  # only the offerer may cancel
            entry[1].cancel()

    def stop(self) -> None:
        for _, task in self._tasks.values():
            task.cancel()
