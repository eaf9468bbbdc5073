"""The followed tree (--tree) and the held rows, on records packed from abi.py's
layouts and fed through the real stream loops: no kernel needed.

The tree is exact: a process leaves it once its exit record has been shown, a
reused pid is never credited to it, and the tables behind it stay bounded."""

from __future__ import annotations

import io
import json
import shlex
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from records import (
    EXEC,
    EXEC_FAILED,
    EXIT,
    FORK,
    THREAD,
    TRUNCATED,
    LossesInMemory,
    argv_area,
    cgroup_json,
    record,
    ring_bytes,
)

from procmon_ctl.kernel.abi import RingbufRecord
from procmon_ctl.process import rows as rows_mod
from procmon_ctl.process.decode import decode_event, text
from procmon_ctl.process.rows import Filters, ProcessRows, Row
from procmon_ctl.process.users import UserNames
from procmon_ctl.stream import follow as stream
from procmon_ctl.views import render
from procmon_ctl.views.events import Mode, view_for

ROOT, CHILD, OTHER = 1000, 1001, 2000  # the followed root, its child, a stranger
T0 = 5_000_000_000  # ts_ns of the first record; the tree is known from T0 - 1
HDR = RingbufRecord.HDR_SZ.value


def fork(tgid, ppid, ts, comm=b"sh", thread=False, dropped=0, pid=None):
    return record(
        FORK,
        pid=pid or tgid,
        tgid=tgid,
        ppid=ppid,
        comm=comm,
        ts=ts,
        flags=THREAD if thread else 0,
        dropped=dropped,
    )


def exec_(tgid, ppid, ts, comm=b"ls", args=None, filename=None, flags=0, argc=None):
    """An exec of /bin/COMM; its arguments `args` (default: just COMM)."""
    return record(
        EXEC,
        pid=tgid,
        tgid=tgid,
        ppid=ppid,
        comm=comm,
        ts=ts,
        filename=filename or b"/bin/" + comm,
        argv=argv_area(*(args if args is not None else [comm])),
        argc=argc,
        flags=flags,
    )


def exit_(tgid, ppid, ts, comm=b"sh", code=0, dropped=0):
    return record(
        EXIT, pid=tgid, tgid=tgid, ppid=ppid, comm=comm, ts=ts, code=code, dropped=dropped
    )


class FakeReader:
    """The part of RingBufferReader the stream loops use: the records once, then
    nothing (the loops stop at their deadline).  Positions are offsets into `view`
    less the header, as if the ring started at position 0."""

    def __init__(self, records: list[bytes]):
        self.view, self.offsets = ring_bytes(records)
        self.read_pos = self.committed = self._batch_start = 0
        self.end = len(self.view)

    def _pos_after(self, i: int) -> int:
        """The position just after the i-th record (0-based) of `offsets`."""
        return self.offsets[i + 1] - HDR if i + 1 < len(self.offsets) else self.end

    def scan(self, limit: int) -> list[int]:
        taken = [off for off in self.offsets if off - HDR >= self.read_pos][:limit]
        self._batch_start = self.read_pos
        if taken:
            self.read_pos = self._pos_after(self.offsets.index(taken[-1]))
        return taken

    def position_of(self, offset: int) -> int:
        return offset - HDR

    def wait(self, timeout: float) -> None:
        pass

    def commit(self, n: int | None = None) -> None:
        if n == 0:
            self.read_pos = self._batch_start
        elif n is not None:
            first = next(i for i, off in enumerate(self.offsets) if off - HDR >= self._batch_start)
            self.read_pos = self._pos_after(first + n - 1)
        self.committed = self.read_pos

    def commit_to(self, pos: int) -> None:
        self.committed = pos


class UnnamedSession(LossesInMemory):
    """LossesInMemory as an unnamed reader's session: its slot resumes nothing, so
    no backlog line."""

    held = SimpleNamespace(resumed=False)


def tree_filters(*members: int) -> Filters:
    return Filters(tree=set(members), tree_since_ns=T0 - 1)


def follow(
    records: list[bytes], mode: str, filters: Filters | None = None, monkeypatch=None
) -> list[str]:
    """What `events` in `mode` prints for `records` (the header left out): the real
    stream loop, over a fake ring."""
    reader = FakeReader(records)

    @contextmanager
    def open_reader(*args, **kwargs):
        yield reader, UnnamedSession()

    monkeypatch.setattr(stream, "open_reader", open_reader)
    out = io.StringIO()
    view = view_for(Mode(mode), None, filters or Filters(), False, False, cgroup_json)
    stream.follow(SimpleNamespace(), stream.StreamOptions(duration=0.001), view, out)
    assert reader.committed == reader.end
    lines = out.getvalue().splitlines()
    return lines[2:] if mode in ("table", "wide", "raw") else lines


