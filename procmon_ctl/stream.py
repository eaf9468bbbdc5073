"""Reading the stream: batches of decoded events from the pinned ring buffer,
turned into rows (one per new process, named by what it runs) and filtered.

Kept free of pydantic and typer: this is the hot path."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TextIO

from . import json_native
from .decode import Event, decode_at, json_lines
from .load import default_wakeup_bytes, write_settings
from .pins import PinLayout
from .ringbuf import RingBufferReader
from .system import require_root

# How long the reader sleeps when the kernel has not woken it.  The programs
# wake it early once an eighth of the ring is full, so this bounds latency only.
POLL_INTERVAL = 0.05

# A fork is shown once the child execs, or after this long without an exec.
# Shells and launchers exec within a millisecond or two of forking; 100 ms leaves
# room for a loaded machine and is still well below what a person notices.
EXEC_WINDOW_NS = 100_000_000


@contextmanager
def open_reader(layout: PinLayout, threads: bool, from_now: bool) -> Iterator[RingBufferReader]:
    """The one reader of this pin set, with the kernel told whether to stream threads."""
    require_root("reading the ring buffer")
    with layout.reader_lock(), RingBufferReader(layout.map("events")) as reader:
        write_settings(layout, threads, default_wakeup_bytes(reader.size))
        if from_now:
            reader.skip_backlog()
        try:
            yield reader
        finally:
            if threads and layout.map("settings").exists():
                # A thread storm should not fill the ring while nobody asked for threads.
                write_settings(layout, False, default_wakeup_bytes(reader.size))


# Records taken from the ring at most per batch; a full batch is followed by the
# next at once, anything less by a sleep of POLL_INTERVAL.
BATCH_LIMIT = 4096


def offset_batches(reader: RingBufferReader, deadline: float | None) -> Iterator[list[int]]:
    """Batches of record offsets into reader.view until `deadline` (time.monotonic()).

    After a batch that emptied the ring the reader sleeps a poll period (the kernel
    wakes it early only when much data waits), so a busy stream is read in large
    batches, not one tiny batch per wakeup.  An empty batch means the poll period
    passed with nothing new.  At the deadline, what already waits is still read."""
    while True:
        offsets = reader.scan(BATCH_LIMIT)
        if offsets:
            yield offsets
            if len(offsets) >= BATCH_LIMIT:
                continue
        if not _wait_for_more(reader, deadline, bool(offsets)):
            return
        if not offsets:
            yield offsets


def _wait_for_more(reader: RingBufferReader, deadline: float | None, took: bool) -> bool:
    """After a batch that emptied the ring: sleep a poll period, or (past the
    deadline) go on only while the last batch found something.  False: stop."""
    now = time.monotonic()
    if deadline is not None and now >= deadline:
        return took
    reader.wait(POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - now))
    return True


def event_batches(reader: RingBufferReader, deadline: float | None) -> Iterator[list[Event]]:
    """Decoded batches until `deadline` (time.monotonic()).  An empty batch means the
    poll period passed.  The caller commits what it consumed with reader.commit()."""
    view = reader.view
    for offsets in offset_batches(reader, deadline):
        yield [decode_at(view, off) for off in offsets]


@dataclass(slots=True)
class Row:
    """One line of the default table: a new process (or thread, with --threads)."""

    pid: int
    tgid: int
    ppid: int
    uid: int
    comm: str
    filename: str = ""
    exit_code: int | None = None
    exit_signal: int | None = None
    duration_ns: int | None = None
    thread: bool = False
    exited: bool = False  # an exit row that follows its process's row (--wide)


@dataclass
class Filters:
    comm: str | None = None
    pid: int | None = None
    ppid: int | None = None
    uid: int | None = None
    tree: set[int] | None = None  # the followed process tree, grown as children appear

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.comm, self.pid, self.ppid, self.uid, self.tree))

    def track(self, e: Event) -> None:
        """Grow the followed tree with new children of its members."""
        if self.tree is not None and e.type == "fork" and not e.thread and e.ppid in self.tree:
            self.tree.add(e.tgid)

    def match(self, pid: int, ppid: int, uid: int, comm: str) -> bool:
        return (
            (self.pid is None or pid == self.pid)
            and (self.ppid is None or ppid == self.ppid)
            and (self.uid is None or uid == self.uid)
            and (self.comm is None or comm == self.comm)
            and (self.tree is None or pid in self.tree)
        )

    def match_event(self, e: Event) -> bool:
        return self.match(e.tgid, e.ppid, e.uid, e.comm)


def descendants(root: int) -> set[int]:
    """`root` and every process now below it, from /proc (--tree starts from here)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


@dataclass
class ProcessRows:
    """fork/exec/exit events in, table rows out.

    At fork time a child still carries its parent's name, so a fork is held
    until the child execs (the row takes the exec'd name and filename), exits,
    or EXEC_WINDOW_NS passes (a worker or subshell keeps the inherited name)."""

    follow_exits: bool = False  # --wide: an exit row follows each shown process
    window_ns: int = EXEC_WINDOW_NS
    pending: dict[int, tuple[int, Row]] = field(default_factory=dict)
    shown: dict[int, Row] = field(default_factory=dict)

    def feed(self, e: Event) -> list[Row]:
        if e.type == "fork":
            row = Row(e.pid, e.tgid, e.ppid, e.uid, e.comm, thread=e.thread)
            if e.thread:
                return [row]
            self.pending[e.tgid] = (e.ts_ns + self.window_ns, row)
            return []
        held = self.pending.pop(e.tgid, None)
        if e.type == "exec":
            if held is None:
                return []
            row = held[1]
            row.comm, row.filename, row.uid = e.comm, e.filename or "", e.uid
            return [self._show(row)]
        # exit
        out = [self._show(held[1])] if held else []
        row = self.shown.pop(e.tgid, None)
        if row is not None and self.follow_exits:
            out.append(
                Row(
                    row.pid,
                    row.tgid,
                    row.ppid,
                    row.uid,
                    row.comm,
                    row.filename,
                    e.exit_code,
                    e.exit_signal,
                    e.duration_ns,
                    exited=True,
                )
            )
        return out

    def _show(self, row: Row) -> Row:
        if self.follow_exits:
            self.shown[row.pid] = row
        return row

    def expire(self, now_ns: int) -> list[Row]:
        """Rows whose exec window has passed without an exec."""
        if not self.pending:
            return []
        due = [pid for pid, (deadline, _) in self.pending.items() if deadline <= now_ns]
        return [self._show(self.pending.pop(pid)[1]) for pid in due]

    def flush(self) -> list[Row]:
        return self.expire(1 << 63)


