"""Reading the stream: ring → records → rows → rendering → output.

The loops that take batches from the pinned ring buffer, turn them into lines
(rows.py, render.py, json_lines.py or the C formatter) and write them.  Each batch
is written with one call and only then consumed from the ring (BatchWriter), so
nothing read is lost if the reader dies.  Kept free of pydantic and typer: this
is the hot path."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import (
    Command,
    Setting,
    UsageError,
    Words,
    plain,
    require_pid,
    require_positive,
    require_uid,
)
from ..instance.base import Instance
from ..instance.pinned import PinnedInstance
from ..instance.session import ReaderSession
from ..instance.settings import default_wakeup_bytes
from ..kernel import signals
from ..kernel.abi import EventType, PmStop, ProcessEvent
from ..kernel.ringbuf import RingBufferReader
from ..kernel.system import require_root
from ..process import clock
from ..process.decode import Event, decode_at, text
from ..process.rows import CgroupScope, Filters, ProcessRows, Row, descendants
from ..views import json_native, render
from ..views.json_lines import CgroupJson, gap_json, json_lines
from .sink import Sink, sink_for

if TYPE_CHECKING:
    from ..process.cgroups import CgroupNames, CgroupTarget

# run -- CMD: called between batches; True once CMD has ended, and from then on
# the stream is read up to where the ring's producer stood at that moment.
SourceEnded = Callable[[], bool]

# run -- CMD: every record taken from the ring, for the summary.
Observer = Callable[[Event], None]

# After CMD's end, how long a record reserved before it may stay unsubmitted
# (a program is between reserve and submit) before the reader gives up on it.
END_GRACE = 1.0

# How long the reader sleeps when the kernel has not woken it.  The programs
# wake it early once an eighth of the ring is full, so this bounds latency only.
POLL_INTERVAL = 0.05

# Records taken from the ring at most per batch; a full batch is followed by the
# next at once, anything less by a sleep of POLL_INTERVAL.
BATCH_LIMIT = 4096

# run -- CMD: how often CMD's end and forwarded signals are checked.
RUN_POLL_INTERVAL = 0.02

MODES = ("table", "wide", "raw", "json")

# exec_failed records (`events --failed`): shown only to a reader that asked for
# them; an earlier --failed reader may have left some in the ring.
_FAILED = EventType.EXEC_FAILED.value
_FAILED_NAME = EventType.EXEC_FAILED
_TYPE_OFFSET = ProcessEvent.type.offset
_CGROUP_OFFSET = ProcessEvent.cgroup_id.offset
_unpack_u32 = struct.Struct("<I").unpack_from
_unpack_u64 = struct.Struct("<Q").unpack_from


def _is_failed(view, offset: int) -> bool:
    return _unpack_u32(view, offset + _TYPE_OFFSET)[0] == _FAILED


def _without_failed(view, offsets: list[int]) -> list[int]:
    """The offsets of the records that are not exec_failed (`offsets` itself if none is)."""
    kept = [o for o in offsets if _unpack_u32(view, o + _TYPE_OFFSET)[0] != _FAILED]
    return offsets if len(kept) == len(offsets) else kept


@dataclass
class StreamOptions:
    mode: str = "table"  # one of MODES
    threads: bool = False
    count: int | None = None
    duration: float | None = None
    from_now: bool = False
    filters: Filters = field(default_factory=Filters)
    failed: bool = False  # --failed: attach the failed-exec programs, show their records
    # --cgroup, --container: the cgroup whose processes alone produce records
    cgroup: CgroupTarget | None = None
    lineage: bool = False  # --lineage: each record's ancestors
    time: bool | None = None  # --time/--no-time (None: the mode's default)
    # What the user should know about how the options were taken (one line each).
    notes: list[Words] = field(default_factory=list)
    # Lines for people that name a command or an option (where events were lost,
    # where the backlog ends), worded by the CLI for the instance read.
    words: Callable[[Words], str] = plain
    _cgroups: CgroupNames | None = None

    @property
    def cgroups(self) -> CgroupNames:
        """The cgroup ids' paths and containers, for every mode but the bare table."""
        if self._cgroups is None:
            from ..errors import MissingError
            from ..process.cgroups import CgroupNames

            try:
                self._cgroups = CgroupNames()
            except MissingError:  # no cgroup2 mount: records keep their cgroup ids
                self._cgroups = CgroupNames(path_of=lambda cgroup_id: None)
        return self._cgroups

    def cgroup_json(self, cgroup_id: int) -> str:
        """What a JSON line gets for its cgroup (json_lines.CgroupJson)."""
        return "," + self.cgroups.json_fragment(cgroup_id)