def pids(lines: list[str], mode: str) -> list[int]:
    if mode == "json":
        return [json.loads(ln)["tgid"] for ln in lines]
    column = {"raw": 2, "wide": 1}.get(mode, 0)  # raw: TYPE PID TGID ...; wide: TIME PID
    return [int(ln.split()[column]) for ln in lines]


# A member forks CHILD, which exits; OTHER (no member's child) then gets CHILD's pid.
REUSE = [
    fork(CHILD, ROOT, T0),
    exit_(CHILD, ROOT, T0 + 1, code=3),
    fork(CHILD, OTHER, T0 + 2, comm=b"stranger"),
    exit_(CHILD, OTHER, T0 + 3, comm=b"stranger"),
]


def test_each_view_says_how_far_the_ring_may_be_committed():
    """A fork's row waits for its exec: the table commits the ring up to that fork
    only (its record is the next reader's if this one stops); --raw writes its line
    at once and commits every record it took."""
    now = time.monotonic_ns()
    reader = FakeReader([exit_(OTHER, 1, now), fork(CHILD, ROOT, now)])
    offsets = reader.scan(10)
    opened = stream.Opened(reader, None, None, 0, None)
    table = view_for(Mode.TABLE, None, Filters(), False, False, cgroup_json)
    table.start(opened)
    taken = table.take(offsets, None, 0)
    assert (taken.lines, taken.read, taken.keep_from) == ([], 2, reader.position_of(offsets[1]))
    raw = view_for(Mode.RAW, None, Filters(), False, False, cgroup_json)
    raw.start(opened)
    taken = raw.take(offsets, None, 0)
    assert (taken.shown, taken.read, taken.keep_from) == (2, 2, None)
    assert raw.take(offsets, 1, 0)[1:3] == (1, 1)  # --count's room left: one record taken


@pytest.mark.parametrize("mode", ["table", "wide", "raw", "json"])
def test_exit_is_shown_then_the_pid_leaves_the_tree(mode, monkeypatch):
    """The child's own rows or lines, exit included, and nothing of the stranger
    that got its pid next."""
    filters = tree_filters(ROOT)
    lines = follow(REUSE, mode, filters, monkeypatch)
    expected = {"table": 1, "wide": 2, "raw": 2, "json": 2}[mode]
    assert pids(lines, mode) == [CHILD] * expected, lines
    assert "stranger" not in "\n".join(lines)
    if mode == "wide":
        assert lines[1].split()[4:7] == ["exit", "3", "after"]
    assert filters.tree == {ROOT}


def test_a_member_leaves_only_after_its_exit_record():
    filters = tree_filters(ROOT)
    events = [decode_event(r) for r in REUSE[:2]]
    filters.track(events[0])
    assert filters.tree == {ROOT, CHILD}
    filters.track(events[1])  # its exit: still matched...
    assert filters.match_event(events[1])
    filters.track(decode_event(exec_(ROOT, 1, T0 + 2)))  # ...until the next record
    assert filters.tree == {ROOT}


def test_tree_keeps_the_exits_descendants(monkeypatch):
    """A child outlives its parent (reparented): it stays followed, to its own exit."""
    grandchild = 1002
    records = [
        fork(CHILD, ROOT, T0),
        fork(grandchild, CHILD, T0 + 1),
        exit_(CHILD, ROOT, T0 + 2),
        exec_(grandchild, 1, T0 + 3),
        exit_(grandchild, 1, T0 + 4, comm=b"ls"),
        fork(OTHER, 1, T0 + 5),
    ]
    filters = tree_filters(ROOT)
    lines = follow(records, "raw", filters, monkeypatch)
    assert pids(lines, "raw") == [CHILD, grandchild, CHILD, grandchild, grandchild]
    assert filters.tree == {ROOT}


