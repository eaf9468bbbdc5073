"""Reading the stream: ring → batches of records → a view → output.

The loop that takes batches of records from the ring buffer and hands each to a
view (views/events.py: the tables, --raw, the JSON writers), which turns it into
lines and says how far the ring may be committed (Taken); the loop writes them.
It keeps the stream's guarantees whatever the format: each batch is written with
one call and only then handed back to the ring (BatchWriter), so nothing read is
lost if the reader dies; losses no record carries are marked once caught up;
--count, --duration, the source's end and stop signals end it.  Kept free of
pydantic and typer: this is the hot path."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..errors import Command, Words
from ..instance.base import Instance
from ..instance.pinned import PinnedInstance
from ..instance.readers import CgroupFilter, HeldSlot, ReaderSlots, ReaderWants
from ..instance.session import ReaderSession
from ..kernel import signals
from ..kernel.abi import PmStop
from ..kernel.ringbuf import RingBufferReader
from ..kernel.system import require_root
from ..process import clock
from ..process.decode import Event, decode_at
from .sink import Sink, Text, sink_for

if TYPE_CHECKING:
    from ..process.cgroups import CgroupTarget

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
# Each wakeup costs ~150-300 us of CPU here whatever the batch holds (the
# interpreter runs cold after a sleep): in a fork storm a 50 ms period put a
# third of the reader's CPU per event there.  100 ms is what libbpf-tools poll.
POLL_INTERVAL = 0.1

# Records taken from the ring at most per batch; a full batch is followed by the
# next at once, anything less by a sleep of POLL_INTERVAL.
BATCH_LIMIT = 4096

# A time no record reaches (CLOCK_MONOTONIC ns).
NEVER = 1 << 63

# run -- CMD: how often CMD's end and forwarded signals are checked.
RUN_POLL_INTERVAL = 0.02


@dataclass
class StreamOptions:
    """What a reader reads (how it shows it is its view's)."""

    threads: bool = False
    count: int | None = None  # --count: rows or lines written at most (0: none, no header)
    duration: float | None = None
    from_now: bool = False
    failed: bool = False  # --failed: attach the failed-exec programs while reading
    # --cgroup, --container: the cgroup whose processes alone produce records
    cgroup: CgroupTarget | None = None
    # ... and how to find it again (by its path, or its container) once made anew
    cgroup_again: Callable[[], CgroupTarget | None] | None = None
    # --container of a container not running yet: no cgroup to filter by, the reader
    # takes nothing until cgroup_again finds it (ReaderWants.cgroup_pending)
    cgroup_pending: bool = False
    name: str | None = None  # --name (or --output's): a reader that keeps its place
    ring_size: int | None = None  # its ring's size (None: the instance's)
    argv_bytes: int | None = None  # of each command line at most (None: the instance's)


class Opened(NamedTuple):
    """What a view learns when the ring is the reader's."""

    ring: RingBufferReader
    tty: int | None  # the output's descriptor (a terminal's lines are cut to fit)
    # The ring position where the records from before this reader end (the
    # producer's when it took the ring); None: none to mark (a private instance).
    backlog_end: int | None
    started_ns: int  # records from then on passed the reader's kernel-side cgroup filter
    observe: Observer | None  # to be handed every record the view takes


class Taken(NamedTuple):
    """What a view made of a batch of records."""

    lines: list[str]  # to write, a gap line before the first record after a loss
    shown: int  # rows or lines, as --count counts them
    read: int  # records of the batch it took (the rest, past --count, are read again)
    marked: int  # the ring's losses marked, its gap lines included
    # Commit the ring up to this position (the first record of a row still held),
    # rather than up to the last record taken.
    keep_from: int | None = None


class InPlace(Protocol):
    """A view's formatter that reads records out of the ring's memory itself, with
    no Python object per record (the C JSON writer)."""

    def format(self, pos: int, max_records: int, marked: int):
        """The text of up to `max_records` records from ring position `pos` on, with
        .data (UTF-8, good until the next format()) or .text, .records, .pos (after
        the last one taken), .marked, and .stop (an abi.PmStop: why it stopped)."""

    def left_over(self, offset: int, marked: int) -> tuple[str, int, int]:
        """The record at `offset` that format() stopped at (PmStop.FOREIGN): its
        text, how many lines that is (--count), and the losses marked."""

    def gap(self, dropped: int) -> str:
        """The line that marks where `dropped` records were lost."""


class View(Protocol):
    """Turns batches of records into text (views/events.py)."""

    def header(self) -> str:
        """Written first, once the ring is the reader's ("" for none)."""

    def gap(self, dropped: int) -> str:
        """The line that marks where `dropped` records were lost."""

    def start(self, opened: Opened) -> None:
        """The ring is the reader's: called once, before the first batch."""

    def take(self, offsets: list[int], room: int | None, marked: int) -> Taken:
        """A batch: `offsets` into opened.ring.view, oldest first; `room`: the rows
        or lines --count still allows (None: no limit); `marked`: the ring's losses
        marked so far."""

    def finish(self, room: int | None, marked: int) -> Taken | None:
        """The stream ended (--duration, the source's end): what the view still
        holds (None: nothing).  Not called once --count is reached."""

    def in_place(self, ring: RingBufferReader) -> AbstractContextManager[InPlace | None]:
        """The view's own reader of the ring's memory, for as long as the stream
        runs, when it has one for this stream; None: batches go to take()."""


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
    opts: StreamOptions,
) -> Iterator[tuple[RingBufferReader, ReaderSession]]:
    """This reader's slot of `source` (its own ring, readers.py), its ring mapped, and
    its session (the losses marked, the check that the instance is still there)."""
    require_root("reading the ring buffer")
    cgroup = opts.cgroup
    wants = ReaderWants(
        threads=opts.threads,
        failed=opts.failed,
        cgroup=None if cgroup is None else _cgroup_filter(cgroup),
        argv_bytes=opts.argv_bytes,
        cgroup_pending=cgroup is None and opts.cgroup_pending,
    )
    slots = ReaderSlots(source)
    if source.reserved is not None:
        taken = nullcontext(source.reserved)
    else:
        taken = slots.taken(wants, opts.name, opts.ring_size)
    with taken as held:
        reader = RingBufferReader(held.ring_fd)
        with reader:
            rings_fd = source.open_map("rings")
            refresh = None
            if opts.cgroup_again is not None:
                refresh = _cgroup_follower(slots, held, wants, opts.cgroup_again)
            session = ReaderSession(held, rings_fd, source.still_there, source.description, refresh)
            with session:
                if opts.from_now and held.resumed:
                    reader.skip_backlog()
                    # What was lost in the skipped backlog is not this reader's to mark.
                    session.marked += session.unmarked()
                    session.save_marked()
                yield reader, session


