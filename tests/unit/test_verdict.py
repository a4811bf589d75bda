"""A cell's verdict, the one judgement every table, report and check reads."""

import math

from netsim.model.verdict import Verdict, disagrees, judge


def test_every_verdict():
    assert judge(0, 0, True) is Verdict.NO_DATA
    assert judge(3, 3, None) is Verdict.NO_THEORY and judge(3, 3, math.nan) is Verdict.NO_THEORY
    assert judge(3, 3, True) is Verdict.OK and judge(3, 0, False) is Verdict.OK
    assert judge(3, 2, True) is Verdict.EXPECTED_TO_CONNECT
    assert judge(3, 1, False) is Verdict.EXPECTED_TO_FAIL
    assert judge(3, 3, True, survived=0.0, survives_expected=1.0) is Verdict.EXPECTED_TO_SURVIVE
    assert judge(3, 3, True, survived=1.0, survives_expected=0.0) is Verdict.EXPECTED_TO_BREAK
    assert judge(3, 3, True, survived=math.nan, survives_expected=1.0) is Verdict.OK


def test_a_declared_flake_rate_is_the_only_tolerance():
    assert judge(100, 99, True, flake=0.02) is Verdict.OK
    assert judge(100, 80, True, flake=0.02) is Verdict.EXPECTED_TO_CONNECT


def test_disagreement_is_read_from_the_verdicts_value_only():
    assert {v for v in Verdict if disagrees(v.value)} == {v for v in Verdict if v.disagrees} != set()
    assert not disagrees("MISMATCH of some other kind") and not disagrees(None)