def test_lost_exit_reused_pid_leaves_the_tree_and_its_held_row_is_shown(monkeypatch):
    """The child's exit record was lost (the ring was full); its pid is forked again
    by a stranger: the child's held row still comes out, the stranger's never."""
    records = [
        fork(CHILD, ROOT, T0, comm=b"worker"),
        fork(CHILD, OTHER, T0 + 1, comm=b"stranger", dropped=1),
        exec_(CHILD, OTHER, T0 + 2, comm=b"stranger"),
        exit_(CHILD, OTHER, T0 + 3, comm=b"stranger"),
    ]
    for mode in ("table", "wide"):
        filters = tree_filters(ROOT)
        lines = follow(records, mode, filters, monkeypatch)
        assert lines[0].startswith("--") and "1 event(s) lost" in lines[0], lines
        assert pids(lines[1:], mode) == [CHILD], (mode, lines)
        assert "worker" in lines[1] and "stranger" not in "\n".join(lines)
        assert filters.tree == {ROOT}


def test_held_fork_row_of_an_exited_child_is_shown(monkeypatch):
    """A child that exits without exec: its row comes out at its exit, under --tree."""
    records = [fork(CHILD, ROOT, T0, comm=b"python3"), exit_(CHILD, ROOT, T0 + 1)]
    filters = tree_filters(ROOT)
    assert follow(records, "table", filters, monkeypatch) == [f"{CHILD:<7} {ROOT:<7} python3"]


def test_backlog_only_adds():
    """Records from before the tree was read from /proc replay history on top of the
    tree as it is now: an old exit of a pid a member has now does not remove it."""
    filters = Filters(tree={ROOT, CHILD}, tree_since_ns=T0)
    old = [exit_(CHILD, ROOT, T0 - 10), fork(CHILD, OTHER, T0 - 9), fork(1500, ROOT, T0 - 8)]
    for r in old:
        filters.track(decode_event(r))
    filters.track(decode_event(exec_(ROOT, 1, T0 + 1)))
    assert filters.tree == {ROOT, CHILD, 1500}


def test_threads_do_not_change_the_tree():
    filters = tree_filters(ROOT)
    filters.track(decode_event(fork(ROOT, 1, T0, thread=True, pid=1003)))
    filters.track(decode_event(fork(ROOT, OTHER, T0 + 1, thread=True, pid=1004)))
    assert filters.tree == {ROOT}


def test_tree_stays_flat_over_many_processes():
    """Many processes (a few thousand pids, each reused) leave the tree, the
    held rows and the shown rows as small as the live processes."""
    filters = tree_filters(ROOT)
    rows = ProcessRows(follow_exits=True)
    ts = T0
    for i in range(50_000):
        pid = 3000 + i % 5000
        for r in (fork(pid, ROOT, ts), exec_(pid, ROOT, ts + 1), exit_(pid, ROOT, ts + 2)):
            e = decode_event(r)
            rows.feed(e)
            filters.track(e)
        rows.take(ts)
        ts += 3
    filters.track(decode_event(exec_(ROOT, 1, ts)))
    assert filters.tree == {ROOT} and not rows.queue and not rows.pending and not rows.shown


def test_shown_is_bounded(monkeypatch):
    """Exit records lost by the thousand: --wide forgets the oldest shown rows."""
    monkeypatch.setattr(rows_mod, "SHOWN_LIMIT", 100)
    rows = ProcessRows(follow_exits=True)
    for i in range(1000):
        rows.feed(decode_event(fork(3000 + i, ROOT, T0 + i)))
        rows.feed(decode_event(exec_(3000 + i, ROOT, T0 + i)))
        rows.take(T0 + i + rows_mod.EXEC_WINDOW_NS)
    assert len(rows.shown) == 100 and min(rows.shown) == 3900
    # A pid forked again takes its former process's row with it.
    rows.feed(decode_event(fork(3999, OTHER, T0 + 2000)))
    assert 3999 not in rows.shown


def test_wide_shows_the_exit_of_a_process_that_started_before_the_reader(monkeypatch):
    """An exit record of a process whose fork this reader never saw: --wide shows its
    exit row from what the record says (name, lifetime, how it ended), and the
    filters judge that row as any other (--ppid here)."""
    killed = record(EXIT, tgid=OTHER, pid=OTHER, ppid=ROOT, comm=b"sleep", sig=11,
                    duration=2_500_000_000, ts=T0)  # fmt: skip
    ended = exit_(CHILD, ROOT, T0 + 1, comm=b"make", code=2)
    stranger = exit_(CHILD + 1, OTHER, T0 + 2, comm=b"cc")
    lines = follow([killed, ended, stranger], "wide", Filters(ppid=frozenset({ROOT})), monkeypatch)
    cost = ["cpu", "158.8ms", "10.0M:"]  # records.USAGE
    assert [ln.split()[1:] for ln in lines] == [
        [str(OTHER), str(ROOT), "root", "SIGSEGV", "after", "2.50s", *cost, "[sleep]"],
        [str(CHILD), str(ROOT), "root", "exit", "2", "after", "0.0ms", *cost, "[make]"],
    ], lines
    # The narrow table has no exit rows at all.
    assert follow([killed, ended], "table", None, monkeypatch) == []


