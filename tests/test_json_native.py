"""The C formatter of `events --json` (native/json_lines.c) writes byte for byte
what the Python formatter (json_lines.py) writes, on a ring laid out in memory
the way the kernel maps it: no kernel needed.  The real ring is read by the
kernel tests (test_process_events, test_loss_and_readers) through it too.  And
the library is used only when it was built from the headers abi.py mirrors."""

from __future__ import annotations

import ctypes
import io
import json
import os

import pytest
from records import (
    CASES,
    EXEC,
    EXIT,
    FORK,
    NOW_NS,
    OFFSET_NS,
    THREAD,
    TRUNCATED,
    LossesInMemory,
    argv_area,
    cgroup_json,
    fix_clock,
    header,
    record,
    ring_bytes,
    utc_text,
)

from procmon_ctl.kernel.abi import (
    RECORD_LENGTH,
    RING_POSITION,
    PmStop,
    RingbufRecord,
    record_footprint,
)
from procmon_ctl.process.rows import Filters
from procmon_ctl.stream import follow as stream
from procmon_ctl.stream.sink import sink_for
from procmon_ctl.views import json_lines, json_native
from procmon_ctl.views.events import JsonView, NativeJson

BUSY, DISCARD = RingbufRecord.BUSY_BIT, RingbufRecord.DISCARD_BIT
PAGE = 4096


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """One offset and one "now" for both writers: the lines are compared byte for
    byte, and the real clock would move between the two."""
    fix_clock(monkeypatch)


# The cgroups of the records of records.CASES.
KNOWN_CGROUPS = (1, 2, 3, 7, 987654321)


