"""Wall-clock time: clock.py turns kernel stamps (CLOCK_MONOTONIC) into the time of
day with an offset taken again per batch, so a clock step or a suspend moves the
time of what is read after it; and the `time` of real lines is the time the
process was really forked."""

from __future__ import annotations

import time

import pytest
from conftest import fork_processes
from records import utc_text

from procmon_ctl.process import clock

NS = 1_000_000_000
HOUR = 3600 * NS


class FakeClocks:
    """CLOCK_REALTIME and CLOCK_MONOTONIC as time.clock_gettime_ns gives them: both
    advance together, a step moves the realtime one only, and so does a suspend
    (CLOCK_MONOTONIC does not count time asleep)."""

    def __init__(self, monkeypatch):
        self.mono = 7_000 * NS + 123_456_789
        self.real = 1_795_000_000 * NS + 555_000_000  # 2026-11-17
        monkeypatch.setattr(time, "clock_gettime_ns", self.gettime)

    def gettime(self, which: int) -> int:
        self.mono += 10  # each read takes a little time
        self.real += 10
        return self.real if which == time.CLOCK_REALTIME else self.mono

    def step(self, ns: int) -> None:  # NTP, `date -s`
        self.real += ns

    def suspend(self, ns: int) -> None:
        self.real += ns


@pytest.fixture
def clocks(monkeypatch) -> FakeClocks:
    fake = FakeClocks(monkeypatch)
    monkeypatch.setattr(clock, "_offset_ns", clock._offset_ns)  # put back afterwards
    clock.resync()
    return fake


def test_a_stamp_reads_as_the_time_it_was_made(clocks):
    stamp, real = clocks.mono, clocks.real
    assert abs(clock.unix_ns(stamp) - real) < 100
    assert clock.rfc3339(stamp) == utc_text(clock.unix_ns(stamp))
    assert clock.parse_rfc3339(clock.rfc3339(stamp)).timestamp() == pytest.approx(real / NS)


@pytest.mark.parametrize("change", ["step", "suspend"])
def test_a_clock_step_or_a_suspend_counts_from_the_next_resync(clocks, change):
    """Before the resync a stamp reads as before (the offset is the batch's); after
    it, a record made after the change has the new time of day, and one made before
    the change (left in the ring) is off by the change, as docs/logs.md says."""
    made_before = clocks.mono
    old = clock.rfc3339(made_before)
    getattr(clocks, change)(HOUR)
    assert clock.rfc3339(made_before) == old, "no resync yet: the time does not move"
    clock.resync()
    made_after = clocks.mono
    assert abs(clock.unix_ns(made_after) - clocks.real) < 100, "the new time of day"
    moved = clock.parse_rfc3339(clock.rfc3339(made_before)) - clock.parse_rfc3339(old)
    assert moved.total_seconds() == 3600


def test_a_step_back_is_followed_too(clocks):
    stamp = clocks.mono
    clocks.step(-HOUR)
    clock.resync()
    assert abs(clock.unix_ns(clocks.mono) - clocks.real) < 100
    assert clock.unix_ns(stamp) < clocks.real, "a record made before the step is an hour off"


def test_the_offset_ignores_a_slow_read(monkeypatch):
    """A read of CLOCK_REALTIME between two monotonic reads far apart (preempted)
    can be anywhere between them: of a few tries, the closest pair is used."""
    truth = 1_800_000_000 * NS
    tries = iter([(5 * NS, 0.9), (20, 0.5), (3 * NS, 0.1)])  # gap, where real falls
    mono, real = [1000 * NS], [0]

    def gettime(which: int) -> int:
        if which == time.CLOCK_REALTIME:
            return real[0]
        if not real[0]:  # the first monotonic read of a try
            gap, at = next(tries)
            real[0] = mono[0] + int(gap * at) + truth
            mono[0] += gap
            return mono[0] - gap
        real[0] = 0
        return mono[0]

    monkeypatch.setattr(time, "clock_gettime_ns", gettime)
    assert abs(clock.realtime_offset_ns() - truth) <= 20


def test_times_are_cut_to_microseconds_not_rounded():
    base = 1_795_000_000 * NS
    assert clock.rfc3339_utc(base + 999_999_999) == utc_text(base + 999_999_999)
    assert clock.rfc3339_utc(base + 999_999_999).endswith(".999999Z")
    assert clock.parse_rfc3339(clock.rfc3339_utc(base + 1_500)).timestamp() == pytest.approx(
        (base + 1_000) / NS
    )


# --- real records -----------------------------------------------------------------

# A few ms: the reader's offset and this process's clock readings are taken apart,
# each within microseconds; the slack is for a slow guest of the kernel matrix.
SLACK_NS = 5_000_000


@pytest.mark.kernel
@pytest.mark.parametrize("writer", [[], ["--uid", "0"]], ids=["C", "python (filtered)"])
def test_real_lines_have_the_time_the_process_was_forked(attached, writer):
    """A named reader comes back after the process has come and gone: its records'
    time is when they were made, not when they were read (the reader's start alone
    takes longer than the slack)."""
    attached("events", "--name", "later", "--duration", "0.01")  # its place, kept
    before = time.time_ns()
    (pid,) = fork_processes(1)
    after = time.time_ns()
    lines = attached.json_lines("events", "--name", "later", "--json", *writer, "--duration", "0.2")
    ours = [e for e in lines if e.get("pid") == pid]
    assert {e["type"] for e in ours} == {"fork", "exit"}
    for e in ours:
        at = clock.parse_rfc3339(e["time"])
        unix = int(at.timestamp()) * NS + at.microsecond * 1000
        assert before - SLACK_NS <= unix <= after + SLACK_NS, (e, before, after)
    fork = next(e for e in ours if e["type"] == "fork")
    exit_ = next(e for e in ours if e["type"] == "exit")
    # The same offset for both (one batch, or two taken microseconds apart): the
    # times are as far apart as the stamps, to the microsecond.
    apart = clock.parse_rfc3339(exit_["time"]) - clock.parse_rfc3339(fork["time"])
    assert abs(apart.total_seconds() * NS - (exit_["ts_ns"] - fork["ts_ns"])) < SLACK_NS
