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

    def __call__(self, e: Event) -> None:
        if e.type == EXIT:
            proc = self.alive.pop(e.tgid, None) or _Running(e.comm)
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
