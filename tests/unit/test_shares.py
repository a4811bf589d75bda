"""Fair shares of a bounded table (``warpgate.proto.shares``): per-owner caps, and a full table
that makes room from whoever holds the most, never from a newcomer's betters."""

import pytest

from warpgate.proto.shares import Refused, make_room


def table(*owners):
    return [(f"{o}{i}", o) for i, o in enumerate(owners)]


def test_room_while_below_the_cap():
    assert make_room(table("a", "b"), "c", cap=3, per_owner=3) is None


def test_an_owner_at_its_share_is_refused_even_with_room():
    with pytest.raises(Refused) as caught:
        make_room(table("a", "a"), "a", cap=10, per_owner=2)
    assert caught.value.reason == "per_owner"


def test_a_full_table_gives_the_newcomer_the_oldest_slot_of_the_heaviest_owner():
    assert make_room(table("a", "b", "b", "c", "b"), "d", cap=5, per_owner=5) == "b1"


def test_the_heaviest_owner_itself_only_waits():
    with pytest.raises(Refused) as caught:
        make_room(table("a", "a", "b"), "a", cap=3, per_owner=5)
    assert caught.value.reason == "full"
    with pytest.raises(Refused):  # as many as the heaviest: no gain in displacing it
        make_room(table("a", "b"), "b", cap=2, per_owner=5)


def test_a_flood_from_one_owner_never_displaces_another():
    held = table("legit", *["flood"] * 3)
    for _ in range(100):
        try:
            victim = make_room(held, "flood", cap=4, per_owner=10)
        except Refused:
            continue
        held = [e for e in held if e[0] != victim] + [("new", "flood")]
    assert ("legit0", "legit") in held