def stream_options(
    *,
    json_out: bool,
    raw: bool,
    wide: bool,
    threads: bool,
    count: int | None,
    duration: float | None,
    from_now: bool,
    comm: str | None,
    pid: int | None,
    ppid: int | None,
    uid: int | None,
    tree: int | None,
    failed: bool = False,
    cgroup: str | None = None,
    container: str | None = None,
    lineage: bool = False,
    with_time: bool | None = None,
    tree_setting: str = "tree",
) -> StreamOptions:
    """StreamOptions from the command line's options, checked.  A filter no process
    can pass is refused: it would print nothing, silently (`tree_setting`: the
    setting that gave `tree`)."""
    if sum((json_out, raw, wide)) > 1:
        raise UsageError(
            ("choose one of ", Setting("json"), ", ", Setting("raw"), " and ", Setting("wide"))
        )
    if json_out and with_time is not None:
        raise UsageError(
            (
                Setting("time"),
                " and ",
                Setting("no_time"),
                " are for the tables: every JSON line has its `time`",
            )
        )
    require_pid("pid", pid)
    require_pid("ppid", ppid)
    require_pid(tree_setting, tree)
    require_uid("uid", uid)
    notes = []
    if comm is not None:
        comm, note = kernel_name(comm, "comm")
        if note:
            notes.append(note)
    if cgroup is not None and container is not None:
        raise UsageError(
            (
                "choose one of ",
                Setting("cgroup"),
                " and ",
                Setting("container"),
                " (a container is a cgroup: ",
                Setting("container"),
                " picks it by id)",
            )
        )
    if count is not None and count <= 0:
        raise UsageError((Setting("count"), f" must be a positive number of events (got {count})"))
    require_positive("duration", duration)
    mode = "json" if json_out else "raw" if raw else "wide" if wide else "table"
    since = time.monotonic_ns()  # the tree is read from /proc after this
    filters = Filters(
        # Names are matched as decode.text() shows them (a backslash doubled, a byte
        # that is not UTF-8 as \xNN): the name typed is the bytes meant.
        comm=text(os.fsencode(comm)) if comm is not None else None,
        pid=pid,
        ppid=ppid,
        uid=uid,
        tree=descendants(tree) if tree is not None else None,
        tree_since_ns=since,
    )
    target = None
    if cgroup is not None or container is not None:
        from ..process.cgroups import cgroup_target, container_target

        target = cgroup_target(cgroup) if cgroup is not None else container_target(container)
    opts = StreamOptions(
        mode=mode,
        threads=threads,
        count=count,
        duration=duration,
        from_now=from_now,
        filters=filters,
        failed=failed,
        cgroup=target,
        lineage=lineage,
        time=with_time,
        notes=notes,
    )
    if target is not None:
        filters.cgroup = CgroupScope(target.path, lambda i: opts.cgroups.lookup(i).path)
    return opts


# The kernel keeps this many bytes of a process's name (TASK_COMM_LEN - 1).
COMM_BYTES = 15


def kernel_name(name: str, setting: str) -> tuple[str, Words | None]:
    """A name as the kernel keeps it: its first COMM_BYTES bytes, and a note saying
    so when that cut it (a longer name would match nothing).  An empty one is
    refused: every program exec'd has a name (`--comm "$UNSET"` is a mistake)."""
    raw = os.fsencode(name)
    if not raw:
        raise UsageError(
            (
                Setting(setting),
                f" is empty: give a process name, 1 to {COMM_BYTES} bytes "
                f"(the kernel keeps the first {COMM_BYTES} of a longer one)",
            )
        )
    if len(raw) <= COMM_BYTES:
        return name, None
    return os.fsdecode(raw[:COMM_BYTES]), (
        Setting(setting),
        f" {text(raw)}: the kernel keeps {COMM_BYTES} characters of a name; "
        f"matching {text(raw[:COMM_BYTES])}",
    )


def check_can_read(pinned: PinnedInstance, failed: bool = False) -> Words | None:
    """Fail before any output (the table header) when the ring cannot be read;
    a warning when nothing new will arrive."""
    require_root("reading the ring buffer")
    pinned.require_loaded()
    if failed:
        from ..instance.exec_failures import check

        check(pinned)
    if pinned.attached_events():
        return None
    also = "failed execs and " if failed else ""
    return (
        f"nothing attached at {pinned.root}: only {also}events already in the ring will show (run ",
        Command("attach"),
        ")",
    )


