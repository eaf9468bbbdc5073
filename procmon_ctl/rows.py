"""Events to table rows, and the filters: pure, testable without a kernel.

At fork time a child still carries its parent's name, so the table shows a new
process under what it runs: a fork row waits for the child's exec (or exit, or
a short window) before it is shown."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .decode import Event

# A fork is shown once the child execs, or after this long without an exec.
# Shells and launchers exec within a millisecond or two of forking; 100 ms leaves
# room for a loaded machine and is still well below what a person notices.
EXEC_WINDOW_NS = 100_000_000

# --wide remembers each shown process until its exit row: at most this many (a
# host with more live processes than this loses the exit rows of the oldest).
SHOWN_LIMIT = 65_536


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
    """What `events` shows.  `tree` is the followed process tree (--tree): the
    processes at or below a root, kept exact by track() as the records are read, so
    that it holds live processes only and a reused pid is never credited to it."""

    comm: str | None = None
    pid: int | None = None
    ppid: int | None = None
    uid: int | None = None
    tree: set[int] | None = None  # the followed process tree: grown on fork, pruned on exit
    # When `tree` was known to be right (CLOCK_MONOTONIC, as the records' ts_ns): an
    # older record (the ring's backlog) may only add to it.  Records are replayed on
    # top of the tree as it is now, not as it was then, so an old exit or fork of a pid
    # that a member has now must not remove that member.
    tree_since_ns: int = field(default_factory=time.monotonic_ns)
    # A member whose exit record was the last one tracked: it leaves the tree when the
    # next record is tracked, so that its exit record, and the fork row still held for
    # it that this record releases, are matched first, in every loop that calls
    # track() and then match().
    leaving: int | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.comm, self.pid, self.ppid, self.uid, self.tree))

    def track(self, e: Event) -> None:
        """Keep the followed tree exact: call it with every record, in ring order,
        before matching what the record brings.

        A new child of a member joins; a member leaves once its exit record has been
        matched (at the next call).  A fork of a pid by a process outside the tree
        removes that pid: the pid is being reused, so whoever had it is gone, even if
        its exit record was lost (the ring was full).  So the tree holds live
        processes only, never more than pid_max of them."""
        tree = self.tree
        if tree is None:
            return
        if self.leaving is not None:
            tree.discard(self.leaving)
            self.leaving = None
        if e.thread:
            return
        if e.type == "fork":
            if e.ppid in tree:
                tree.add(e.tgid)
            elif e.ts_ns >= self.tree_since_ns:
                tree.discard(e.tgid)
        elif e.type == "exit" and e.tgid in tree and e.ts_ns >= self.tree_since_ns:
            self.leaving = e.tgid

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
    or EXEC_WINDOW_NS passes (a worker or subshell keeps the inherited name).

    Both tables are bounded: `pending` by the forks of one exec window (or of one
    batch, when reading a backlog), `shown` (--wide) by the live processes shown.
    An entry whose exit record was lost (the ring was full) goes when its pid is
    forked again, and `shown` never holds more than SHOWN_LIMIT rows."""

    follow_exits: bool = False  # --wide: an exit row follows each shown process
    window_ns: int = EXEC_WINDOW_NS
    pending: dict[int, tuple[int, Row]] = field(default_factory=dict)
    shown: dict[int, Row] = field(default_factory=dict)

    def feed(self, e: Event) -> list[Row]:
        """The rows `e` completes.  A fork can release the row still held for the
        process that had its pid before (its exit record was lost): match the rows
        before Filters.track(e) drops that pid from the followed tree."""
        if e.type == "fork":
            row = Row(e.pid, e.tgid, e.ppid, e.uid, e.comm, thread=e.thread)
            if e.thread:
                return [row]
            # A new process with this pid: whoever had it before is gone.
            held = self.pending.pop(e.tgid, None)
            if self.shown:
                self.shown.pop(e.tgid, None)
            self.pending[e.tgid] = (e.ts_ns + self.window_ns, row)
            return [held[1]] if held else []
        held = self.pending.pop(e.tgid, None)
        if e.type == "exec":
            if held is None:
                return []
            row = held[1]
            row.comm, row.filename, row.uid = e.comm, e.filename or "", e.uid
            return [self._show(row)]
        # exit
        out = [held[1]] if held else []
        row = self.shown.pop(e.tgid, None) if self.shown else None
        if row is None and held is not None:
            row = held[1]
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
            shown = self.shown
            if len(shown) >= SHOWN_LIMIT:
                # Only a host with this many live processes, or lost exit records,
                # gets here: the longest-shown row gives up its exit row.
                del shown[next(iter(shown))]
            shown[row.pid] = row
        return row

    def expire(self, now_ns: int) -> list[Row]:
        """Rows whose exec window has passed without an exec."""
        if not self.pending:
            return []
        due = [pid for pid, (deadline, _) in self.pending.items() if deadline <= now_ns]
        return [self._show(self.pending.pop(pid)[1]) for pid in due]

    def flush(self) -> list[Row]:
        return self.expire(1 << 63)
