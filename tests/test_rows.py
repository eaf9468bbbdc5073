"""The followed tree (--tree) and the held rows, on records packed from abi.py's
layouts and fed through the real stream loops: no kernel needed.

The tree is exact: a process leaves it once its exit record has been shown, a
reused pid is never credited to it, and the tables behind it stay bounded."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager

import pytest
from records import EXEC, EXIT, FORK, THREAD, LossesInMemory, record, ring_bytes

from procmon_ctl import rows as rows_mod
from procmon_ctl import stream
from procmon_ctl.abi import RingbufRecord
from procmon_ctl.decode import decode_event
from procmon_ctl.rows import Filters, ProcessRows

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


def exec_(tgid, ppid, ts, comm=b"ls"):
    return record(EXEC, pid=tgid, tgid=tgid, ppid=ppid, comm=comm, ts=ts, filename=b"/bin/" + comm)


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


def tree_filters(*members: int) -> Filters:
    return Filters(tree=set(members), tree_since_ns=T0 - 1)


def follow(records: list[bytes], mode: str, filters: Filters, monkeypatch) -> list[str]:
    """What `events` in `mode` prints for `records` (the header left out): the real
    stream loop, over a fake ring."""
    reader = FakeReader(records)

    @contextmanager
    def open_reader(*args, **kwargs):
        yield reader, LossesInMemory()

    monkeypatch.setattr(stream, "open_reader", open_reader)
    out = io.StringIO()
    opts = stream.StreamOptions(mode=mode, duration=0.001, filters=filters)
    stream.follow(None, opts, out)
    assert reader.committed == reader.end
    lines = out.getvalue().splitlines()
    return lines[2:] if mode in ("table", "wide") else lines[1:] if mode == "raw" else lines


def pids(lines: list[str], mode: str) -> list[int]:
    if mode == "json":
        return [json.loads(ln)["tgid"] for ln in lines]
    column = 2 if mode == "raw" else 0  # raw: TYPE PID TGID ...
    return [int(ln.split()[column]) for ln in lines]


# A member forks CHILD, which exits; OTHER (no member's child) then gets CHILD's pid.
REUSE = [
    fork(CHILD, ROOT, T0),
    exit_(CHILD, ROOT, T0 + 1, code=3),
    fork(CHILD, OTHER, T0 + 2, comm=b"stranger"),
    exit_(CHILD, OTHER, T0 + 3, comm=b"stranger"),
]


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
        assert lines[1].split()[3:6] == ["sh", "exited", "3"]
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
        assert [ln.split()[0] for ln in lines[1:]] == [str(CHILD)], (mode, lines)
        assert "worker" in lines[1] and "stranger" not in "\n".join(lines)
        assert filters.tree == {ROOT}


def test_held_fork_row_of_an_exited_child_is_shown(monkeypatch):
    """A child that exits without exec: its row comes out at its exit, under --tree."""
    records = [fork(CHILD, ROOT, T0, comm=b"python3"), exit_(CHILD, ROOT, T0 + 1)]
    filters = tree_filters(ROOT)
    assert follow(records, "table", filters, monkeypatch) == [f"{CHILD:<8} {ROOT:<8} python3"]


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
        rows.take(T0 + i)
    assert len(rows.shown) == 100 and min(rows.shown) == 3900
    # A pid forked again takes its former process's row with it.
    rows.feed(decode_event(fork(3999, OTHER, T0 + 2000)))
    assert 3999 not in rows.shown
