"""Trial and attempt records: their key, and reading and writing ``records.jsonl``.

A run directory's ``records.jsonl`` holds one JSON object per line: a ``trial`` record per trial
(who won, how long it took, what theory expected, what went on the wire), followed by one
``attempt`` record per plugin attempt in it (``warpgate.events.AttemptEvent`` as a dict). Both
carry the run's context (run id, scenario, seed, mode) and the trial's key: the cell (``a`` the
callee, ``b`` the caller), the trial number and the ``run`` (the plugins that raced, comma-joined).

Written by the runner (appended and fsynced per trial, so a killed run loses no finished trial),
read by the report, ``compare``, ``merge`` and ``--resume``. A line cut by a kill is skipped; a
trial recorded twice (a resumed run) counts once, the last.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RECORDS = "records.jsonl"
KEY_FIELDS = ("a", "b", "trial", "run")


@dataclass(frozen=True, order=True)
class Key:
    """Which trial a record belongs to."""

    a: str
    b: str
    trial: int
    run: str

    @classmethod
    def of(cls, rec: dict[str, Any]) -> Key:
        return cls(rec["a"], rec["b"], int(rec["trial"]), rec["run"])


@dataclass(frozen=True)
class Context:
    """What every record of a run repeats, so any line can be read on its own."""

    run_id: str
    scenario: str
    seed: int
    mode: str


def trial(ctx: Context, key: Key, fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "trial", **asdict(ctx), **asdict(key), **fields}


def attempt(ctx: Context, key: Key, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "attempt", **asdict(ctx), **asdict(key), **event}


def lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each record with its line as written (a line cut by a kill is skipped)."""
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "type" in rec:
            yield line, rec


def read(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(trials, attempts); a trial recorded twice counts once, the last time."""
    trials: dict[Key, dict[str, Any]] = {}
    attempts = []
    for _, rec in lines(path):
        if rec["type"] == "trial":
            key = Key.of(rec)
            trials.pop(key, None)  # the last one, in the order of its last writing
            trials[key] = rec
        elif rec["type"] == "attempt":
            attempts.append(rec)
    return list(trials.values()), attempts


def done(path: Path) -> set[Key]:
    """The trials already recorded (``--resume`` skips exactly these)."""
    return {Key.of(rec) for _, rec in lines(path) if rec["type"] == "trial"} if path.exists() else set()


class Recorder:
    """Appends records as JSON lines, one write + fsync per trial; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def done_keys(self) -> set[Key]:
        return done(self.path)

    def append(self, records: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r) + "\n" for r in records)
        with self.lock, open(self.path, "a") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
