"""Typed signal messages: round trips and a strict decoder."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warpgate.proto import messages
from warpgate.proto.messages import Candidate, MessageError, PunchAnswer, PunchOffer, ReverseConnect


def test_round_trip():
    offer = PunchOffer(bytes(range(16)), (Candidate("198.51.100.7", 40001),), (Candidate("10.0.0.2", 5000),))
    assert messages.decode(offer.kind, offer.to_body()) == offer
    rc = ReverseConnect(bytes(16))
    assert messages.decode(rc.kind, rc.to_body()) == rc


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"v": 2, "conn_id": "00" * 16, "public": [], "private": []}, "bad_version"),
        ({"v": 1, "conn_id": "00" * 16, "public": []}, "malformed"),
        ({"v": 1, "conn_id": "00" * 16, "public": [], "private": [], "x": 1}, "malformed"),
        ({"v": 1, "conn_id": "00" * 15, "public": [], "private": []}, "malformed"),
        ({"v": 1, "conn_id": "00" * 16, "public": [["1.2.3.4", 0]], "private": []}, "bad_port"),
        ({"v": 1, "conn_id": "00" * 16, "public": [["1.2.3.4", True]], "private": []}, "bad_port"),
        ({"v": 1, "conn_id": "00" * 16, "public": [["example.org", 80]], "private": []}, "bad_host"),
        (
            {"v": 1, "conn_id": "00" * 16, "public": [["1.2.3.4", 1]] * 17, "private": []},
            "too_many_candidates",
        ),
        ({"v": 1, "conn_id": "00" * 16, "public": [["1.2.3.4"]], "private": []}, "malformed"),
        ([], "malformed"),
    ],
)
def test_strict_decoder(body, reason):
    with pytest.raises(MessageError) as info:
        messages.decode(PunchOffer.kind, body)
    assert info.value.reason == reason


def test_unknown_kind():
    with pytest.raises(MessageError) as info:
        messages.decode("nope", {})
    assert info.value.reason == "unknown_kind"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(kind=st.sampled_from([PunchOffer.kind, PunchAnswer.kind, ReverseConnect.kind]), body=json_values)
def test_any_json_decodes_or_raises_message_error(kind, body):
    try:
        messages.decode(kind, body)
    except MessageError:
        pass
