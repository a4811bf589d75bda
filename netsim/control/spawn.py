"""The one door every lab process goes through, so a forced teardown can shut it first.

A forced teardown (a second signal) kills every process of ours it finds. Worker threads of the
runner and of the plan keep starting commands meanwhile (``nft -f -`` for a trial's fresh
state, a daemon); one started after the scan would outlive the teardown. ``close()`` takes the
lock every start holds, so once it returns no lab process can start any more and the scan that
follows sees them all.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from netsim.errors import NetsimError

_door = threading.RLock()  # re-entrant: the signal handler runs on a thread that may hold it
_closed = False


class Closed(NetsimError):
    """The lab is being torn down by force: no new process may start."""


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen``, unless ``close()`` was called (``Closed``)."""
    with _door:
        if _closed:
            raise Closed(f"the lab is being torn down: {argv[0]} not started")
        return subprocess.Popen(list(argv), **kwargs)


def run(
    argv: Sequence[str], *, input: str | None, timeout: float, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(..., capture_output=True, text=True)`` through the door."""
    proc = popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def close(timeout: float = 5.0) -> None:
    """Start no lab process from now on; returns once no start is under way (or after
    ``timeout`` seconds, if one hangs in ``fork``)."""
    global _closed
    got = _door.acquire(timeout=timeout)
    try:
        _closed = True
    finally:
        if got:
            _door.release()