def _cgroup_follower(
    slots: ReaderSlots, held, wants: ReaderWants, again: Callable[[], CgroupTarget | None]
) -> Callable[[], None]:
    """Once a second: the cgroup the reader filters by, looked up again by its path
    or container; made anew (a restart), or there at last (a container the reader
    waited for), the kernel filters by the new one."""
    current = [wants.cgroup]

    def refresh() -> None:
        target = again()
        if target is None or _cgroup_filter(target) == current[0]:
            return
        current[0] = _cgroup_filter(target)
        slots.set_cgroup(held, replace(wants, cgroup=current[0], cgroup_pending=False))

    return refresh


def _cgroup_filter(target: CgroupTarget) -> CgroupFilter:
    return CgroupFilter(target.id, target.level, target.parent_id, target.name)


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
        self, text: Text, emitted: int, records: int | None = None, pos: int | None = None
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


def follow(
    source: Instance,
    opts: StreamOptions,
    view: View,
    out: Sink,
    end: SourceEnded | None = None,
    observe: Observer | None = None,
) -> int:
    """Stream events to `out`, as `view` shows them, until --count, --duration,
    `end` or an interrupt; returns how many rows or lines were written.  `observe`
    sees every record taken; with `end`, also those past --count (which are then
    taken without output, up to the source's end)."""
    deadline = time.monotonic() + opts.duration if opts.duration is not None else None
    batch_scheduling()
    with (
        open_reader(source, opts) as (reader, session),
        failed_exec_programs(source, opts, session.held),
    ):
        writer = BatchWriter(sink_for(out), reader, session, opts.count)
        batches = offset_batches(reader, deadline, end)
        if not writer.done:  # --count 0 (run's summary alone): no header, no row
            # The header only once the ring is ours: a refused reader prints nothing.
            writer.write(view.header(), 0)
            # Where the records that came while a named reader was down end.
            backlog_end = reader.producer_pos if session.held.resumed else None
            tty = getattr(writer.out, "fd", None)
            # Every record in a kernel-filtered ring passed the reader's filter.
            passed_from = 0 if opts.cgroup is not None or opts.cgroup_pending else NEVER
            view.start(Opened(reader, tty, backlog_end, passed_from, observe))
            with view.in_place(reader) as in_place:
                if in_place is not None:
                    _follow_in_place(reader, in_place, deadline, writer)
                else:
                    _follow_batches(reader, batches, view, writer)
        if observe is not None and end is not None:
            ring = reader.view
            for offsets in batches:  # --count was reached: the rest is only observed
                for off in offsets:
                    observe(decode_at(ring, off))
                reader.commit()
                session.tick()
        return writer.emitted


