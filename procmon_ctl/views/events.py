"""How `events` (and `run`'s rows) show the stream: one view per output format.

stream/follow.py reads the ring and hands each batch of records to a view; the
view turns it into lines and says how far the ring may be committed (Taken):
the table and --wide hold a process's row for its exec, so the ring is handed
back only up to the first row not yet written; the line views (--raw, JSON) up
to the last record they wrote.  A view marks the losses its records carry (a
gap line before the first record after them) and, in the tables, where the
ring's backlog ends.

- RowView: the table and --wide, one row per process (rows.py, render.py).
- LineView: --raw, and --json with filters, --lineage or an observer: one line
  per matching record.
- JsonView: --json otherwise: records straight to JSON lines, in C
  (json_native.py) when the formatter is built, else in Python (json_lines.py)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from ..errors import Words, plain
from ..kernel.abi import EXEC_FAILED, ProcessEvent
from ..process.decode import decode_at
from ..process.rows import Filters, ProcessRows, Row
from ..stream import follow as stream
from ..stream.follow import InPlace, Opened, Taken
from . import json_native, render
from .json_lines import CgroupJson, ExecTable, ExecTexts, gap_json, json_lines, seed, track

if TYPE_CHECKING:
    from ..kernel.ringbuf import RingBufferReader
    from ..process.cgroups import CgroupInfo

# A cgroup id to what the reader knows of it (cgroups.CgroupNames.lookup).
CgroupLookup = Callable[[int], "CgroupInfo"]


class Mode(StrEnum):
    """The output formats of `events` and `run`'s rows (render.py's tables by name)."""

    TABLE = "table"
    WIDE = "wide"
    RAW = "raw"
    JSON = "json"


_FAILED = EXEC_FAILED.value
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


def _backlog(opened: Opened, words: Callable[[Words], str]) -> Backlog | None:
    if opened.backlog_end is None:
        return None
    return Backlog(opened.backlog_end, render.line_at_width(opened.tty), words(render.BACKLOG))


class ContainerColumn:
    """The tables' CONTAINER column (the container's short name, NO_CONTAINER for
    the host's processes), shown when any row has a container.  A header is written
    before the first row, so whether the column is there is decided then (`shown`:
    the reader filters by --container, or a container ran as it started); when it
    is not and a row from a container comes, the header is written again with the
    column, and every row from then on has it, as `watch`-style tools repeat their
    header: no row is ever under a header of other columns."""

    def __init__(self, lookup: CgroupLookup | None, shown: bool):
        self.lookup = lookup  # None: no cgroup names (tests' fake rings): never shown
        self.shown = shown and lookup is not None

    def cell(self, cgroup_id: int) -> str:
        info = self.lookup(cgroup_id)
        return render.container_cell(info.container_name, info.container_id)

    def comes_with(self, cgroup_id: int) -> bool:
        """Whether a row of this cgroup is the first from a container: the column
        must be added before it."""
        if self.shown or self.lookup is None:
            return False
        self.shown = self.lookup(cgroup_id).container_id is not None
        return self.shown

    @property
    def cells(self) -> Callable[[int], str] | None:
        return self.cell if self.shown else None


def _start_filters(filters: Filters, opened: Opened) -> None:
    if filters.cgroup is not None:
        # The kernel keeps other cgroups out from the reader's start on.
        filters.cgroup.since_ns = opened.started_ns


class RowView:
    """The table (and --wide): one row per new process, filtered, in ring order.
    The ring is handed back only up to the first row not yet written, so the rows
    held for an exec, and those --count left, are the next reader's."""

    def __init__(
        self,
        wide: bool,
        time: bool | None,
        filters: Filters,
        failed: bool = False,
        lineage: bool = False,
        words: Callable[[Words], str] = plain,
        container: ContainerColumn | None = None,
    ):
        self.mode = Mode.WIDE if wide else Mode.TABLE
        self.time, self.filters, self.failed, self.lineage = time, filters, failed, lineage
        self.words = words  # the CLI's, for the lines that name a command or an option
        self.container = container or ContainerColumn(None, False)

    def header(self) -> str:
        return render.header(self.mode, self.time, self.container.shown)

    def gap(self, dropped: int) -> str:
        return self._fit(render.gap_line(dropped, self.words))

    def start(self, opened: Opened) -> None:
        filters = self.filters
        _start_filters(filters, opened)
        self.ring, self.observe = opened.ring, opened.observe
        self.rows = ProcessRows(
            follow_exits=self.mode == Mode.WIDE,
            keep=lambda r: filters.match(r.tgid, r.ppid, r.uid, r.comm, r.cgroup_id),
        )
        self.tty = opened.tty
        self._fit = render.line_at_width(opened.tty)
        self.backlog = _backlog(opened, self.words)
        self.table = None
        if self.lineage:
            from ..process.lineage import ProcessTable
            from .lineage import RowLineages

            self.table, self.lineages = ProcessTable.from_proc(), RowLineages()
        self._make_line()

    def _make_line(self) -> None:
        # Cut to a terminal's width, whole when piped.
        self.line = render.table_line(self.tty, self.mode, self.time, self.container.cells)
        if self.lineage:
            self.line = self.lineages.below(self.line, self.tty)

    def _row_lines(self, r: Row, lines: list[str]) -> None:
        if self.container.comes_with(r.cgroup_id):
            lines += self.header().splitlines()
            self._make_line()
        lines.append(self.line(r))

    def take(self, offsets: list[int], room: int | None, marked: int) -> Taken:
        filters, rows, observe, table = self.filters, self.rows, self.observe, self.table
        view, position_of = self.ring.view, self.ring.position_of
        gap, failed = self.gap, self.failed
        lines: list[str] = []
        for off in offsets:
            e = decode_at(view, off)
            if observe is not None:
                observe(e)
            if table is not None:
                self.lineages.note(e, table.feed(e))
            if e.dropped_total > marked:
                lines.append(gap(e.dropped_total - marked))
                marked = e.dropped_total
            if e.type == EXEC_FAILED:
                if failed:
                    # Final at once, among the process rows in ring order; exited, so
                    # that --wide never follows it with an exit row.
                    rows.add_final(
                        Row(
                            e.pid,
                            e.tgid,
                            e.ppid,
                            e.uid,
                            e.comm,
                            argv=render.attempt_words(e),
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
        now = time.monotonic_ns()
        if len(offsets) >= stream.BATCH_LIMIT:
            # More waits (a backlog): the records' own clock, so that a row is not
            # taken before the exec that a next batch holds.
            now = min(now, e.ts_ns)
        return self._taken(now, room, lines, len(offsets), marked)

    def finish(self, room: int | None, marked: int) -> Taken:
        """The stream ended (--duration, `end`): the rows still held, as they are."""
        return self._taken(1 << 63, room, [], 0, marked, at_end=True)

    def _taken(
        self,
        now: int,
        room: int | None,
        lines: list[str],
        read: int,
        marked: int,
        at_end: bool = False,
    ) -> Taken:
        rows, backlog = self.rows, self.backlog
        taken = rows.take(now, room)
        if (backlog is None or backlog.done) and self.container.shown:
            lines += map(self.line, taken)
        else:
            for r in taken:
                if backlog is not None:
                    backlog.before(r.pos, lines)
                self._row_lines(r, lines)
        first = rows.first_pos()
        read_pos = self.ring.read_pos
        if backlog is not None and not at_end:
            backlog.caught_up(read_pos, first, lines)
        return Taken(lines, len(taken), read, marked, read_pos if first is None else first)

    @contextmanager
    def in_place(self, ring: RingBufferReader) -> Iterator[InPlace | None]:
        yield None


class LineView:
    """--raw, and --json with filters, --lineage or an observer: one line per
    matching record, in ring order."""

    def __init__(
        self,
        json: bool,
        time: bool | None,
        filters: Filters,
        failed: bool = False,
        lineage: bool = False,
        cgroup_json: CgroupJson | None = None,
        words: Callable[[Words], str] = plain,
        container: ContainerColumn | None = None,
    ):
        self.json, self.time, self.filters = json, time, filters
        self.failed, self.lineage, self.cgroup_json = failed, lineage, cgroup_json
        self.words = words  # the CLI's, for the lines that name a command or an option
        # --raw's CONTAINER column (JSON lines name the container themselves)
        self.container = ContainerColumn(None, False) if json or container is None else container

    def header(self) -> str:
        return "" if self.json else render.header(Mode.RAW, self.time, self.container.shown)

    def gap(self, dropped: int) -> str:
        return gap_json(dropped) if self.json else self._fit(render.gap_line(dropped, self.words))

    def start(self, opened: Opened) -> None:
        _start_filters(self.filters, opened)
        self.ring, self.observe = opened.ring, opened.observe
        self.backlog = None  # JSON lines have their time
        if not self.json:
            self._fit = render.line_at_width(opened.tty)
            self.tty = opened.tty
            self.raw_line = render.raw_lines(opened.tty, self.time, self.container.cells)
            self.backlog = _backlog(opened, self.words)
        self.table = None
        if self.lineage:
            from ..process.lineage import ProcessTable

            self.table = ProcessTable.from_proc()
        self.execs = None
        if self.json and self.python_execs():
            self.execs = ExecTexts()
            exec_table_start(self.execs, opened)

    def python_execs(self) -> bool:
        """Whether the Python writer keeps the table of what each process ran."""
        return True

    def take(self, offsets: list[int], room: int | None, marked: int) -> Taken:
        from .lineage import with_lineage

        filters, observe, table, backlog = self.filters, self.observe, self.table, self.backlog
        as_json, failed, cgroup_json, gap = self.json, self.failed, self.cgroup_json, self.gap
        view, position_of = self.ring.view, self.ring.position_of
        raw_line = None if as_json else self.raw_line
        execs = self.execs
        lines: list[str] = []
        shown = read = 0
        for off in offsets:
            read += 1
            e = decode_at(view, off)
            if observe is not None:
                observe(e)
            filters.track(e)
            process = table.feed(e) if table is not None else None
            if not filters.match_event(e) or (e.type == EXEC_FAILED and not failed):
                if execs is not None:
                    track(execs, e)
                if e.dropped_total > marked:
                    lines.append(gap(e.dropped_total - marked))
                    marked = e.dropped_total
                continue
            if as_json:  # a gap line first
                marked = json_lines(view, [off], lines, marked, cgroup_json, execs=execs)
            else:
                if e.dropped_total > marked:
                    lines.append(gap(e.dropped_total - marked))
                    marked = e.dropped_total
                if backlog is not None:
                    backlog.before(position_of(off), lines)
                if self.container.comes_with(e.cgroup_id):
                    lines += self.header().splitlines()
                    self.raw_line = raw_line = render.raw_lines(
                        self.tty, self.time, self.container.cells
                    )
                lines.append(raw_line(e))
            if table is not None:
                lines[-1] = with_lineage(lines[-1], process, as_json)
            shown += 1
            if room is not None and shown >= room:
                break
        if backlog is not None and read == len(offsets):
            backlog.caught_up(self.ring.read_pos, None, lines)
        return Taken(lines, shown, read, marked)

    def finish(self, room: int | None, marked: int) -> None:
        return None  # nothing held

    @contextmanager
    def in_place(self, ring: RingBufferReader) -> Iterator[InPlace | None]:
        yield None


class JsonView(LineView):
    """--json: records straight to JSON lines, no Python object per record, unless
    a record must be decoded (filters, --lineage, an observer): then LineView's.
    exec_failed records only with --failed (`failed`)."""

    def __init__(
        self, filters: Filters, failed: bool, lineage: bool, cgroup_json: CgroupJson
    ) -> None:
        super().__init__(True, None, filters, failed, lineage, cgroup_json)

    def start(self, opened: Opened) -> None:
        self.straight = not (self.filters.active or self.lineage or opened.observe)
        self.native = json_native.library() if self.straight else None
        self.opened = opened
        super().start(opened)

    def python_execs(self) -> bool:
        return self.native is None

    def take(self, offsets: list[int], room: int | None, marked: int) -> Taken:
        if not self.straight:
            return super().take(offsets, room, marked)
        view = self.ring.view
        shown = offsets if self.failed else _without_failed(view, offsets)
        read = len(offsets)
        if room is not None and room < len(shown):
            read = offsets.index(shown[room])
            shown = shown[:room]
        lines: list[str] = []
        marked = json_lines(view, shown, lines, marked, self.cgroup_json, execs=self.execs)
        return Taken(lines, len(shown), read, marked)

    @contextmanager
    def in_place(self, ring: RingBufferReader) -> Iterator[InPlace | None]:
        """The C formatter, reading the ring itself, when it is built (and agrees
        with abi.py) and the records need no decoding."""
        lib = self.native
        if lib is None:
            yield None
            return
        with json_native.MappedRing(lib, ring.fd, ring.size) as mapped:
            exec_table_start(mapped.formatter.execs, self.opened)
            yield NativeJson(mapped.formatter, ring, self.failed, self.cgroup_json)


class NativeJson:
    """JsonView's records formatted in C, out of the ring's memory.  It hands
    exec_failed records back one at a time, as those it leaves to Python, and the
    first record of each cgroup it does not know yet, whose fragment Python then
    gives it."""

    def __init__(
        self,
        formatter: json_native.JsonLineFormatter,
        ring: RingBufferReader,
        failed: bool,
        cgroup_json: CgroupJson,
    ):
        self.formatter = formatter
        self.format = formatter.format
        self.ring = ring
        self.failed = failed  # exec_failed records are shown
        self.cgroup_json = cgroup_json

    def gap(self, dropped: int) -> str:
        return gap_json(dropped)

    def left_over(self, offset: int, marked: int) -> tuple[str, int, int]:
        """The record at `offset` the formatter stopped at (PmStop.FOREIGN): its
        line if it is shown, how many lines that is, and the losses marked."""
        view, cgroup_json = self.ring.view, self.cgroup_json
        cgroup = _unpack_u64(view, offset + _CGROUP_OFFSET)[0]
        self.formatter.cgroups.add(cgroup, cgroup_json(cgroup))
        if not self.failed and _is_failed(view, offset):
            return "", 0, marked
        lines: list[str] = []
        marked = json_lines(view, [offset], lines, marked, cgroup_json, execs=self.formatter.execs)
        return "\n".join(lines) + "\n", 1, marked


def exec_table_start(execs: ExecTable, opened: Opened) -> None:
    """The processes running as the reader starts, from /proc, for their exit lines.
    Not for a named reader that resumes: the exits in its backlog are of processes
    that ended before this start, some of whose pids others have now."""
    if opened.backlog_end is None:
        seed(execs)


def view_for(
    mode: Mode,
    time: bool | None,
    filters: Filters,
    failed: bool,
    lineage: bool,
    cgroup_json: CgroupJson,
    words: Callable[[Words], str] = plain,
    container: ContainerColumn | None = None,
) -> RowView | LineView:
    """The view of `mode` (`time`: --time/--no-time, None: the mode's default;
    `words`: the CLI's, for the table lines that name a command or an option;
    `container`: the tables' CONTAINER column, None for none)."""
    if mode == Mode.JSON:
        return JsonView(filters, failed, lineage, cgroup_json)
    if mode == Mode.RAW:
        return LineView(False, time, filters, failed, lineage, words=words, container=container)
    return RowView(mode == Mode.WIDE, time, filters, failed, lineage, words, container)