# --- a process that execs again: the row shows what it finally ran -------------------

MS = 1_000_000
WINDOW = rows_mod.EXEC_WINDOW_NS


def env_true(pid=CHILD, ts=T0):
    """`env /bin/true xyz` started by ROOT: fork, exec of env, exec of true."""
    return [
        fork(pid, ROOT, ts, comm=b"bash"),
        exec_(pid, ROOT, ts + MS, b"env", [b"env", b"/bin/true", b"xyz"], b"/usr/bin/env"),
        exec_(pid, ROOT, ts + 2 * MS, b"true", [b"/bin/true", b"xyz"], b"/bin/true"),
    ]


def test_the_table_shows_the_last_exec(monkeypatch):
    lines = follow([*env_true(), exit_(CHILD, ROOT, T0 + 3 * MS, comm=b"true")], "table", None,
                   monkeypatch)  # fmt: skip
    assert lines == [f"{CHILD:<7} {ROOT:<7} {'true':<15} /bin/true xyz"]


@pytest.mark.parametrize("ends", ["exit", "window"])
def test_a_row_waits_after_an_exec_for_the_next(ends):
    """After an exec the row is held until its process exits or EXEC_WINDOW_NS pass
    without another exec: the second exec, 1 ms later, is the one shown."""
    rows = ProcessRows()
    records = env_true()
    for r in records[:2]:
        rows.feed(decode_event(r))
    assert rows.take(T0 + MS + WINDOW - 1) == []  # env exec'd: maybe not the last
    rows.feed(decode_event(records[2]))
    if ends == "exit":
        rows.feed(decode_event(exit_(CHILD, ROOT, T0 + 3 * MS, comm=b"true")))
        now = T0 + 3 * MS
    else:
        assert rows.take(T0 + 2 * MS + WINDOW - 1) == []
        now = T0 + 2 * MS + WINDOW
    [row] = rows.take(now)
    assert (row.comm, row.filename, row.argv) == ("true", "/bin/true", ("/bin/true", "xyz"))
    assert not rows.queue and not rows.pending


def test_a_first_exec_long_after_the_fork_names_the_row_of_a_backlog(monkeypatch):
    """On a loaded host a child may exec seconds after its fork (seen in a VM under
    load): read as a backlog, where the exec arrives with its fork, the row still
    takes the program's name, as a row held for its first exec always has."""
    late = T0 + 20 * WINDOW
    records = [
        fork(CHILD, ROOT, T0),
        exec_(CHILD, ROOT, late, b"ls", [b"ls", b"/tmp"]),
        exit_(CHILD, ROOT, late + MS, comm=b"ls"),
    ]
    assert follow(records, "table", None, monkeypatch) == [
        f"{CHILD:<7} {ROOT:<7} {'ls':<15} ls /tmp"
    ]


def test_an_exec_after_the_window_leaves_the_row_and_the_wide_exit_row_shows_it(monkeypatch):
    """A daemon that re-execs itself a second later: its row stays what it first
    ran; --wide's exit row names the program that exited."""
    records = [
        fork(CHILD, ROOT, T0),
        exec_(CHILD, ROOT, T0 + MS, b"daemon", [b"daemon", b"--start"]),
        exec_(CHILD, ROOT, T0 + MS + WINDOW + 1, b"daemon2", [b"daemon2", b"--run"]),
        exit_(CHILD, ROOT, T0 + 5 * WINDOW, comm=b"daemon2", code=1),
    ]
    table = follow(records, "table", None, monkeypatch)
    assert table == [f"{CHILD:<7} {ROOT:<7} {'daemon':<15} daemon --start"]
    wide = follow(records, "wide", None, monkeypatch)
    assert wide[0].split()[4:] == ["exec", "daemon", "--start"]
    # With what the process cost (records.USAGE: 158.8 ms of CPU, 2560 pages).
    assert wide[1].split()[4:] == [
        *("exit", "1", "after", "0.0ms", "cpu", "158.8ms", "10.0M:"),
        *("daemon2", "--run"),
    ]
    # The same once the row was taken before the second exec.
    rows = ProcessRows(follow_exits=True)
    for r in records[:2]:
        rows.feed(decode_event(r))
    assert [r.comm for r in rows.take(T0 + MS + WINDOW)] == ["daemon"]
    for r in records[2:]:
        rows.feed(decode_event(r))
    [ended] = rows.take(T0 + 5 * WINDOW)
    assert (ended.exited, ended.comm, ended.argv) == (True, "daemon2", ("daemon2", "--run"))