@dataclass
class StreamOptions:
    mode: str = "table"  # table | wide | raw | json
    threads: bool = False
    count: int | None = None
    duration: float | None = None
    from_now: bool = False
    filters: Filters = field(default_factory=Filters)


def batch_scheduling() -> None:
    """SCHED_BATCH for this process: the same CPU share, but its wakeups (every
    POLL_INTERVAL, with a batch to write) do not preempt the work being watched.
    In a thread storm the workload ran measurably faster with it (docs/benchmarks.md)."""
    with suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def follow(layout: PinLayout, opts: StreamOptions, out: TextIO) -> int:
    """Stream events to `out` until --count, --duration or an interrupt; returns how
    many rows or lines were written.  Each batch is written with one call and only
    then consumed from the ring, so nothing read is lost if the reader dies."""
    from . import render

    fmt_gap = render.gap_json if opts.mode == "json" else render.gap_line
    fmt_event = render.event_json if opts.mode == "json" else render.raw_line
    fmt_row = render.wide_line if opts.mode == "wide" else render.row_line
    rows = ProcessRows(follow_exits=opts.mode == "wide") if opts.mode in ("table", "wide") else None
    filters = opts.filters
    deadline = time.monotonic() + opts.duration if opts.duration is not None else None
    limit = opts.count
    emitted = 0
    header = render.header(opts.mode)
    if header:
        out.write(header)
        out.flush()

    def take(row_list: list[Row], lines: list[str]) -> None:
        nonlocal emitted
        for r in row_list:
            if limit is not None and emitted >= limit:
                return
            if filters.match(r.tgid, r.ppid, r.uid, r.comm):
                lines.append(fmt_row(r))
                emitted += 1

    batch_scheduling()
    with open_reader(layout, opts.threads, opts.from_now) as reader:
        if opts.mode == "json" and not filters.active:
            return _follow_json(reader, deadline, limit, out)
        for events in event_batches(reader, deadline):
            lines: list[str] = []
            consumed = len(events)
            for i, e in enumerate(events):
                if e.dropped_before:
                    lines.append(fmt_gap(e.dropped_before))
                filters.track(e)
                if rows is not None:
                    take(rows.feed(e), lines)
                elif filters.match_event(e):
                    lines.append(fmt_event(e))
                    emitted += 1
                if limit is not None and emitted >= limit:
                    consumed = i + 1
                    break
            if rows is not None and (limit is None or emitted < limit):
                take(rows.expire(time.monotonic_ns()), lines)
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
            reader.commit(consumed)
            if limit is not None and emitted >= limit:
                return emitted
        if rows is not None:
            lines = []
            take(rows.flush(), lines)
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
    return emitted


def _follow_json(
    reader: RingBufferReader, deadline: float | None, limit: int | None, out: TextIO
) -> int:
    """follow() for `--json` without filters: records straight to JSON lines, in C
    when the native formatter is built, else in Python (same text)."""
    lib = json_native.library()
    if lib is not None:
        with json_native.MappedRing(lib, reader.fd, reader.size) as ring:
            return _follow_json_native(reader, ring.formatter, deadline, limit, out)
    view = reader.view
    emitted = 0
    for offsets in offset_batches(reader, deadline):
        if limit is not None and len(offsets) > limit - emitted:
            del offsets[limit - emitted :]
        lines: list[str] = []
        json_lines(view, offsets, lines)
        if lines:
            lines.append("")
            out.write("\n".join(lines))
            out.flush()
        reader.commit(len(offsets))
        emitted += len(offsets)
        if limit is not None and emitted >= limit:
            break
    return emitted


def _follow_json_native(
    reader: RingBufferReader,
    formatter: json_native.JsonLineFormatter,
    deadline: float | None,
    limit: int | None,
    out: TextIO,
) -> int:
    """_follow_json() with the C formatter: the same batching, polling and commit
    after write as offset_batches(), with no Python object per record."""
    view = reader.view
    emitted = 0
    while True:
        want = BATCH_LIMIT if limit is None else min(BATCH_LIMIT, limit - emitted)
        start = reader.consumer_pos
        batch = formatter.format(start, want)
        text, taken, pos = batch.text, batch.records, batch.pos
        if batch.stop == json_native.STOP_FOREIGN:
            offset, pos = reader.record_at(pos)
            lines: list[str] = []
            json_lines(view, [offset], lines)
            lines.append("")
            text += "\n".join(lines)
            taken += 1
        if text:
            out.write(text)
            out.flush()
        if pos != start:
            reader.commit_to(pos)
        emitted += taken
        if limit is not None and emitted >= limit:
            return emitted
        if batch.stop != json_native.STOP_CAUGHT_UP:
            continue
        if not _wait_for_more(reader, deadline, taken > 0):
            return emitted