@contextmanager
def open_reader(
    source: Instance,
    threads: bool,
    from_now: bool,
    cgroup: CgroupTarget | None = None,
) -> Iterator[tuple[RingBufferReader, ReaderSession]]:
    """The one reader of this instance, and its session (the leases, the losses
    marked, the check that the instance is still there)."""
    require_root("reading the ring buffer")
    with source.reader_lock():
        ring = source.open_map("events")
        try:
            reader = RingBufferReader(ring)
        finally:
            os.close(ring)
        with reader:
            settings_fd = source.open_map("settings")
            try:
                losses_fd = source.open_map("losses")
            except BaseException:
                os.close(settings_fd)
                raise
            wakeup = default_wakeup_bytes(reader.size)
            session = ReaderSession(
                settings_fd,
                losses_fd,
                wakeup,
                source.follow_mode,
                threads,
                lambda: source.still_there(reader.fd),
                source.description,
                None if cgroup is None else (cgroup.id, cgroup.level),
            )
            with session:
                if from_now:
                    reader.skip_backlog()
                    # What was lost in the skipped backlog is not this reader's to mark.
                    session.marked += session.unmarked()
                    session.save_marked()
                yield reader, session


def offset_batches(
    reader: RingBufferReader, deadline: float | None, end: SourceEnded | None = None
) -> Iterator[list[int]]:
    """Batches of record offsets into reader.view until `deadline` (time.monotonic()),
    or, once `end()` says the source has ended, up to where the ring stood then.

    After a batch that emptied the ring the reader sleeps a poll period (the kernel
    wakes it early only when much data waits), so a busy stream is read in large
    batches, not one tiny batch per wakeup.  An empty batch means the poll period
    passed with nothing new.  At the deadline, what already waits is still read.
    Past `end` nothing is waited for: a tree's daemons may go on writing for ever."""
    if end is not None:
        yield from _batches_until(reader, end)
        return
    while True:
        offsets = reader.scan(BATCH_LIMIT)
        # Every writer (TIME column, JSON `time`) takes a record's wall-clock time
        # from the offset taken here: right across a suspend or a clock step.
        clock.resync()
        if offsets:
            yield offsets
            if len(offsets) >= BATCH_LIMIT:
                continue
        if not _wait_for_more(reader, deadline, bool(offsets)):
            return
        if not offsets:
            yield offsets


def _batches_until(reader: RingBufferReader, end: SourceEnded) -> Iterator[list[int]]:
    stop_at = given_up = None
    while True:
        if stop_at is None and end():
            # Everything the source's processes wrote is at or before this position.
            stop_at = reader.producer_pos
        offsets = reader.scan(BATCH_LIMIT)
        clock.resync()
        if offsets:
            yield offsets  # the consumer commits what it took before resuming us
        if stop_at is not None and reader.read_pos >= stop_at:
            return
        if len(offsets) >= BATCH_LIMIT:
            continue
        if stop_at is not None:
            # What is left before stop_at is a record still being written.
            given_up = given_up or time.monotonic() + END_GRACE
            if time.monotonic() >= given_up:
                return
            reader.wait(0.001)
        else:
            reader.wait(RUN_POLL_INTERVAL)
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


@dataclass
class BatchWriter:
    """Writes a batch, then hands its records back to the ring, and counts what
    --count counts: the one way every stream loop ends a batch."""

    out: Sink | None  # None: commit and count, write nothing
    reader: RingBufferReader
    session: ReaderSession
    limit: int | None  # --count
    emitted: int = 0

    @property
    def room(self) -> int | None:
        """How many more rows or lines --count allows (None: no limit)."""
        return None if self.limit is None else self.limit - self.emitted

    @property
    def done(self) -> bool:
        return self.limit is not None and self.emitted >= self.limit

    def write(
        self, text: str, emitted: int, records: int | None = None, pos: int | None = None
    ) -> bool:
        """Write `text` (`emitted` rows or lines), then commit the first `records`
        records of the last scan, or up to ring position `pos`.  True once --count
        is reached.

        In that order, and a stop signal waits until all of it is done: a record
        leaves the ring only once its line is written whole, and the losses marked
        by the batch's gap lines are saved before its records are handed back (a
        reader killed in between repeats the batch, but not its gap lines)."""
        with signals.deferred():
            if text and self.out is not None:
                self.out.write(text)
                self.out.flush()
            self.session.save_marked()
            if pos is not None:
                self.reader.commit_to(pos)
            elif records is not None:
                self.reader.commit(records)
        self.emitted += emitted
        self.session.tick()
        return self.done

    def caught_up_gap(self, gap: Callable[[int], str], lines: list[str]) -> None:
        """The reader has read all there is: mark the losses no record carries (those
        after the last record written)."""
        lost = self.session.unmarked()
        if lost:
            lines.append(gap(lost))
            self.session.marked += lost


