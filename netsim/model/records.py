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

import gzip
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from netsim.errors import UsageError

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


def find(run: Path) -> Path:
    """A run directory's records: ``records.jsonl``, or ``records.jsonl.gz`` (a baseline)."""
    for name in (RECORDS, RECORDS + ".gz"):
        if (run / name).is_file():
            return run / name
    raise UsageError(f"{run}: no {RECORDS} nor {RECORDS}.gz (is this a run directory?)")


def _text(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read()
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise UsageError(f"{path}: not a records file ({exc})") from None
    except OSError as exc:  # unreadable: said in one line, as bad input
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


def lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each record with its line as written (a line cut by a kill is skipped, and so is a record
    without a trial's key: a foreign line says nothing about a trial)."""
    for line in _text(path).splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("type") in ("trial", "attempt") and _keyed(rec):
            yield line, rec


def _keyed(rec: dict[str, Any]) -> bool:
    try:
        Key.of(rec)
    except (KeyError, TypeError, ValueError):
        return False
    return all(isinstance(rec[k], str) for k in ("a", "b", "run"))


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


def merge(runs: list[Path], out: Path) -> None:
    """Join shards (or partial runs) of one scenario into one run directory ``out``: each
    trial once (the first run that has it), with its attempts; the meta of the first run, with
    where it came from."""
    metas = []
    for run in runs:
        if not (run / "meta.json").is_file():
            raise UsageError(f"{run}: no meta.json (is this a run directory?)")
        find(run)
        try:
            metas.append(json.loads((run / "meta.json").read_text()))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"{run / 'meta.json'}: not a run's meta.json ({exc})") from None
        except OSError as exc:
            raise UsageError(f"{run / 'meta.json'}: cannot read: {exc.strerror or exc}") from None
    names = {m.get("scenario", {}).get("name") if isinstance(m, dict) else None for m in metas}
    if len(names) != 1 or None in names:
        raise UsageError(f"cannot merge runs of different scenarios: {sorted(map(str, names))}")
    seen: set[Key] = set()
    kept: list[str] = []
    for run in runs:
        keep = False
        for line, rec in lines(find(run)):
            if rec["type"] == "trial":
                key = Key.of(rec)
                keep = key not in seen
                seen.add(key)
            if keep:
                kept.append(line)
    meta = dict(metas[0])
    meta["merged_from"] = [str(r) for r in runs]
    meta["shards"] = [m.get("shard") for m in metas]
    out.mkdir(parents=True, exist_ok=True)
    (out / RECORDS).write_text("\n".join(kept) + "\n")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
