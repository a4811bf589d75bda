"""Argument types shared by both command lines (``warpgate`` and ``netsim``).

Each one turns a user's text into a checked value or raises ``argparse.ArgumentTypeError`` with
one line saying what was wrong, so argparse exits 2 with that line and no traceback.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Sequence


def node_id(text: str) -> str:
    """A node id: 32 hex digits (``warpgate node`` prints its own at start)."""
    if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a node id (32 hex digits)")
    return text.lower()


def port(text: str) -> int:
    """A port number: 0..65535 (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} outside 0..65535")
    return value


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def seconds(text: str) -> float:
    """A duration in seconds: finite and above zero."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} s: must be more than 0")
    return value


def seconds_or_zero(text: str) -> float:
    """A duration in seconds that may be zero (do not wait)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} s: must not be negative")
    return value


def ratio(low: float, high: float) -> Callable[[str], float]:
    """A finite number within ``low..high``."""

    def check(text: str) -> float:
        value = _number(text, float)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} outside {low:g}..{high:g}")
        return value

    check.__name__ = "number"  # argparse names the type in its messages
    return check


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number of at least ``low`` (and at most ``high``)."""

    def check(text: str) -> int:
        value = int(_number(text, int))
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text}: must be {bound}")
        return value

    check.__name__ = "whole number"
    return check


_NEGATIVE = re.compile(r"-\d|-\.\d|-inf|-nan", re.IGNORECASE)


def join_values(argv: Sequence[str], options: Iterable[str]) -> list[str]:
    """``--timeout -1`` as ``--timeout=-1``, for the options that take a number.

    argparse reads ``-1`` as an option when the parser also has options that look like negative
    numbers (``-4``, ``-6``) and then says "expected one argument"; joined, the value reaches its
    type check, which says what is wrong with it."""
    wanted = set(options)
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in wanted and i + 1 < len(args) and _NEGATIVE.match(args[i + 1]):
            out.append(f"{arg}={args[i + 1]}")
            i += 2
            continue
        if arg == "--":
            out.extend(args[i:])
            break
        out.append(arg)
        i += 1
    return out


def numeric_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string, in ``parser`` and its subparsers, whose value is a number."""
    found: set[str] = set()
    numeric = {seconds, seconds_or_zero, port, int, float}
    for action in parser._actions:  # argparse has no public walk over its actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= numeric_options(sub)
        elif action.option_strings and (
            action.type in numeric or getattr(action.type, "__name__", "") in ("number", "whole number")
        ):
            found.update(action.option_strings)
    return found
