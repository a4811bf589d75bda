"""The node's inbox budget, with stand-in pipes: who is charged, who goes first, who waits."""

import asyncio

import pytest

from warpgate.budget import EVICTED, InboxBudget


class FakePipe:
    def __init__(self, name):
        self.name, self.closed, self.close_reason, self.evicted = name, False, None, None

    def _evict(self, reason):
        self.closed, self.close_reason, self.evicted = True, reason, reason

    def __repr__(self):
        return self.name


def test_the_biggest_unread_holder_goes_first():
    b = InboxBudget(100)
    hog, small, new = FakePipe("hog"), FakePipe("small"), FakePipe("new")
    assert b.try_take(hog, 70) and b.try_take(small, 20)
    assert b.try_take(new, 30)  # 120 > 100: the hog (70 unread) makes room
    assert hog.evicted == EVICTED and b.evicted == 1
    assert b.used == 50 and b.held == {small: 20, new: 30}


def test_the_biggest_holder_waits_its_turn_and_nobody_is_closed_for_it():
    b = InboxBudget(100)
    hog, small = FakePipe("hog"), FakePipe("small")
    assert b.try_take(hog, 70) and b.try_take(small, 20)
    assert not b.try_take(hog, 20) and b.try_take(small, 60) is not False  # small may evict the hog
    assert hog.evicted and b.used == 80


def test_a_frame_in_flight_is_not_unread_and_cannot_protect_its_pipe():
    b = InboxBudget(100)
    reader, sleeper = FakePipe("reader"), FakePipe("sleeper")
    assert b.try_take(sleeper, 40)
    assert b.try_take(reader, 50, flight=True)  # bigger in total, but none of it readable
    assert b.unread(reader) == 0 and b.unread(sleeper) == 40
    assert b.try_take(reader, 20)  # the sleeper's unread bytes go, not the reader's frame
    assert sleeper.evicted and not reader.closed
    b.landed(reader, 50)
    assert b.unread(reader) == 70


def test_closed_pipes_unread_bytes_go_before_anyones():
    b = InboxBudget(100)
    gone, live = FakePipe("gone"), FakePipe("live")
    assert b.try_take(gone, 10) and b.try_take(live, 80)
    gone.closed = True
    assert b.try_take(live, 15)  # the live pipe is the bigger holder, yet the closed one goes
    assert gone.evicted and b.held == {live: 95}


def test_one_message_fits_an_empty_budget_whatever_its_size():
    b = InboxBudget(10)
    p = FakePipe("p")
    assert b.try_take(p, 1000) and not b.try_take(p, 1)
    b.refund(p, 1000)
    assert b.used == 0 and b.held == {}


def test_refunds_never_go_below_what_was_charged():
    b = InboxBudget(100)
    p, evicted = FakePipe("p"), FakePipe("e")
    b.try_take(p, 10)
    b.refund(p, 50)
    b.refund(evicted, 5)  # an evicted pipe's later refunds are ignored
    assert b.used == 0


async def test_a_waiting_pipe_gets_room_when_another_is_read():
    b = InboxBudget(100)
    waiting, read = FakePipe("waiting"), FakePipe("read")
    assert b.try_take(read, 40) and b.try_take(waiting, 60)
    task = asyncio.ensure_future(b.take(waiting, 10))
    await asyncio.sleep(0)
    assert not task.done()  # the biggest holder waits
    b.refund(read, 40)
    await asyncio.wait_for(task, 1)
    assert b.held == {waiting: 70}


async def test_a_pipe_closed_while_waiting_is_told():
    from warpgate.errors import PipeClosed

    b = InboxBudget(100)
    p = FakePipe("p")
    assert b.try_take(p, 100)
    task = asyncio.ensure_future(b.take(p, 10))
    await asyncio.sleep(0)
    p.closed, p.close_reason = True, "closed by the peer"
    b.refund(p, 100)
    with pytest.raises(PipeClosed):
        await asyncio.wait_for(task, 1)