def test_a_process_whose_fork_was_not_seen_gets_its_row_at_its_first_exec(monkeypatch):
    """`podman exec`'s own process is forked outside the container and moved in, so a
    --container reader gets its exec record but not its fork; a process that ran
    before the reader execs likewise.  Its row starts at that exec, is held for
    the next exec as a fork row is, and a later exec adds no second row."""
    records = [
        exec_(OTHER, ROOT, T0, b"env", [b"env", b"/bin/sh", b"-c", b":"], b"/usr/bin/env"),
        exec_(OTHER, ROOT, T0 + MS, b"sh", [b"/bin/sh", b"-c", b":"], b"/bin/sh"),
        exec_(OTHER, ROOT, T0 + MS + 2 * WINDOW, b"sleep", [b"sleep", b"1"], b"/bin/sleep"),
        exit_(OTHER, ROOT, T0 + 5 * WINDOW, comm=b"sleep"),
    ]
    table = follow(records, "table", None, monkeypatch)
    assert table == [f"{OTHER:<7} {ROOT:<7} {'sh':<15} /bin/sh -c :"]
    wide = follow(records, "wide", None, monkeypatch)
    assert [ln.split()[1:5] for ln in wide] == [
        [str(OTHER), str(ROOT), "root", "exec"],
        [str(OTHER), str(ROOT), "root", "exit"],
    ], wide
    assert wide[0].split()[5:] == ["/bin/sh", "-c", ":"]
    assert wide[1].split()[-2:] == ["sleep", "1"]  # the exit row: what it ran last
    rows = ProcessRows()
    for r in records:
        rows.feed(decode_event(r))
    rows.flush()
    assert not rows.known and not rows.pending


def test_the_processes_with_a_row_are_bounded(monkeypatch):
    """Exit records lost by the thousand: a table forgets the oldest processes it had
    a row for (one of them may get a second row at an exec), and an exit forgets
    its process."""
    monkeypatch.setattr(rows_mod, "SHOWN_LIMIT", 100)
    rows = ProcessRows()
    for i in range(1000):
        rows.feed(decode_event(fork(3000 + i, ROOT, T0 + i)))
    rows.take(T0 + 2000 + WINDOW)
    assert list(rows.known) == list(range(3900, 4000))
    rows.feed(decode_event(exit_(3999, ROOT, T0 + 3000)))
    assert 3999 not in rows.known and len(rows.known) == 99
    # One it forgot: its exec is a row of its own; one it knows: none.
    rows.feed(decode_event(exec_(3000, ROOT, T0 + 3001)))
    rows.feed(decode_event(exec_(3998, ROOT, T0 + 3002)))
    assert [r.pid for r in rows.flush()] == [3000]


def test_a_process_that_keeps_exec_ing_is_held_no_longer_than_the_limit():
    """An exec every 90 ms, for ever: each would keep the row open; it is final
    HOLD_LIMIT_NS after its fork, with the last exec before then, and the rows
    behind it wait no longer."""
    rows = ProcessRows()
    rows.feed(decode_event(fork(CHILD, ROOT, T0)))
    rows.feed(decode_event(fork(OTHER, ROOT, T0 + 1)))
    step = 90 * MS
    for i in range(1, 20):
        rows.feed(decode_event(exec_(CHILD, ROOT, T0 + i * step, f"x{i}".encode())))
        taken = rows.take(T0 + i * step)
        if taken:
            break
    limit = T0 + rows_mod.HOLD_LIMIT_NS
    assert T0 + i * step > limit >= T0 + (i - 1) * step, i
    assert [r.tgid for r in taken] == [CHILD, OTHER]
    assert taken[0].comm == f"x{i - 1}"  # the last exec before the limit