def batch_scheduling() -> None:
    """SCHED_BATCH for this process: the same CPU share, but its wakeups (every
    POLL_INTERVAL, with a batch to write) do not preempt the work being watched.
    In a thread storm the workload ran measurably faster with it (docs/benchmarks.md)."""
    with suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def follow(
    source: Instance,
    opts: StreamOptions,
    out: Sink,
    end: SourceEnded | None = None,
    observe: Observer | None = None,
) -> int:
    """Stream events to `out` until --count, --duration, `end` or an interrupt;
    returns how many rows or lines were written.  `observe` sees every record
    taken, also those past --count (which are then taken without output)."""
    deadline = time.monotonic() + opts.duration if opts.duration is not None else None
    batch_scheduling()
    if opts.failed:
        from ..instance.exec_failures import attached

        failed_execs = attached(source)  # for as long as the reader runs
    else:
        failed_execs = nullcontext()
    with (
        open_reader(source, opts.threads, opts.from_now, opts.cgroup) as (reader, session),
        failed_execs,
    ):
        if opts.filters.cgroup is not None:
            opts.filters.cgroup.since_ns = session.started_ns
        writer = BatchWriter(sink_for(out), reader, session, opts.count)
        # The header only once the ring is ours: a refused reader prints nothing.
        writer.write(render.header(opts.mode, opts.time), 0)
        batches = offset_batches(reader, deadline, end)
        plain_json = not (opts.filters.active or opts.lineage or observe)
        # The tables mark where the ring's backlog ends (JSON lines have their time).
        backlog = None
        if opts.mode != "json" and source.has_backlog:
            tty = getattr(writer.out, "fd", None)
            line = opts.words(render.BACKLOG)
            backlog = Backlog(reader.producer_pos, render.line_at_width(tty), line)
        if opts.mode == "json" and plain_json:
            _follow_json(reader, deadline, writer, opts.failed, opts.cgroup_json)
        elif opts.mode in ("table", "wide"):
            _follow_rows(reader, batches, opts, writer, observe, backlog)
        else:
            _follow_records(reader, batches, opts, writer, observe, backlog)
        if observe is not None:
            view = reader.view
            for offsets in batches:  # --count was reached: the rest is only observed
                for off in offsets:
                    observe(decode_at(view, off))
                reader.commit()
                session.tick()
        return writer.emitted


@dataclass
class Backlog:
    """Where the records from before the reader started end (`end`, a ring position:
    the producer's when the reader took the ring), and the line that says so in a
    table, written once, after the last backlog row shown and before the first row
    after it.  Nothing when no backlog row was shown (--from-now, an empty ring)."""

    end: int
    fit: Callable[[str], str]
    line: str
    shown: bool = False  # a row from the backlog was written
    done: bool = False

    def before(self, pos: int, lines: list[str]) -> None:
        """Call before writing the line of the record (or row) at ring position `pos`."""
        if self.done:
            return
        if pos < self.end:
            self.shown = True
        else:
            self.close(lines)

    def caught_up(self, read_pos: int, first_held: int | None, lines: list[str]) -> None:
        """After a batch: once everything before `end` has been read and written,
        the line goes out now rather than with the next new row."""
        if (
            not self.done
            and read_pos >= self.end
            and (first_held is None or first_held >= self.end)
        ):
            self.close(lines)

    def close(self, lines: list[str]) -> None:
        if self.shown:
            lines.append(self.fit(self.line))
        self.done = True


