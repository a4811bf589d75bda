"""The runner <-> agent protocol: one JSON object per line, requests on the agent's stdin, answers
on its stdout, in order. Both sides use this module; neither writes a message by hand.

Requests (runner -> agent):

- ``Listen``: start a fresh node (fresh port, fresh STUN mapping) that echoes every message of
  every accepted pipe. Answer: ``{"ok": true, "address": "wg1...", "public": ..., "nat": ...,
  "start_ms": ..., "stun_rtt_ms": ...}``.
- ``Connect``: a fresh node calls ``auto_connect`` (``plugins`` or all), sends ``payload`` random
  bytes and checks the echo. Answer: the trial's result (``ok``, ``outcome``, ``winner``, ``ms``,
  ``path``, ``transport``, ``bytes_echoed``, ``error_class``, ``error``, ``events``, and the node's
  own measurements). With ``pause`` (a scenario's mid-pipe fault) the agent first answers
  ``PAUSED`` after the first echo, waits for ``Resume`` while the runner breaks something, checks
  the echo again and adds ``after_fault``.
- ``Reset``: stop the listening node. ``Quit``: stop and exit (no answer).

The agent announces itself with ``READY`` once. A request it cannot read is answered with
``failure("AgentProtocolError", ...)``; a trial whose handler raised or overran is answered with
``failure(...)`` too (outcome ``error``), and the agent goes on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from warpgate.errors import WarpgateError

READY: dict[str, Any] = {"ready": True}
PAUSED: dict[str, Any] = {"paused": True}
MAX_LINE = 1 << 20
"""A request line is at most this long (the runner writes them; a megabyte is far beyond any)."""


class AgentProtocolError(WarpgateError):
    """A line that is not a request this protocol defines."""


@dataclass(frozen=True)
class Listen:
    trial: str = ""
    """A label for the agent's log (``A/B#n``)."""


@dataclass(frozen=True)
class Connect:
    address: str
    plugins: tuple[str, ...] = ()
    """The plugins to race; empty: every registered one."""
    timeout: float = 10.0
    payload: int = 1024
    pause: bool = False
    trial: str = ""
    observe: float = 0.0
    """Seconds the race's losers run on after the winner (their late completions are recorded)."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per plugin, its options for this race (``auto_connect(options=...)``)."""


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Quit:
    pass


Request = Listen | Connect | Reset | Resume | Quit
_COMMANDS: dict[str, type[Request]] = {
    "listen": Listen,
    "connect": Connect,
    "reset": Reset,
    "resume": Resume,
    "quit": Quit,
}
_NAMES = {cls: name for name, cls in _COMMANDS.items()}


def encode(req: Request) -> bytes:
    body = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(req).items()}
    return json.dumps({"cmd": _NAMES[type(req)], **body}).encode() + b"\n"


def decode(line: bytes) -> Request:
    """One request line; ``AgentProtocolError`` naming what is wrong."""
    if len(line) > MAX_LINE:
        raise AgentProtocolError(f"request of {len(line)} bytes (at most {MAX_LINE})")
    try:
        obj = json.loads(line)
    except ValueError:
        raise AgentProtocolError(f"not JSON: {line[:80]!r}") from None
    if not isinstance(obj, dict):
        raise AgentProtocolError("a request is a JSON object")
    cls = _COMMANDS.get(obj.pop("cmd", None))
    if cls is None:
        raise AgentProtocolError(f"unknown command in {line[:80]!r}")
    known = {f.name: f for f in fields(cls)}
    for key in obj:
        if key not in known:
            raise AgentProtocolError(f"{_NAMES[cls]}: unknown field {key!r}")
    if "plugins" in obj:
        plugins = obj["plugins"]
        if plugins is None:
            plugins = []
        if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
            raise AgentProtocolError(f"{_NAMES[cls]}: plugins must be a list of names")
        obj["plugins"] = tuple(plugins)
    if "options" in obj:
        opts = obj["options"]
        if not isinstance(opts, dict) or not all(
            isinstance(name, str)
            and isinstance(table, dict)
            and all(isinstance(k, str) and isinstance(v, int | float | str | bool) for k, v in table.items())
            for name, table in opts.items()
        ):
            raise AgentProtocolError(f"{_NAMES[cls]}: options must map plugin names to option tables")
    types: dict[str, type | tuple[type, ...]] = {
        "address": str,
        "trial": str,
        "timeout": (int, float),
        "observe": (int, float),
        "payload": int,
        "pause": bool,
    }
    for key, kind in types.items():
        if key in obj and (
            not isinstance(obj[key], kind) or (isinstance(obj[key], bool) and kind is not bool)
        ):
            raise AgentProtocolError(f"{_NAMES[cls]}: {key} has the wrong type ({obj[key]!r})")
    try:
        return cls(**obj)
    except TypeError as exc:  # a required field is missing
        raise AgentProtocolError(f"{_NAMES[cls]}: {exc}") from None


def failure(error_class: str, error: str, *, outcome: str = "error") -> dict[str, Any]:
    """The answer for a request that produced no result (the runner records it as the trial)."""
    return {
        "ok": False,
        "outcome": outcome,
        "winner": None,
        "ms": None,
        "bytes_echoed": 0,
        "error_class": error_class,
        "error": error,
        "events": [],
    }