def test_rows_keep_ring_order_and_the_held_row_bounds_the_commit():
    """A row held for a second exec keeps back the rows after it (which are
    final), and the ring position the reader may hand back."""
    rows = ProcessRows()
    first, second = 2001, 2002
    records = [
        fork(first, ROOT, T0),
        exec_(first, ROOT, T0 + MS, b"env", [b"env", b"sleep", b"9"]),
        fork(second, ROOT, T0 + 2 * MS),
        exec_(second, ROOT, T0 + 3 * MS, b"ls"),
        exit_(second, ROOT, T0 + 4 * MS, comm=b"ls"),
        exec_(first, ROOT, T0 + 5 * MS, b"sleep", [b"sleep", b"9"]),
    ]
    for pos, r in enumerate(records):
        rows.feed(decode_event(r), pos)
        if pos == 4:
            assert rows.take(T0 + 4 * MS) == [] and rows.first_pos() == 0
    assert rows.take(T0 + 5 * MS + WINDOW - 1) == [] and rows.first_pos() == 0
    taken = rows.take(T0 + 5 * MS + WINDOW)
    assert [(r.tgid, r.comm) for r in taken] == [(first, "sleep"), (second, "ls")]
    assert rows.first_pos() is None


def test_filters_judge_the_last_exec(monkeypatch):
    filters = Filters(comm=frozenset({"true"}))
    assert len(follow(env_true(), "table", filters, monkeypatch)) == 1
    assert follow(env_true(), "table", Filters(comm=frozenset({"env"})), monkeypatch) == []


def test_a_failed_exec_does_not_end_the_row(monkeypatch):
    """exec_failed records (an `events --failed` reader's) change nothing: the
    process runs on, and may exec something else."""
    failed = record(EXEC_FAILED, pid=CHILD, tgid=CHILD, ppid=ROOT, comm=b"sh", ts=T0 + MS,
                    filename=b"/nope", argv=argv_area(b"nope"), error=-2)  # fmt: skip
    records = [fork(CHILD, ROOT, T0), failed, exec_(CHILD, ROOT, T0 + 2 * MS, b"ls")]
    rows = ProcessRows()
    for r in records:
        rows.feed(decode_event(r))
    assert rows.pending and rows.take(T0 + 2 * MS) == []
    assert [r.comm for r in rows.flush()] == ["ls"]


def test_backlog_batches_use_the_records_clock(monkeypatch):
    """Reading a backlog (full batches), a row whose second exec is in the next
    batch is not taken at the end of the first, however old its records are."""
    monkeypatch.setattr(stream, "BATCH_LIMIT", 2)
    lines = follow(env_true(), "table", None, monkeypatch)
    assert lines == [f"{CHILD:<7} {ROOT:<7} {'true':<15} /bin/true xyz"]


# --- the command line in the table ----------------------------------------------------


def row_of(*records: bytes, follow_exits: bool = False):
    rows = ProcessRows(follow_exits=follow_exits)
    for r in records:
        rows.feed(decode_event(r))
    return rows.flush()


def test_the_command_line_is_quoted_and_escaped(monkeypatch):
    """Empty arguments and arguments with spaces are quoted, control characters and
    bidi controls escaped as in names, bytes that are not UTF-8 as \\xNN."""
    args = [b"printf", b"", b"a b", b"\x1b]0;x\x07", b"r\xe2\x80\xaeL", b"caf\xe9", b"it's", b"..."]
    [row] = row_of(fork(CHILD, ROOT, T0), exec_(CHILD, ROOT, T0 + 1, b"printf", args))
    line = render.row_line(row)
    cmd = "printf '' 'a b' '\\x1b]0;x\\x07' 'r\\u202eL' 'caf\\xe9' 'it'\"'\"'s' '...'"
    assert line == f"{CHILD:<7} {ROOT:<7} {'printf':<15} {cmd}"
    assert line.isprintable()
    assert shlex.split(cmd) == [render.printable(text(a)) for a in args]