def _follow_rows(
    reader: RingBufferReader,
    batches: Iterator[list[int]],
    opts: StreamOptions,
    writer: BatchWriter,
    observe: Observer | None,
    backlog: Backlog | None = None,
) -> None:
    """The table (and --wide): one row per new process, filtered, in ring order.
    The ring is handed back only up to the first row not yet written, so the rows
    held for an exec, and those --count left, are the next reader's."""
    filters = opts.filters
    rows = ProcessRows(
        follow_exits=opts.mode == "wide",
        keep=lambda r: filters.match(r.tgid, r.ppid, r.uid, r.comm, r.cgroup_id),
    )
    # Cut to a terminal's width, whole when piped.
    tty = getattr(writer.out, "fd", None)
    line = render.table_line(tty, opts.mode, opts.time)
    fit = render.line_at_width(tty)

    def gap(dropped: int) -> str:
        return fit(render.gap_line(dropped, opts.words))

    attempt_words = None
    if opts.failed:
        from ..views.render import attempt_words
    lineage = None
    if opts.lineage:
        from ..process.lineage import ProcessTable, RowLineages

        lineage, lineages = ProcessTable.from_proc(), RowLineages()
        line = lineages.below(line, tty)
    session = writer.session
    view, position_of = reader.view, reader.position_of
    for offsets in batches:
        lines: list[str] = []
        marked = session.marked
        for off in offsets:
            e = decode_at(view, off)
            if observe is not None:
                observe(e)
            if lineage is not None:
                lineages.note(e, lineage.feed(e))
            if e.dropped_total > marked:
                lines.append(gap(e.dropped_total - marked))
                marked = e.dropped_total
            if e.type == _FAILED_NAME:
                if attempt_words is not None:
                    # Final at once, among the process rows in ring order; exited, so
                    # that --wide never follows it with an exit row.
                    rows.add_final(
                        Row(
                            e.pid,
                            e.tgid,
                            e.ppid,
                            e.uid,
                            e.comm,
                            argv=attempt_words(e),
                            argv_truncated=bool(e.argv_truncated),
                            exited=True,
                            cgroup_id=e.cgroup_id,
                            ts_ns=e.ts_ns,
                            failed=True,
                        ),
                        position_of(off),
                    )
                filters.track(e)
                continue
            # The row first: a fork can make final the row of the pid's former process,
            # which track() then drops from the followed tree.
            rows.feed(e, position_of(off))
            filters.track(e)
        session.marked = marked
        now = time.monotonic_ns()
        if len(offsets) >= BATCH_LIMIT:
            # More waits (a backlog): the records' own clock, so that a row is not
            # taken before the exec that a next batch holds.
            now = min(now, e.ts_ns)
        taken = rows.take(now, writer.room)
        _row_lines(taken, line, backlog, lines)
        first = rows.first_pos()
        if backlog is not None:
            backlog.caught_up(reader.read_pos, first, lines)
        if len(offsets) < BATCH_LIMIT:
            # Read all there is (rows held for an exec or not): the losses no record
            # carries are marked now; the held rows' records, read again by a next
            # reader, carry no more than is marked.
            writer.caught_up_gap(gap, lines)
        if writer.write(_text(lines), len(taken), pos=reader.read_pos if first is None else first):
            return
    # The stream ended (--duration, `end`): the rows still held are shown as they are.
    lines = []
    taken = rows.take(1 << 63, writer.room)
    _row_lines(taken, line, backlog, lines)
    first = rows.first_pos()
    writer.caught_up_gap(gap, lines)
    writer.write(_text(lines), len(taken), pos=reader.read_pos if first is None else first)


def _row_lines(
    taken: list[Row], line: Callable[[Row], str], backlog: Backlog | None, lines: list[str]
) -> None:
    if backlog is None or backlog.done:
        lines += map(line, taken)
        return
    for r in taken:
        backlog.before(r.pos, lines)
        lines.append(line(r))