def failed_exec_programs(
    source: Instance, opts: StreamOptions, held: HeldSlot
) -> AbstractContextManager[None]:
    """--failed: the failed-exec programs attached for as long as the reader runs."""
    if not opts.failed:
        return nullcontext()
    from ..instance.exec_failures import attached, refuse_second_reader

    others = held.slots.failed_readers() - {held.slot}
    if others:
        refuse_second_reader(source.slot_holder(min(others)))
    return attached(source)


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def _follow_batches(
    reader: RingBufferReader, batches: Iterator[list[int]], view: View, writer: BatchWriter
) -> None:
    """The loop: each batch to the view, its text written, the ring committed as far
    as the view says."""
    session = writer.session
    for offsets in batches:
        scanned = len(offsets)
        taken = view.take(offsets, writer.room, session.marked)
        session.marked = taken.marked
        lines = taken.lines
        if taken.read == scanned < BATCH_LIMIT:
            # Read all there is (rows held for an exec or not): the losses no record
            # carries are marked now; the held rows' records, read again by a next
            # reader, carry no more than is marked.
            writer.caught_up_gap(view.gap, lines)
        if writer.write(_text(lines), taken.shown, records=taken.read, pos=taken.keep_from):
            return
    # The stream ended (--duration, `end`): what the view still holds.
    taken = view.finish(writer.room, session.marked)
    if taken is not None:
        writer.caught_up_gap(view.gap, taken.lines)
        writer.write(_text(taken.lines), taken.shown, pos=taken.keep_from)


def _follow_in_place(
    reader: RingBufferReader, formatter: InPlace, deadline: float | None, writer: BatchWriter
) -> None:
    """The loop for a view that reads the ring itself (the C JSON writer): the same
    batching, polling and commit after write as offset_batches() and
    _follow_batches(), with no Python object per record.  Apart because that is
    the point of it: scanning the records in Python first would cost what it
    saves.  What it leaves to Python comes back one record at a time."""
    session = writer.session
    while True:
        room = writer.room
        want = BATCH_LIMIT if room is None else min(BATCH_LIMIT, room)
        start = reader.read_pos
        clock.resync()
        batch = formatter.format(start, want, session.marked)
        text: Text = batch.data
        taken, pos, session.marked = batch.records, batch.pos, batch.marked
        if batch.stop == PmStop.FOREIGN:
            offset, pos = reader.record_at(pos)
            more, shown, session.marked = formatter.left_over(offset, session.marked)
            text = batch.text + more
            taken += shown
        elif batch.stop == PmStop.CAUGHT_UP:
            lines: list[str] = []
            writer.caught_up_gap(formatter.gap, lines)
            if lines:
                text = batch.text + _text(lines)
        reader.read_pos = pos
        if writer.write(text, taken, pos=pos if pos != start else None):
            return
        if batch.stop != PmStop.CAUGHT_UP:
            continue
        if not _wait_for_more(reader, deadline, taken > 0):
            return
