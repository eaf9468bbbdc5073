"""serve's counts (process/tally.py) on records built as the programs write them:
the bound on series per label, the rotation that keeps every count growing, and
how exits, signals, failed execs and lifetimes are counted.  The real kernel's
records, scraped by a real Prometheus, are test_serve.py's."""

from __future__ import annotations

import errno

import pytest
from records import EXEC, EXEC_FAILED, EXIT, FORK, THREAD, record

from procmon_ctl.process.decode import decode_event
from procmon_ctl.process.tally import (
    LIFETIME_BUCKETS,
    OTHER,
    StreamTally,
    TopValues,
)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counts_of(top: TopValues) -> tuple[dict[str, int], int]:
    return dict(top.counts), top.other


def test_values_past_the_limit_are_counted_as_other():
    top = TopValues(2, rotate_every=60, clock=FakeClock())
    for value in ["a", "b", "c", "a", "d", "c"]:
        top.add(value)
    assert counts_of(top) == ({"a": 2, "b": 1}, 3)


def test_a_value_spelled_as_other_is_counted_with_them():
    top = TopValues(5, clock=FakeClock())
    top.add(OTHER)
    top.add("x")
    assert counts_of(top) == ({"x": 1}, 1)


def test_the_busiest_waiting_value_takes_the_place_of_the_least_busy():
    clock = FakeClock()
    top = TopValues(2, rotate_every=60, clock=clock)
    for value in ["a", "b", "a"] + ["c"] * 5:
        top.add(value)
    top.rotate()  # before the period's end: nothing moves
    assert counts_of(top) == ({"a": 2, "b": 1}, 5)
    clock.now = 61
    top.rotate()
    # b (1 this period) gave its place to c (5): c counts from now, its 5 stay in other.
    assert counts_of(top) == ({"a": 2, "c": 0}, 5)
    top.add("c")
    top.add("b")
    assert counts_of(top) == ({"a": 2, "c": 1}, 6)


def test_no_count_ever_goes_down():
    """Whatever the values and rotations, a series present in two snapshots and
    `other` never shrink (Prometheus would take that for a counter reset)."""
    clock = FakeClock()
    top = TopValues(3, rotate_every=10, clock=clock)
    before, other = {}, 0
    for step in range(2000):
        top.add(f"v{(step * 7919) % (5 + step // 200)}")
        if step % 50 == 0:
            clock.now += 4
            top.rotate()
            counts, now_other = counts_of(top)
            assert len(counts) <= 3
            assert now_other >= other
            assert all(counts[v] >= n for v, n in before.items() if v in counts)
            before, other = counts, now_other


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        TopValues(0)


def events(*records: bytes):
    return [decode_event(r) for r in records]


def test_exits_signals_failed_execs_and_lifetimes():
    tally = StreamTally(limit=10, cgroups=None)
    tally.add(
        events(
            record(EXIT, code=0, duration=int(LIFETIME_BUCKETS[0] * 1e9)),  # on a bound
            record(EXIT, code=3, duration=int(LIFETIME_BUCKETS[0] * 1e9) + 1),
            record(EXIT, sig=9, duration=10**15),  # past the last bound: +Inf
            record(EXIT, sig=11, code=0, duration=2_000_000_000),
            record(EXEC_FAILED, comm=b"sh", error=-errno.ENOENT, filename=b"/nope"),
            record(EXEC, comm=b"ls", filename=b"/bin/ls"),
            record(EXEC, comm=b"ls", filename=b"/bin/ls", flags=THREAD),  # a thread's: not counted
            record(FORK, uid=0, cgroup=0),
        )
    )
    snap = tally.snapshot()
    assert snap.exits == {"success": 1, "failure": 1, "signal": 2}
    assert snap.exit_signals == {9: 1, 11: 1}
    assert snap.failed_execs == {errno.ENOENT: 1}
    assert snap.commands == {"ls": 1} and snap.commands_other == 0
    assert snap.users == {"root": 1}
    assert snap.containers == {}  # a host process (cgroup 0: none to look up)
    assert snap.records == 8
    buckets = snap.lifetime_buckets
    assert buckets[0] == 1 and buckets[1] == 1 and buckets[-1] == 1
    assert buckets[LIFETIME_BUCKETS.index(5.0)] == 1
    assert sum(buckets) == 4
    assert snap.lifetime_sum_ns == 2 * int(LIFETIME_BUCKETS[0] * 1e9) + 1 + 10**15 + 2 * 10**9