def _follow_records(
    reader: RingBufferReader,
    batches: Iterator[list[int]],
    opts: StreamOptions,
    writer: BatchWriter,
    observe: Observer | None,
    backlog: Backlog | None = None,
) -> None:
    """--raw, and --json with filters: one line per matching record."""
    filters = opts.filters
    as_json = opts.mode == "json"
    tty = getattr(writer.out, "fd", None)
    if as_json:
        gap = gap_json
    else:
        fit = render.line_at_width(tty)
        raw_line = render.raw_lines(tty, opts.time)

        def gap(dropped: int) -> str:
            return fit(render.gap_line(dropped, opts.words))

    lineage = None
    if opts.lineage:
        from ..process.lineage import ProcessTable, with_lineage

        lineage = ProcessTable.from_proc()
    failed = opts.failed
    cgroup_json = opts.cgroup_json
    session = writer.session
    view, position_of = reader.view, reader.position_of
    for offsets in batches:
        lines: list[str] = []
        room = writer.room
        shown = consumed = 0
        marked = session.marked
        for off in offsets:
            consumed += 1
            e = decode_at(view, off)
            if observe is not None:
                observe(e)
            filters.track(e)
            process = lineage.feed(e) if lineage is not None else None
            if not filters.match_event(e) or (e.type == _FAILED_NAME and not failed):
                if e.dropped_total > marked:
                    lines.append(gap(e.dropped_total - marked))
                    marked = e.dropped_total
                continue
            if as_json:
                marked = json_lines(view, [off], lines, marked, cgroup_json)  # gap line first
            else:
                if e.dropped_total > marked:
                    lines.append(gap(e.dropped_total - marked))
                    marked = e.dropped_total
                if backlog is not None:
                    backlog.before(position_of(off), lines)
                lines.append(raw_line(e))
            if lineage is not None:
                lines[-1] = with_lineage(lines[-1], process, as_json)
            shown += 1
            if room is not None and shown >= room:
                break
        session.marked = marked
        if backlog is not None and consumed == len(offsets):
            backlog.caught_up(reader.read_pos, None, lines)
        if consumed == len(offsets) < BATCH_LIMIT:
            writer.caught_up_gap(gap, lines)
        if writer.write(_text(lines), shown, records=consumed):
            return


def _follow_json(
    reader: RingBufferReader,
    deadline: float | None,
    writer: BatchWriter,
    failed: bool,
    cgroup_json: CgroupJson,
) -> None:
    """--json without filters: records straight to JSON lines, in C when the native
    formatter is built (and agrees with abi.py), else in Python (same text).
    exec_failed records only with --failed (`failed`)."""
    lib = json_native.library()
    if lib is not None:
        with json_native.MappedRing(lib, reader.fd, reader.size) as ring:
            _follow_json_native(reader, ring.formatter, deadline, writer, failed, cgroup_json)
        return
    session = writer.session
    view = reader.view
    for offsets in offset_batches(reader, deadline):
        room = writer.room
        caught_up = len(offsets) < BATCH_LIMIT
        shown = offsets if failed else _without_failed(view, offsets)
        consumed = len(offsets)
        if room is not None and room < len(shown):
            consumed = offsets.index(shown[room])
            del shown[room:]
            caught_up = False
        lines: list[str] = []
        session.marked = json_lines(view, shown, lines, session.marked, cgroup_json)
        if caught_up:
            writer.caught_up_gap(gap_json, lines)
        if writer.write(_text(lines), len(shown), records=consumed):
            return


def _follow_json_native(
    reader: RingBufferReader,
    formatter: json_native.JsonLineFormatter,
    deadline: float | None,
    writer: BatchWriter,
    failed: bool,
    cgroup_json: CgroupJson,
) -> None:
    """_follow_json() with the C formatter: the same batching, polling and commit
    after write as offset_batches(), with no Python object per record.  It hands
    exec_failed records back one at a time, as those it leaves to Python, and the
    first record of each cgroup it does not know yet, whose fragment Python then
    gives it."""
    session = writer.session
    view = reader.view
    known = formatter.cgroups
    while True:
        room = writer.room
        want = BATCH_LIMIT if room is None else min(BATCH_LIMIT, room)
        start = reader.read_pos
        clock.resync()
        batch = formatter.format(start, want, session.marked)
        text, taken, pos, session.marked = batch.text, batch.records, batch.pos, batch.marked
        if batch.stop == PmStop.FOREIGN:
            offset, pos = reader.record_at(pos)
            cgroup = _unpack_u64(view, offset + _CGROUP_OFFSET)[0]
            known.add(cgroup, cgroup_json(cgroup))
            if failed or not _is_failed(view, offset):
                lines: list[str] = []
                session.marked = json_lines(view, [offset], lines, session.marked, cgroup_json)
                text += _text(lines)
                taken += 1
        elif batch.stop == PmStop.CAUGHT_UP:
            lines = []
            writer.caught_up_gap(gap_json, lines)
            text += _text(lines)
        reader.read_pos = pos
        if writer.write(text, taken, pos=pos if pos != start else None):
            return
        if batch.stop != PmStop.CAUGHT_UP:
            continue
        if not _wait_for_more(reader, deadline, taken > 0):
            return