def test_a_truncated_command_line_ends_with_dots():
    area = argv_area(b"cc", b"-c", b"x.c")[:-3]  # the last argument cut
    r = record(EXEC, pid=CHILD, tgid=CHILD, ppid=ROOT, comm=b"cc", ts=T0 + 1,
               filename=b"/usr/bin/cc", argv=area, argc=40, flags=TRUNCATED)  # fmt: skip
    [row] = row_of(fork(CHILD, ROOT, T0), r)
    assert row.argv == ("cc", "-c", "x") and row.argv_truncated
    assert render.row_line(row).endswith(" cc -c x ...")
    nothing = record(EXEC, pid=CHILD, tgid=CHILD, ppid=ROOT, comm=b"cc", ts=T0 + 1,
                     filename=b"/usr/bin/cc", argc=3, flags=TRUNCATED)  # fmt: skip
    [row] = row_of(fork(CHILD, ROOT, T0), nothing)  # --argv-bytes 0
    assert render.row_line(row).endswith(" cc              ...")


def test_rows_without_exec_have_no_command_line():
    [row] = row_of(fork(CHILD, ROOT, T0, comm=b"python3"))
    assert render.row_line(row, 40) == f"{CHILD:<7} {ROOT:<7} python3"


def test_a_terminal_s_width_cuts_the_command_line_only():
    args = [b"python3", b"-c", b"x" * 200]
    [row] = row_of(fork(CHILD, ROOT, T0), exec_(CHILD, ROOT, T0 + 1, b"python3", args))
    whole = render.row_line(row)
    assert whole.endswith("x" * 200) and len(whole) == 32 + len("python3 -c ") + 200
    cut = render.row_line(row, 60)
    assert len(cut) == 60 and cut.endswith("x\u2026") and whole.startswith(cut[:-1])
    # Narrower than PID, PPID and COMM: the whole line is cut to the width.
    assert render.row_line(row, 20) == f"{CHILD:<7} {ROOT:<7} pyt\u2026"
    # Wide characters take two columns.
    wide = [b"echo", "日本語".encode() * 20]
    [row] = row_of(fork(CHILD, ROOT, T0), exec_(CHILD, ROOT, T0 + 1, b"echo", wide))
    cut = render.row_line(row, 60)
    assert render.columns(cut) <= 60 and cut.endswith("\u2026") and len(cut) < 60


def test_wide_shows_the_whole_command_line_and_the_file_when_argv0_does_not_name_it(
    monkeypatch,
):
    records = [*env_true(), exit_(CHILD, ROOT, T0 + 3 * MS, comm=b"true", code=2)]
    long = [b"/bin/true", b"y" * 500]
    records[2] = exec_(CHILD, ROOT, T0 + 2 * MS, b"true", long, b"/bin/true")
    started, ended = follow(records, "wide", None, monkeypatch)
    assert started.split()[1:] == [str(CHILD), str(ROOT), "root", "exec", "/bin/true", "y" * 500]
    assert ended.split()[4:11] == ["exit", "2", "after", "0.0ms", "cpu", "158.8ms", "10.0M:"]
    assert ended.endswith(": /bin/true " + "y" * 500)
    # argv[0] that a PATH lookup does not turn into the file: the file, in parentheses.
    records[2] = exec_(CHILD, ROOT, T0 + 2 * MS, b"true", [b"-bash", b"-l"], b"/bin/true")
    started, ended = follow(records, "wide", None, monkeypatch)
    assert started.endswith(" exec     (/bin/true) -bash -l"), started
    records[2] = exec_(CHILD, ROOT, T0 + 2 * MS, b"true", [b"true"], b"/usr/bin/true")
    started, ended = follow(records, "wide", None, monkeypatch)
    assert started.endswith(" exec     true"), started


def test_raw_exec_lines_show_the_arguments(monkeypatch):
    lines = follow(env_true(), "raw", None, monkeypatch)
    assert lines[1].split()[6:] == ["env", "/bin/true", "xyz"]
    assert lines[2].endswith(" /bin/true xyz")
    failed = record(EXEC_FAILED, pid=CHILD, tgid=CHILD, ppid=ROOT, comm=b"sh", ts=T0,
                    filename=b"/no pe", argv=argv_area(b"no pe", b"-x"), error=-2)  # fmt: skip
    line = render.raw_line(decode_event(failed))
    assert line.split()[:1] + line.split()[5:] == [
        "exec!", "sh", "ENOENT:", "'/no", "pe'", "'no", "pe'", "-x",
    ]  # fmt: skip


def test_wide_names_the_user():
    """USER: the name the user database has for the uid, cut as ps cuts it; the
    number where no user has it."""
    names = {0: "root", 1000: "a-long-user-name", 4242: "4242"}
    lines = [
        render.wide_line(Row(CHILD, CHILD, ROOT, uid, "true", argv=("true",)), user=names.get)
        for uid in (0, 1000, 4242)
    ]
    assert [ln.split()[3] for ln in lines] == ["root", "a-long-+", "4242"]
    assert len({ln.index(" exec ") for ln in lines}) == 1  # the columns line up
    assert UserNames().name(0) == "root" and UserNames().name(4294967294) == "4294967294"