class FakeRing:
    """A producer page and a data area mapped "twice", in one ctypes buffer; the
    records start at ring position `start` (so they can wrap)."""

    def __init__(self, size: int = 1 << 16, start: int = 0):
        self.size, self.mask = size, size - 1
        self.mem = ctypes.create_string_buffer(PAGE + 2 * size)
        self.addr = ctypes.addressof(self.mem)
        self.pos = self.consumer = start
        self.producer = start
        self._set_producer()

    def _set_producer(self) -> None:
        RING_POSITION.pack_into(self.mem, 0, self.producer)

    def _write(self, pos: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            at = (pos + i) & self.mask
            self.mem[PAGE + at] = self.mem[PAGE + self.size + at] = byte

    def add(self, rec: bytes, flags: int = 0) -> int:
        pos = self.producer
        self._write(pos, header(len(rec), flags) + rec)
        self.producer += record_footprint(len(rec))
        self._set_producer()
        return pos

    def formatter(self, native_lib, cgroups=KNOWN_CGROUPS) -> json_native.JsonLineFormatter:
        """A formatter that knows `cgroups` already (as after their first records)."""
        fmt = json_native.JsonLineFormatter(native_lib, self.addr + PAGE, self.mask, self.addr)
        for cgroup in cgroups:
            fmt.cgroups.add(cgroup, cgroup_json(cgroup))
        return fmt

    # What stream._follow_json_native needs of a RingBufferReader.
    @property
    def view(self) -> memoryview:
        return memoryview(self.mem)

    @property
    def consumer_pos(self) -> int:
        return self.consumer

    read_pos = property(lambda self: self.pos, lambda self, pos: setattr(self, "pos", pos))

    def record_at(self, pos: int) -> tuple[int, int]:
        length = RECORD_LENGTH.unpack_from(self.mem, PAGE + (pos & self.mask))[0] & ~(
            BUSY | DISCARD
        )
        return PAGE + (pos & self.mask) + RingbufRecord.HDR_SZ, pos + record_footprint(length)

    def commit_to(self, pos: int) -> None:
        self.consumer = pos

    def wait(self, timeout: float) -> None:
        pass


def python_lines(records: list[bytes], execs=None) -> str:
    """The Python writer's text, with a table of what each process ran of its own
    (as the C formatter of FakeRing.formatter() starts with an empty one)."""
    buf, offsets = ring_bytes(records)
    lines: list[str] = []
    execs = json_lines.ExecTexts() if execs is None else execs
    json_lines.json_lines(buf, offsets, lines, 0, cgroup_json, NOW_NS, execs=execs)
    return "".join(line + "\n" for line in lines)


def follow_native(ring: FakeRing, native_lib, limit=None, cgroups=KNOWN_CGROUPS) -> tuple[str, int]:
    out = io.StringIO()
    writer = stream.BatchWriter(sink_for(out), ring, LossesInMemory(), limit)
    # failed=True: every record type is shown (tests/test_exec_failures.py checks
    # that exec_failed records are not, without --failed).
    in_place = NativeJson(ring.formatter(native_lib, cgroups), ring, True, cgroup_json)
    stream._follow_in_place(ring, in_place, 0, writer)
    return out.getvalue(), writer.emitted


LEFT_TO_PYTHON = (
    "unknown type",
    "bytes that are not UTF-8",
    "hostile arguments",
    "failed exec",
    "characters JSON lines escape",
)


@pytest.mark.parametrize("start", [0, 3 * (1 << 16) - 40], ids=["from the start", "wrapping"])
@pytest.mark.parametrize("name", CASES)
def test_c_writes_what_python_writes(native_lib, name, start):
    """Every record type, hostile names and gaps, from the start of the ring and
    across its end: the same bytes as the Python writer."""
    ring = FakeRing(size=1 << 16, start=start)
    for r in CASES[name]:
        ring.add(r)
    if name not in LEFT_TO_PYTHON:
        batch = ring.formatter(native_lib).format(ring.consumer, 1 << 20, 0)
        assert batch.stop == PmStop.CAUGHT_UP
        assert batch.records == len(CASES[name])
        assert batch.pos == ring.producer
        assert batch.text == python_lines(CASES[name])
    text, n = follow_native(ring, native_lib)
    assert (text, n) == (python_lines(CASES[name]), len(CASES[name]))
    assert ring.consumer == ring.producer


@pytest.mark.parametrize("name", LEFT_TO_PYTHON)
def test_records_left_to_python_come_out_the_same(native_lib, name):
    """The C side stops at what it does not format; the stream loop formats that
    one record in Python and goes on: the output is still Python's, in order."""
    records = [
        record(FORK, pid=10, comm=b"before"),
        *CASES[name],
        record(EXIT, pid=11, comm=b"after"),
    ]
    ring = FakeRing()
    for r in records:
        ring.add(r)
    first = ring.formatter(native_lib).format(ring.consumer, 100, 0)
    assert (first.stop, first.records) == (PmStop.FOREIGN, 1)
    text, n = follow_native(ring, native_lib)
    assert text == python_lines(records)
    assert n == len(records)
    assert ring.consumer == ring.producer


def test_a_new_cgroup_is_formatted_once_in_python_then_in_c(native_lib):
    """The C side knows no cgroup at first: the first record of each comes back to
    Python, which formats it and gives C its cgroup's fragment; the next ones of
    that cgroup are C's.  The text is Python's either way."""
    records = [record(FORK, pid=p, cgroup=40 + p % 2) for p in range(6)]
    ring = FakeRing()
    for r in records:
        ring.add(r)
    first = ring.formatter(native_lib, cgroups=()).format(ring.consumer, 100, 0)
    assert (first.stop, first.records) == (PmStop.FOREIGN, 0)
    text, n = follow_native(ring, native_lib, cgroups=())
    assert (text, n) == (python_lines(records), 6)
    fmt = ring.formatter(native_lib, cgroups=())
    fmt.cgroups.add(40, cgroup_json(40))
    fmt.cgroups.add(41, cgroup_json(41))
    batch = fmt.format(0, 100, 0)
    assert (batch.stop, batch.records, batch.text) == (PmStop.CAUGHT_UP, 6, python_lines(records))


def test_the_cgroup_table_starts_afresh_when_three_quarters_full():
    table = json_native.CgroupTable(slots=8)

    def known() -> set[int]:
        return {table._slots[i].id for i in range(8)} - {0}

    for cgroup in range(1, 7):
        table.add(cgroup * 8, cgroup_json(cgroup))  # one slot for all: probing
    assert known() == {8, 16, 24, 32, 40, 48}
    table.add(7, cgroup_json(7))
    assert known() == {7}
    table.add(9, ',"cgroup":"caf\u00e9"'.encode().decode("unicode_escape"))  # not ASCII
    table.add(10, "," + "x" * json_native._CGROUP_JSON_MAX)  # longer than C takes
    assert known() == {7}


def test_a_record_that_wraps_reads_straight(native_lib):
    exec_rec = record(2, comm=b"ls", filename=b"/usr/bin/" + b"x" * 200)
    # Start 40 bytes before the end of a 4 KiB ring: the exec record straddles it.
    ring = FakeRing(size=4096, start=3 * 4096 - 40)
    records = [record(1, pid=1), exec_rec, record(3, pid=2)]
    for r in records:
        ring.add(r)
    text, n = follow_native(ring, native_lib)
    assert (text, n) == (python_lines(records), 3)


def test_stops_at_a_record_still_being_written(native_lib):
    ring = FakeRing()
    ring.add(record(1, pid=1))
    busy = ring.add(record(1, pid=2), flags=BUSY)
    ring.add(record(1, pid=3))
    batch = ring.formatter(native_lib).format(ring.consumer, 100, 0)
    assert (batch.stop, batch.records, batch.pos) == (PmStop.CAUGHT_UP, 1, busy)
    assert batch.text == python_lines([record(1, pid=1)])


def test_skips_discarded_records(native_lib):
    ring = FakeRing()
    ring.add(record(1, pid=1))
    ring.add(record(1, pid=2), flags=DISCARD)
    ring.add(record(1, pid=3))
    batch = ring.formatter(native_lib).format(ring.consumer, 100, 0)
    assert batch.records == 2 and batch.pos == ring.producer
    assert batch.text == python_lines([record(1, pid=1), record(1, pid=3)])


def test_limit_counts_records_and_leaves_the_rest(native_lib):
    ring = FakeRing()
    records = [record(1, pid=p, dropped=1 if p == 2 else 0) for p in range(1, 6)]
    positions = [ring.add(r) for r in records]
    text, n = follow_native(ring, native_lib, limit=3)
    assert n == 3
    assert text == python_lines(records[:3])  # the gap line does not count
    assert ring.consumer == positions[3]


def test_a_full_output_buffer_ends_the_batch_cleanly(native_lib):
    ring = FakeRing(size=1 << 20)
    records = [record(2, pid=p, filename=b"/" + b"\x01" * 250) for p in range(1000)]
    for r in records:
        ring.add(r)
    batch = ring.formatter(native_lib).format(ring.consumer, 1 << 20, 0)
    # 1000 records of ~1.6 KB do not fit in one 1 MiB call.
    assert batch.stop == PmStop.FULL
    assert 0 < batch.records < 1000
    assert batch.text == python_lines(records[: batch.records])
    text, n = follow_native(ring, native_lib)
    assert (text, n) == (python_lines(records), 1000)


def unix_ns(*date: int, ns: int = 0) -> int:
    """The Unix time, in ns, of a UTC date and time (year, month, day, h, m, s)."""
    from datetime import UTC, datetime

    return int(datetime(*date, tzinfo=UTC).timestamp()) * 1_000_000_000 + ns


NS = 1_000_000_000
# Instants whose text changes in more than the last digits, as the records' time
# just before and after them: a second, a minute, a day, a month, a leap day (2024;
# 2000 is one, 2100 is not), a year, a century.  The records' ts_ns stay what a
# kernel gives; the offset (REALTIME - MONOTONIC) moves them there.
BOUNDARIES = {
    "second": unix_ns(2026, 11, 29, 22, 15, 2),
    "day": unix_ns(2026, 11, 30),
    "leap day starts": unix_ns(2024, 2, 29),
    "leap day ends": unix_ns(2024, 3, 1),
    "no leap day in 2100": unix_ns(2100, 3, 1),
    "leap day of 2000": unix_ns(2000, 2, 29),
    "year": unix_ns(2027, 1, 1),
    "century": unix_ns(2000, 1, 1),
    "epoch": unix_ns(1970, 1, 1, 0, 0, 1),
}
# ns from the boundary: the nanoseconds cut (999 ns before is still the second
# before, 1 ns after is .000000), and a batch whose records cross it and go back.
AROUND = (-NS - 1, -1_000_001, -1000, -999, -1, 0, 1, 999, 1000, 123_456_789, -5, NS + 7)


@pytest.mark.parametrize(
    "behind", [False, True], ids=["83 min after boot", "wall clock behind the kernel's"]
)
@pytest.mark.parametrize("boundary", BOUNDARIES.values(), ids=BOUNDARIES.keys())
def test_time_is_the_same_across_seconds_days_and_years(native_lib, monkeypatch, boundary, behind):
    """The C writer's dates (its own calendar arithmetic, a cache of the second) are
    Python's, and both are datetime's, around each boundary and in one batch; with a
    positive offset and with a negative one (a clock set to 1970 at boot)."""
    stamp = boundary + 10 * NS if behind else 5_000 * NS + 987
    offset = boundary - stamp
    fix_clock(monkeypatch, offset_ns=offset, now_ns=stamp + 3)
    types = (FORK, EXEC, EXIT)
    records = [
        record(types[i % 3], pid=i + 2, ts=stamp + d, dropped=i // 4, filename=b"/bin/x")
        for i, d in enumerate(AROUND)
    ]
    ring = FakeRing()
    for r in records:
        ring.add(r)
    batch = ring.formatter(native_lib).format(ring.consumer, 1 << 20, 0)
    assert (batch.stop, batch.records) == (PmStop.CAUGHT_UP, len(records))
    buf, offsets = ring_bytes(records)
    lines: list[str] = []
    json_lines.json_lines(buf, offsets, lines, 0, cgroup_json, execs=json_lines.ExecTexts())
    assert batch.text == "".join(line + "\n" for line in lines)
    times = [json.loads(line)["time"] for line in lines if '"gap"' not in line]
    assert times == [utc_text(boundary + d) for d in AROUND]
    gaps = [json.loads(line)["time"] for line in lines if '"gap"' in line]
    assert gaps == [utc_text(boundary + 3)] * 2


def test_time_of_the_highest_stamps(native_lib, monkeypatch):
    """ts_ns near 2^64 (no kernel gets there, but the record allows it): the sum with
    the offset does not wrap in either writer."""
    fix_clock(monkeypatch, offset_ns=unix_ns(2026, 1, 1))
    records = [record(FORK, ts=2**64 - 1), record(FORK, ts=2**63), record(EXIT, ts=2**63 - 1)]
    ring = FakeRing()
    for r in records:
        ring.add(r)
    batch = ring.formatter(native_lib).format(ring.consumer, 100, 0)
    assert batch.text == python_lines(records)
    assert [json.loads(x)["time"] for x in batch.text.splitlines()] == [
        utc_text(unix_ns(2026, 1, 1) + ts) for ts in (2**64 - 1, 2**63, 2**63 - 1)
    ]


def test_the_offset_is_taken_for_each_call(native_lib, monkeypatch):
    """A clock step between two batches: the second batch's lines have the new time,
    as the Python writer's would (the reading loop resyncs between them)."""
    from procmon_ctl.process import clock

    ring = FakeRing()
    ring.add(record(FORK, pid=1))
    fmt = ring.formatter(native_lib)
    before = fmt.format(ring.consumer, 100, 0).text
    monkeypatch.setattr(clock, "realtime_offset_ns", lambda: OFFSET_NS + 3600 * NS)
    clock.resync()
    after = fmt.format(ring.consumer, 100, 0).text
    assert after == python_lines([record(FORK, pid=1)]) != before
    step = clock.parse_rfc3339(json.loads(after)["time"]) - clock.parse_rfc3339(
        json.loads(before)["time"]
    )
    assert step.total_seconds() == 3600


@pytest.mark.parametrize("native", [True, False], ids=["C", "python"])
def test_events_json_on_the_real_ring_either_way(attached, monkeypatch, native):
    """Both paths of `events --json` read the kernel's ring: forked pids come out
    with their parent, and --count stops at the count."""
    from conftest import fork_processes

    from procmon_ctl.instance.pinned import PinnedInstance

    if not native:
        monkeypatch.setattr(json_native, "library", lambda: None)
    # follow() puts its process in SCHED_BATCH; this process is pytest's.
    monkeypatch.setattr(stream, "batch_scheduling", lambda: None)
    layout = PinnedInstance.at(attached.pin_dir)
    # A named reader: its place, taken first, keeps what comes while it is not reading.
    named = {"name": f"json-{'c' if native else 'py'}"}
    view = JsonView(Filters(), False, False, cgroup_json)
    stream.follow(layout, stream.StreamOptions(duration=0.05, **named), view, io.StringIO())
    pids = fork_processes(20)
    out = io.StringIO()
    view = JsonView(Filters(), False, False, cgroup_json)
    n = stream.follow(layout, stream.StreamOptions(duration=0.3, **named), view, out)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert n == len(lines) > 0
    forks = {e["pid"]: e for e in lines if e["type"] == "fork"}
    for pid in pids:
        assert pid in forks and forks[pid]["ppid"] == os.getpid()
    # Children that did not exec ran this process's command line, which a reader
    # that starts (not one that resumes) takes from /proc: their exit lines carry
    # it, without a filename.
    forked: list[int] = []

    class ForksOnceReading(JsonView):
        def start(self, opened):
            super().start(opened)
            forked.extend(fork_processes(5))

    out = io.StringIO()
    view = ForksOnceReading(Filters(), False, False, cgroup_json)
    stream.follow(layout, stream.StreamOptions(duration=0.3), view, out)
    with open("/proc/self/cmdline", "rb") as f:
        mine = [a.decode() for a in f.read().split(b"\0")[:-1]]
    exits = {
        e["tgid"]: e for e in map(json.loads, out.getvalue().splitlines()) if e["type"] == "exit"
    }
    for pid in forked:
        assert exits[pid]["argv"] == mine and "filename" not in exits[pid]
    fork_processes(10)
    out = io.StringIO()
    view = JsonView(Filters(), False, False, cgroup_json)
    assert stream.follow(layout, stream.StreamOptions(count=5, **named), view, out) == 5
    assert len(out.getvalue().splitlines()) == 5


def what_ran(records: list[bytes], execs=None) -> list[tuple[int, dict]]:
    """The exit lines of python_lines(records), in order: (tgid, the filename, argv
    and argv_truncated present)."""
    keys = ("filename", "argv", "argv_truncated")
    return [
        (e["tgid"], {k: e[k] for k in keys if k in e})
        for e in map(json.loads, python_lines(records, execs).splitlines())
        if e["type"] == "exit"
    ]


# A shell that execs, forks a child that does not exec and one that does, and a
# process the table never saw; a thread of the shell forks and exits on the way.
FAMILY = [
    record(FORK, pid=50, tgid=50, ppid=7),
    record(EXEC, pid=50, tgid=50, ppid=7, filename=b"/bin/sh", argv=argv_area(b"sh", b"-c", b"x")),
    record(FORK, pid=51, tgid=51, ppid=50),
    record(FORK, pid=52, tgid=52, ppid=50),
    record(FORK, pid=53, tgid=50, ppid=7, flags=THREAD),
    record(EXIT, pid=53, tgid=50, ppid=7, flags=THREAD),
    record(EXEC, pid=52, tgid=52, ppid=50, filename=b"/bin/ls", argv=b"ls\0-l", flags=TRUNCATED),
    record(EXIT, pid=51, tgid=51, ppid=50),
    record(EXIT, pid=52, tgid=52, ppid=50),
    record(EXIT, pid=50, tgid=50, ppid=7),
    record(EXIT, pid=60, tgid=60, ppid=7),
    # The pid again, for a process whose fork and exec were not seen.
    record(EXIT, pid=50, tgid=50, ppid=7),
]


def test_exit_lines_say_what_the_process_last_ran(native_lib):
    """An exit line carries its process's last exec; a child that did not exec,
    its parent's; nothing when the exec was not seen (nor a thread's exit, nor a
    pid's second exit).  Both writers alike."""
    sh = {"filename": "/bin/sh", "argv": ["sh", "-c", "x"], "argv_truncated": False}
    ls = {"filename": "/bin/ls", "argv": ["ls", "-l"], "argv_truncated": True}
    # The thread's exit first, the pid's second exit last.
    assert what_ran(FAMILY) == [(50, {}), (51, sh), (52, ls), (50, sh), (60, {}), (50, {})]
    ring = FakeRing()
    for r in FAMILY:
        ring.add(r)
    fmt = ring.formatter(native_lib)
    batch = fmt.format(ring.consumer, 100, 0)
    assert (batch.stop, batch.records) == (PmStop.CAUGHT_UP, len(FAMILY))
    assert batch.text == python_lines(FAMILY)
    assert len(fmt.execs) == 0  # every process known has exited
    fmt.close()


def test_exit_of_a_program_python_wrote_the_exec_of(native_lib):
    """An exec the C writer leaves to Python (arguments that are not ASCII) goes
    into the C writer's table all the same, and its exit line is C's, in UTF-8."""
    records = [
        record(
            EXEC,
            pid=70,
            tgid=70,
            filename=b"/bin/caf\xc3\xa9",
            argv=argv_area(b"\xff", b"\xc3\xa9"),
        ),
        record(EXIT, pid=70, tgid=70),
    ]
    ring = FakeRing()
    for r in records:
        ring.add(r)
    text, n = follow_native(ring, native_lib)
    assert (text, n) == (python_lines(records), 2)
    exit_line = json.loads(text.splitlines()[1])
    assert (exit_line["filename"], exit_line["argv"]) == ("/bin/café", ["\\xff", "é"])


def test_both_tables_evict_the_same_processes(native_lib):
    """Past its bound (here 2 processes, or 200 bytes of text) each table forgets the
    process set longest ago: the same exits lose their command line in both."""
    execs = [
        record(EXEC, pid=p, tgid=p, filename=b"/bin/p", argv=argv_area(b"x" * (p % 3 * 30)))
        for p in range(80, 86)
    ]
    exits = [record(EXIT, pid=p, tgid=p) for p in range(80, 86)]
    records = [
        *execs,
        record(FORK, pid=90, tgid=90, ppid=81),
        *exits,
        record(EXIT, pid=90, tgid=90),
    ]
    for cap, max_bytes in ((2, 1 << 20), (100, 200)):
        ring = FakeRing()
        for r in records:
            ring.add(r)
        fmt = ring.formatter(native_lib)
        fmt.execs.close()
        fmt.execs = json_native.NativeExecs(native_lib, cap, max_bytes)
        python = json_lines.ExecTexts(cap, max_bytes)
        expected = python_lines(records, python)
        assert fmt.format(ring.consumer, 100, 0).text == expected
        ran = what_ran(records, json_lines.ExecTexts(cap, max_bytes))
        known = {pid for pid, fields in ran if fields}
        assert known and known != set(range(80, 86)) | {90}
        fmt.close()
