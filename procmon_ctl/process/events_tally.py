"""What a reader saw, folded from its records as they come: the figures of
`events --summary` (views/events_summary.py words them).  Exact, as the records
are: counts by command, the processes that failed, the shortest- and longest-lived.

Bounded: the commands counted (NAMES_KEPT; the others' records are counted in
`others`), the failures and lifetimes kept (the counts are always complete), and
the table of what each process ran (last_execs.py)."""

from __future__ import annotations

import copy
import heapq
from dataclasses import dataclass, field

from ..kernel.abi import EXEC, EXEC_FAILED, EXIT, FORK
from .decode import Event
from .last_execs import LastExecs
from .rows import Filters

NAMES_KEPT = 1000
FAILED_KEPT = 20
LIFETIMES_KEPT = 5


@dataclass(slots=True)
class Counts:
    forks: int = 0
    execs: int = 0
    exits: int = 0


@dataclass(slots=True, frozen=True)
class Ended:
    """A process that exited, with the program it last ran (None: not seen)."""

    pid: int
    comm: str
    duration_ns: int
    exit_code: int
    signal: int
    argv: tuple[str, ...] | None
    argv_truncated: bool


@dataclass(slots=True, frozen=True)
class FailedExec:
    pid: int
    comm: str
    filename: str
    errno: int


@dataclass
class EventsTally:
    """Every record a reader takes in (it is the stream's observer).  A record is
    counted under the command its record names: a fork under the parent's name, an
    exec under the new program's, an exit under the last.  With `filters` (the
    reader's --comm, --pid, --tree-of...), only the records they let through count;
    the tally follows them with a copy of its own, made at the first record (once
    the view has started them), so that the view's are tracked once per record."""

    filters: Filters | None = None
    by_command: dict[str, Counts] = field(default_factory=dict)
    others: Counts = field(default_factory=Counts)  # past NAMES_KEPT commands
    failures: int = 0
    failed: list[Ended] = field(default_factory=list)
    failed_execs: int = 0
    failed_exec_list: list[FailedExec] = field(default_factory=list)
    # Heaps of (key, order of exit, Ended): the longest-lived (key: duration), and
    # the shortest (key: -duration).
    longest: list[tuple[int, int, Ended]] = field(default_factory=list)
    shortest: list[tuple[int, int, Ended]] = field(default_factory=list)
    exited: int = 0
    _filters: Filters | None = None
    first_dropped: int | None = None
    last_dropped: int = 0
    ran: LastExecs[tuple[tuple[str, ...], bool]] = field(default_factory=LastExecs)

    def __call__(self, e: Event) -> None:
        if self.first_dropped is None:
            self.first_dropped = e.dropped_total
            if self.filters is not None and self.filters.active:
                self._filters = copy.deepcopy(self.filters)
        self.last_dropped = e.dropped_total
        kind = e.type
        # What each process ran is kept from every record: a process that matches
        # may have forked from one that does not.
        if kind == FORK and not e.thread:
            self.ran.fork(e.tgid, e.ppid)
        elif kind == EXEC:
            argv = e.argv or ()
            self.ran.set(e.tgid, (argv, bool(e.argv_truncated)), sum(map(len, argv)) + 16)
        filters = self._filters
        if filters is not None:
            filters.track(e)
            if not filters.match_event(e):
                if kind == EXIT and not e.thread:
                    self.ran.pop(e.tgid)
                return
        if kind == FORK:
            if not e.thread:
                self._counts(e.comm).forks += 1
        elif kind == EXEC:
            self._counts(e.comm).execs += 1
        elif kind == EXIT:
            if not e.thread:
                self._counts(e.comm).exits += 1
                self._ended(e)
        elif kind == EXEC_FAILED:
            self.failed_execs += 1
            if len(self.failed_exec_list) < FAILED_KEPT:
                self.failed_exec_list.append(
                    FailedExec(e.tgid, e.comm, e.filename or "", e.errno or 0)
                )

    def _counts(self, comm: str) -> Counts:
        counts = self.by_command.get(comm)
        if counts is None:
            if len(self.by_command) >= NAMES_KEPT:
                return self.others
            counts = self.by_command[comm] = Counts()
        return counts

    def _ended(self, e: Event) -> None:
        ran = self.ran.pop(e.tgid)
        argv, truncated = ran if ran is not None else (None, False)
        duration = e.duration_ns or 0
        ended = Ended(
            e.tgid, e.comm, duration, e.exit_code or 0, e.exit_signal or 0, argv, truncated
        )
        if ended.exit_code or ended.signal:
            self.failures += 1
            if len(self.failed) < FAILED_KEPT:
                self.failed.append(ended)
        self.exited += 1
        for heap, key in ((self.longest, duration), (self.shortest, -duration)):
            item = (key, self.exited, ended)
            if len(heap) < LIFETIMES_KEPT:
                heapq.heappush(heap, item)
            else:
                heapq.heappushpop(heap, item)

    @property
    def lost(self) -> int:
        """Records lost between the first record seen and the last."""
        return self.last_dropped - (self.first_dropped or 0)

    def longest_lived(self) -> list[Ended]:
        return [x for _, _, x in sorted(self.longest, key=lambda i: (-i[0], i[1]))]

    def shortest_lived(self) -> list[Ended]:
        return [x for _, _, x in sorted(self.shortest, key=lambda i: (-i[0], i[1]))]