def test_the_header_names_the_command_line():
    assert render.header("table").splitlines()[0].split() == ["PID", "PPID", "COMM", "CMDLINE"]
    assert render.header("table").splitlines()[0].index("CMDLINE") == 32
    titles, rule = render.header("wide").splitlines()
    assert titles.split() == ["TIME", "PID", "PPID", "USER", "EVENT", "COMMAND"]
    # The rule's dashes start where the titles do.
    assert [i for i, c in enumerate(titles) if c != " " and (i == 0 or titles[i - 1] == " ")] == [
        i for i, c in enumerate(rule) if c == "-" and (i == 0 or rule[i - 1] == " ")
    ]
    assert render.header("table", time=True).splitlines()[0].split()[0] == "TIME"


def test_the_container_column_comes_with_the_first_row_from_a_container(monkeypatch):
    """In every table mode, a reader that started without the CONTAINER column (no
    container ran) writes the header again with it before the first row from a
    container; host rows show '-' from then on, and every row lines up with the
    header above it.  Started with it, the header has it from the first line."""
    from procmon_ctl.process.cgroups import CgroupInfo
    from procmon_ctl.views.events import ContainerColumn

    web = "c" * 64
    infos = {
        1: CgroupInfo(1, "/", None, None, None),
        7: CgroupInfo(7, f"/machine.slice/libpod-{web}.scope", "podman", web, None, "web"),
        8: CgroupInfo(8, "/x", "podman", "ab" * 32, None),  # a name its runtime does not say
    }
    records = []
    for i, (pid, cgroup) in enumerate([(CHILD, 1), (OTHER, 7), (OTHER + 1, 8), (CHILD + 1, 1)]):
        ts = T0 + 2 * i
        records.append(record(FORK, pid=pid, tgid=pid, ppid=ROOT, ts=ts, cgroup=cgroup))
        records.append(record(EXIT, pid=pid, tgid=pid, ppid=ROOT, ts=ts + 1, cgroup=cgroup))
    for mode in ("table", "wide", "raw"):
        for shown in (False, True):
            reader = FakeReader(records)

            @contextmanager
            def open_reader(*args, reader=reader, **kwargs):
                yield reader, UnnamedSession()

            monkeypatch.setattr(stream, "open_reader", open_reader)
            out = io.StringIO()
            column = ContainerColumn(infos.__getitem__, shown)
            view = view_for(
                Mode(mode), None, Filters(), False, False, cgroup_json, container=column
            )
            stream.follow(SimpleNamespace(), stream.StreamOptions(duration=0.001), view, out)
            lines = out.getvalue().splitlines()
            titles = [i for i, ln in enumerate(lines) if ln.split()[0] in ("PID", "TIME", "TYPE")]
            # Without the column at first: the host's first rows, then the header again.
            assert len(titles) == (1 if shown else 2), (mode, lines)
            at = lines[titles[-1]].index("CONTAINER")
            cells = [ln[at:].split()[0] for ln in lines[titles[-1] + 2 :]]
            each = 1 if mode == "table" else 2  # a fork row, or fork and exit
            full = [c for c in ("-", "web", "abababababab", "-") for _ in range(each)]
            assert cells == (full if shown else full[each:]), (mode, lines)
            if not shown:
                assert "CONTAINER" not in lines[0] and len(lines[0]) < len(lines[2 + each])


def test_the_container_cell_is_cut_to_its_column():
    row = Row(CHILD, CHILD, ROOT, 0, "sh", argv=("sh",))
    long_name = "a-very-long-container-name"
    cut = render.row_line(row, 80, container=long_name)
    whole = render.row_line(row, None, container=long_name)
    assert cut.split()[3] == long_name[:11] + "\u2026" and whole.split()[3] == long_name
    # The command line starts under CMDLINE.
    assert cut.rindex(" sh") + 1 == render.header("table", container=True).index("CMDLINE")
    assert render.container_cell(None, "f" * 64) == "f" * 12
    assert render.container_cell(None, "my-nspawn-machine") == "my-nspawn-machine"
    assert render.container_cell(None, None) == render.NO_CONTAINER == "-"
