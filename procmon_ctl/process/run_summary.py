"""What a `run -- CMD` tree did, folded from its records as they come: how many
processes it started and by what name, which failed, which lived longest, and what
each still running runs.  views/run_summary.py words it; commands/run.py makes the
RunSummary of it."""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

from ..kernel.abi import EXEC, EXIT, FORK
from .decode import Event
from .rows import ProcessRows
from .tree import ProcessTree

# How much of the tree the summary details (the counts are always complete).
LONGEST_SHOWN = 5
COSTLIEST_SHOWN = 5  # the top processes by CPU, and by peak memory
FAILED_SHOWN = 20
NAMES_KEPT = 1000


@dataclass(slots=True)
class _Running:
    """A process of the tree until it exits: the program it last exec'd."""

    name: str
    argv: tuple[str, ...] | None = None  # None: no exec seen, nor its parent's
    argv_truncated: bool = False


@dataclass(slots=True, frozen=True)
class Failure:
    """A process of the tree that exited non-zero or was killed."""

    pid: int
    name: str
    exit_code: int | None
    signal: int | None
    argv: tuple[str, ...] | None  # the program it last ran; None: not seen
    argv_truncated: bool


@dataclass(slots=True, frozen=True)
class Costly:
    """A process of the tree that exited, with what it cost (its exit record's)."""

    pid: int
    name: str
    cpu_ns: int  # user + system
    max_rss_kib: int
    started_ns: int  # CLOCK_MONOTONIC, as records' ts_ns
    duration_ns: int


class TreeSummary:
    """Every record of the followed tree in, the summary's figures out.  Bounded:
    a process is forgotten when it exits; only counts grow (and `tree`, when one
    is built, up to its own bound)."""

    def __init__(self, tree: ProcessTree | None = None) -> None:
        self.tree = tree
        self.rows = ProcessRows()
        self.names: Counter[str] = Counter()
        self.started = 0
        self.failed: list[Failure] = []
        self.failures = 0
        self.longest: list[tuple[int, int, str]] = []  # min-heap of (duration, pid, name)
        self.alive: dict[int, _Running] = {}  # tgid -> what it runs, until it exits
        # What the processes that exited cost: sums, and min-heaps of the costliest
        # by CPU and by peak memory, ((figure, pid), Costly).
        self.cpu_user_ns = self.cpu_system_ns = self.measured = 0
        self.by_cpu: list[tuple[tuple[int, int], Costly]] = []
        self.by_memory: list[tuple[tuple[int, int], Costly]] = []

    def __call__(self, e: Event) -> None:
        if e.type == EXIT:
            proc = self.alive.pop(e.tgid, None) or _Running(e.comm)
            if e.usage is not None:
                self._cost(e, proc.name)
            item = (e.duration_ns or 0, e.tgid, proc.name)
            if len(self.longest) < LONGEST_SHOWN:
                heapq.heappush(self.longest, item)
            else:
                heapq.heappushpop(self.longest, item)
            if e.exit_code or e.exit_signal:
                self.failures += 1
                if len(self.failed) < FAILED_SHOWN:
                    self.failed.append(
                        Failure(
                            pid=e.tgid,
                            name=proc.name,
                            exit_code=e.exit_code,
                            signal=e.exit_signal,
                            argv=proc.argv,
                            argv_truncated=proc.argv_truncated,
                        )
                    )
        elif e.type == EXEC:
            # The last program it exec'd, whenever (its row may show an earlier one).
            self.alive[e.tgid] = _Running(e.comm, e.argv or (), bool(e.argv_truncated))
        elif e.type == FORK and not e.thread:
            # Until it execs, a child runs its parent's program (as ps shows it).
            parent = self.alive.get(e.ppid)
            if parent is None:
                self.alive[e.tgid] = _Running(e.comm)
            else:
                self.alive[e.tgid] = _Running(e.comm, parent.argv, parent.argv_truncated)
        if self.tree is not None:
            self.tree.feed(e)
        self.rows.feed(e)
        # The records' own clock: a fork row is final once a record a window later
        # is seen, so the queue stays as short as one exec window.
        for r in self.rows.take(e.ts_ns):
            self._count(r.tgid, r.comm)

    def _cost(self, e: Event, name: str) -> None:
        u = e.usage
        self.measured += 1
        self.cpu_user_ns += u.cpu_user_ns
        self.cpu_system_ns += u.cpu_system_ns
        duration = e.duration_ns or 0
        costly = Costly(
            e.tgid,
            name,
            u.cpu_user_ns + u.cpu_system_ns,
            u.max_rss_kib,
            e.ts_ns - duration,
            duration,
        )
        for heap, figure in ((self.by_cpu, costly.cpu_ns), (self.by_memory, costly.max_rss_kib)):
            item = ((figure, e.tgid), costly)
            if len(heap) < COSTLIEST_SHOWN:
                heapq.heappush(heap, item)
            else:
                heapq.heappushpop(heap, item)

    def costliest(self, heap: list[tuple[tuple[int, int], Costly]]) -> list[Costly]:
        """by_cpu's or by_memory's processes, the costliest first."""
        return [c for _, c in sorted(heap, key=lambda item: item[0], reverse=True)]

    def _count(self, pid: int, name: str) -> None:
        self.started += 1
        if name in self.names or len(self.names) < NAMES_KEPT:
            self.names[name] += 1

    def name_of(self, pid: int) -> str:
        proc = self.alive.get(pid)
        return "?" if proc is None else proc.name

    def finish(self) -> None:
        for r in self.rows.flush():
            self._count(r.tgid, r.comm)
