"""The one stage system (`streamguard.stages`) files, live streams and segments run on."""

from __future__ import annotations

import threading
import time

import pytest

from streamguard.stages import END, IDLE, Channel, Run, Stage, Stopped


def test_drop_oldest_never_waits_and_counts_what_it_drops():
    run = Run()
    gone = []
    q = Channel(run, 2, overflow="drop_oldest", on_drop=gone.append)
    for i in range(5):
        q.put(i)  # never blocks: the reader may be far behind
    assert (q.dropped, gone) == (3, [0, 1, 2])
    assert [q.get(0.01), q.get(0.01), q.get(0.01)] == [3, 4, IDLE]


def test_block_waits_for_room_and_gives_up_when_the_run_stops():
    run = Run()
    q = Channel(run, 1, poll_s=0.01)
    q.put("a")
    waited = threading.Event()

    def writer():
        try:
            q.put("b")  # waits: the channel is full
        except Stopped:
            waited.set()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.1)
    assert t.is_alive() and q.dropped == 0  # still waiting, nothing dropped
    run.stop.set()
    t.join(2)
    assert waited.is_set() and not t.is_alive()


def test_a_closed_channel_delivers_what_was_put_then_ends():
    run = Run()
    q = Channel(run, 4)
    for i in range(3):
        q.put(i)
    q.close()
    assert list(q) == [0, 1, 2]
    assert q.get(0.01) is IDLE  # END was taken by the iteration


def test_stages_keep_order_and_the_failing_stage_stops_the_run_with_its_error():
    run = Run()
    mid = Channel(run, 2, 0.01)
    seen = []

    def double(x):
        if x == 7:
            raise ValueError("bad item 7")
        return (2 * x,)

    stages = [Stage("double", run, double, range(20), mid),
              Stage("collect", run, lambda x: seen.append(x) or (), mid)]
    for s in stages:
        s.start()
    for s in stages:
        s.join(5)
    assert seen == [0, 2, 4, 6, 8, 10, 12][:len(seen)] and len(seen) <= 7
    assert run.stop.is_set() and [str(e) for e in run.errors] == ["bad item 7"]


def test_an_idle_inbox_is_told_and_what_it_returns_goes_on():
    run = Run()
    inbox, out = Channel(run, 2, 0.01), Channel(run, 10, 0.01)
    stage = Stage("work", run, lambda x: (x,), inbox, out, idle_s=0.02,
                  on_idle=lambda: ("tick",))
    stage.start()
    inbox.put("frame")
    time.sleep(0.1)
    inbox.close()
    stage.join(2)
    got = list(out)
    assert got[0] == "frame" and "tick" in got[1:]


def test_an_input_that_ends_without_ending_the_run_leaves_its_outbox_open():
    run = Run()
    out = Channel(run, 10, 0.01)
    Stage("read", run, lambda x: (x,), [1, 2], out, closes_outbox=False).run()
    assert [out.get(0.01), out.get(0.01), out.get(0.01)] == [1, 2, IDLE]  # no END


def test_an_unknown_overflow_policy_is_refused():
    with pytest.raises(ValueError, match="overflow"):
        Channel(Run(), 2, overflow="drop_newest")


def test_end_is_delivered_even_to_a_full_drop_oldest_channel():
    run = Run()
    q = Channel(run, 1, overflow="drop_oldest")
    q.put("last frame")
    q.close()
    assert q.get(0.01) == "last frame" and q.get(0.01) is END
