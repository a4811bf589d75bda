"""The command lines' argument types: one clear line for each bad value."""

import argparse

import pytest

from warpgate import argtypes
from warpgate.cli import build_parser


@pytest.mark.parametrize(
    ("check", "text", "says"),
    [
        (argtypes.seconds, "0", "more than 0"),
        (argtypes.seconds, "-1", "more than 0"),
        (argtypes.seconds, "nan", "finite"),
        (argtypes.seconds, "inf", "finite"),
        (argtypes.seconds, "1s", "not a number"),
        (argtypes.seconds_or_zero, "-0.1", "negative"),
        (argtypes.whole(1), "0", "at least 1"),
        (argtypes.whole(1), "1.5", "not a whole number"),
        (argtypes.whole(1, 10), "11", "1..10"),
        (argtypes.ratio(0, 1), "1.5", "outside 0..1"),
        (argtypes.port, "65536", "outside 0..65535"),
    ],
)
def test_bad_values_are_refused_in_one_line(check, text, says):
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        check(text)


def test_good_values_pass():
    assert argtypes.seconds("0.5") == 0.5
    assert argtypes.seconds_or_zero("0") == 0
    assert argtypes.whole(0)("0") == 0
    assert argtypes.port("0") == 0


def test_a_negative_value_reaches_its_check_even_beside_minus_4():
    options = argtypes.numeric_options(build_parser())
    assert {"--timeout", "--wait", "--port", "--portmap-lease", "--quota", "--ttl"} <= options
    joined = argtypes.join_values(["connect", "-4", "--timeout", "-1", "--", "--wait", "-2"], options)
    assert joined == ["connect", "-4", "--timeout=-1", "--", "--wait", "-2"]
    assert argtypes.join_values(["connect", "--plugin", "-1"], options) == ["connect", "--plugin", "-1"]
