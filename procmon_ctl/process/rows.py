"""Events to table rows, and the filters: pure, testable without a kernel.

At fork time a child still carries its parent's name, so the table shows a new
process under what it runs: a fork row waits for the child's exec (or exit, or
a short window) before it is shown, and after an exec a while longer, for the
program that execs another (env, nice, setpriv, version managers' shims)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..kernel.abi import EXEC, EXIT, FORK
from .decode import Event, Usage
from .procfs import pids, read_stat

# A fork is shown once the child execs, or after this long without an exec.
# Shells and launchers exec within a millisecond or two of forking; 100 ms leaves
# room for a loaded machine and is still well below what a person notices.
EXEC_WINDOW_NS = 100_000_000

# A process that has exec'd may exec again: `env CMD`, `nice CMD`, `setpriv ...
# CMD` and the shims of version managers (pyenv, rbenv, asdf) run what they
# launch in their own process, within a few milliseconds (a shim written in shell,
# after a few subprocesses of its own).  So a row shows the last program exec'd
# within EXEC_WINDOW_NS of the one before (of the fork, for the first), and is
# held at most this long after its fork: a process that execs again and again
# cannot hold back the rows behind it for longer.
HOLD_LIMIT_NS = 5 * EXEC_WINDOW_NS

# The cgroup filter's verdicts kept (a host that makes cgroup after cgroup).
CGROUPS_KEPT = 4096

# --wide remembers each shown process until its exit row, and every table each
# process it has a row for until its exit record: at most this many (a host with
# more live processes than this loses the exit rows of the oldest, and the oldest
# may get a second row at an exec).
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
    argv: tuple[str, ...] = ()  # of its last exec shown (see ProcessRows)
    argv_truncated: bool = False
    exit_code: int | None = None
    exit_signal: int | None = None
    duration_ns: int | None = None
    thread: bool = False
    exited: bool = False  # an exit row that follows its process's row (--wide)
    cgroup_id: int = 0
    ts_ns: int = 0  # of its record (fork, exit, exec_failed): the TIME column
    pos: int = 0  # ring position of its record: the backlog ends before a position
    failed: bool = False  # an exec that failed (--failed); made with exited=True
    usage: Usage | None = None  # an exit row's: what the process cost


@dataclass
class Filters:
    """What `events` shows.  `tree` is the followed process tree (--tree): the
    processes at or below a root, kept exact by track() as the records are read, so
    that it holds live processes only and a reused pid is never credited to it."""

    # Each filter is the values any of which matches (None: no filter).
    comm: frozenset[str] | None = None
    pid: frozenset[int] | None = None
    ppid: frozenset[int] | None = None
    uid: frozenset[int] | None = None
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
    # --cgroup, --container: the kernel keeps other cgroups' records out of the ring
    # from the moment the reader starts; the backlog is judged by cgroup path here.
    cgroup: CgroupScope | None = None

    @property
    def active(self) -> bool:
        return any(
            v is not None
            for v in (self.comm, self.pid, self.ppid, self.uid, self.tree, self.cgroup)
        )

    def track(self, e: Event) -> None:
        """Keep the followed tree exact: call it with every record, in ring order,
        before matching what the record brings.

        A new child of a member joins; a member leaves once its exit record has been
        matched (at the next call).  A fork of a pid by a process outside the tree
        removes that pid: the pid is being reused, so whoever had it is gone, even if
        its exit record was lost (the ring was full).  So the tree holds live
        processes only, never more than pid_max of them."""
        if self.cgroup is not None:
            self.cgroup.track(e)
        tree = self.tree
        if tree is None:
            return
        if self.leaving is not None:
            tree.discard(self.leaving)
            self.leaving = None
        if e.thread:
            return
        if e.type == FORK:
            if e.ppid in tree:
                tree.add(e.tgid)
            elif e.ts_ns >= self.tree_since_ns:
                tree.discard(e.tgid)
        elif e.type == EXIT and e.tgid in tree and e.ts_ns >= self.tree_since_ns:
            self.leaving = e.tgid

    def match(self, pid: int, ppid: int, uid: int, comm: str, cgroup_id: int = 0) -> bool:
        return (
            (self.pid is None or pid in self.pid)
            and (self.ppid is None or ppid in self.ppid)
            and (self.uid is None or uid in self.uid)
            and (self.comm is None or comm in self.comm)
            and (self.tree is None or pid in self.tree)
            and (self.cgroup is None or self.cgroup.contains(cgroup_id))
        )

    def match_event(self, e: Event) -> bool:
        return self.match(e.tgid, e.ppid, e.uid, e.comm, e.cgroup_id)


@dataclass
class CgroupScope:
    """Which cgroups --cgroup and --container let through, in user space.

    Records made once the reader's kernel filter was set (`since_ns`, the records'
    clock) are all inside: the kernel let them through, and their cgroups are
    remembered as inside, so that a container's records still count once it is
    gone.  Older records (the ring's backlog) are judged by their cgroup's path:
    at or below `path`; a cgroup already removed cannot be placed and is left out.
    `path` None: a container that did not run when the reader started (it waits
    for it): no older record is its."""

    path: str | None  # as cgroups.CgroupNames shows paths: "/", "/a/b"
    path_of: Callable[[int], str | None]
    since_ns: int = 1 << 63  # set when the reader starts
    inside: dict[int, bool] = field(default_factory=dict)

    def track(self, e: Event) -> None:
        if e.ts_ns >= self.since_ns:
            self.inside[e.cgroup_id] = True

    def contains(self, cgroup_id: int) -> bool:
        verdict = self.inside.get(cgroup_id)
        if verdict is None:
            where = self.path_of(cgroup_id) if self.path is not None else None
            verdict = where is not None and (
                self.path == "/" or where == self.path or where.startswith(self.path + "/")
            )
            if len(self.inside) >= CGROUPS_KEPT:
                self.inside.clear()
            self.inside[cgroup_id] = verdict
        return verdict


def descendants(root: int) -> set[int]:
    """`root` and every process now below it, from /proc (--tree starts from here)."""
    children: dict[int, list[int]] = {}
    for pid in pids():
        stat = read_stat(pid)
        if stat is not None:
            children.setdefault(stat.ppid, []).append(pid)
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


@dataclass(slots=True)
class _Held:
    """A row in ProcessRows.queue: its place in the ring, and whether it is final."""

    pos: int  # ring position of the record the row stands for (its fork or exit)
    row: Row
    deadline: int  # ns; a held fork row is final then, without another exec
    limit: int = 0  # ns; no exec moves the deadline past this (HOLD_LIMIT_NS after the fork)
    final: bool = False
    shown: bool = True  # final: whether the filters keep it
    ended: bool = False  # its process exited before the row was taken
    later: Event | None = None  # --wide: an exec after the row's window, for the exit row
    execed: bool = False  # the row has taken its process's first exec


# The filters' verdict on a row, at the moment it becomes final.
Keep = Callable[[Row], bool]


def _keep_all(row: Row) -> bool:
    return True


def _take_exec(row: Row, e: Event) -> None:
    """`row` now stands for the program `e` exec'd."""
    row.comm, row.filename, row.uid = e.comm, e.filename or "", e.uid
    row.argv, row.argv_truncated = e.argv or (), bool(e.argv_truncated)


@dataclass
class ProcessRows:
    """fork/exec/exit events in, table rows out, in the order of their records.

    At fork time a child still carries its parent's name, so a fork row is held
    until the child exits or its window passes (a worker or subshell keeps the
    inherited name).  An exec within the window gives the row the exec'd name,
    filename and arguments, and moves the window to EXEC_WINDOW_NS after it (up to
    HOLD_LIMIT_NS after the fork), so that the row shows what a launcher that
    execs again (env, nice, shims) finally ran.  An exec after the window leaves
    the row as it is; with --wide, the exit row shows the last program.

    A process whose fork this reader did not see gets its row at its first exec:
    one that ran before the reader started, or one forked outside the reader's
    cgroup filter and moved in (`podman exec`'s own process, `systemd-run
    --scope`), whose fork record the kernel kept out.  `known` says
    which processes have a row, from their fork (or that exec) to their exit.

    Rows come out in ring order, each once every row before it is final, so the
    ring position of the first row not taken bounds what the reader may hand back
    to the ring: a row still held, or left behind by --count, is read again by the
    next reader; a record before that position has had all its rows written.
    (`keep`, the filters, judges a row as it becomes final, in ring order: the
    tree a row is judged against is the one of its record's time.)

    Bounded: `queue` by the records of HOLD_LIMIT_NS, of one exec window but for
    a process that keeps exec'ing (or of one batch, when reading a backlog),
    `pending` likewise, `shown` (--wide) and `known` by the live processes
    shown.  An entry whose exit record was lost (the ring was full) goes when its
    pid is forked again, and neither ever holds more than SHOWN_LIMIT."""

    follow_exits: bool = False  # --wide: an exit row follows each shown process
    window_ns: int = EXEC_WINDOW_NS
    keep: Keep = _keep_all
    queue: deque[_Held] = field(default_factory=deque)
    pending: dict[int, _Held] = field(default_factory=dict)  # tgid -> its row, not yet taken
    shown: dict[int, Row] = field(default_factory=dict)
    known: dict[int, None] = field(default_factory=dict)  # tgids with a row, in age order

    def _final(self, held: _Held) -> None:
        held.final = True
        held.shown = self.keep(held.row)

    def add_final(self, row: Row, pos: int) -> None:
        """Queue a row that is final as it is (a failed exec's), judged by the
        filters, among the others in ring order (`pos`: its record's position)."""
        self._now_final(pos, row)

    def _now_final(self, pos: int, row: Row) -> None:
        row.pos = pos
        held = _Held(pos, row, 0)
        self._final(held)
        self.queue.append(held)

    def feed(self, e: Event, pos: int = 0) -> None:
        """Take record `e` (at ring position `pos`).  Call before Filters.track(e):
        a fork can make final the row still held for the process that had its pid
        before (its exit record was lost), which must be judged while that pid is
        still in the followed tree."""
        if e.type == FORK:
            row = Row(
                e.pid,
                e.tgid,
                e.ppid,
                e.uid,
                e.comm,
                thread=e.thread,
                cgroup_id=e.cgroup_id,
                ts_ns=e.ts_ns,
                pos=pos,
            )
            if e.thread:
                self._now_final(pos, row)
                return
            # A new process with this pid: whoever had it before is gone.
            held = self.pending.pop(e.tgid, None)
            if held is not None:
                self._ended(held)
            if self.shown:
                self.shown.pop(e.tgid, None)
            self._hold(e, pos, row)
            return
        if e.type == EXEC:
            self._exec(e, pos)
            return
        if e.type != EXIT:
            return  # exec_failed: the process runs on as it was
        self.known.pop(e.tgid, None)
        held = self.pending.pop(e.tgid, None)
        if held is not None:
            self._ended(held)
            row = held.row
        else:
            row = self.shown.pop(e.tgid, None) if self.shown else None
            if row is None and self.follow_exits:
                # A process this reader did not see start (it started before the
                # reader, or its row was given up at SHOWN_LIMIT): its exit row shows
                # what the exit record itself says, its name, how long it ran and how
                # it ended, and the filters judge it as they judge any row.
                row = Row(e.tgid, e.tgid, e.ppid, e.uid, e.comm, cgroup_id=e.cgroup_id)
        if row is not None and self.follow_exits:
            if held is not None and held.later is not None:
                row = replace(row)
                _take_exec(row, held.later)
            self._now_final(
                pos,
                replace(
                    row,
                    exit_code=e.exit_code,
                    exit_signal=e.exit_signal,
                    duration_ns=e.duration_ns,
                    usage=e.usage,
                    exited=True,
                    ts_ns=e.ts_ns,
                ),
            )

    def _hold(self, e: Event, pos: int, row: Row, execed: bool = False) -> None:
        """Queue the new row of process e.tgid, held for its window from `e`."""
        known = self.known
        known.pop(e.tgid, None)
        if len(known) >= SHOWN_LIMIT:
            del known[next(iter(known))]
        known[e.tgid] = None
        limit = e.ts_ns + max(self.window_ns, HOLD_LIMIT_NS)
        held = _Held(pos, row, e.ts_ns + self.window_ns, limit, execed=execed)
        self.pending[e.tgid] = held
        self.queue.append(held)

    def _exec(self, e: Event, pos: int) -> None:
        held = self.pending.get(e.tgid)
        if held is None and e.tgid not in self.known:
            # A process this reader has no row for: its row starts here.
            row = Row(
                e.tgid, e.tgid, e.ppid, e.uid, e.comm, cgroup_id=e.cgroup_id, ts_ns=e.ts_ns, pos=pos
            )
            _take_exec(row, e)
            self._hold(e, pos, row, execed=True)
            return
        # The first exec, whenever it comes while the row is held (on a loaded host, or
        # in a backlog read at once, it may come long after the fork); a later one
        # within the window that the exec before it opened.
        if held is not None and not held.final and (not held.execed or e.ts_ns <= held.deadline):
            _take_exec(held.row, e)
            held.execed = True
            held.deadline = min(max(held.deadline, e.ts_ns + self.window_ns), held.limit)
            return
        if not self.follow_exits:
            return
        # After its row's window: --wide's exit row will show this program.
        if held is not None:
            held.later = e
        elif self.shown and e.tgid in self.shown:
            row = replace(self.shown[e.tgid])
            _take_exec(row, e)
            self.shown[e.tgid] = row

    def _ended(self, held: _Held) -> None:
        """The process of a row not yet taken is gone: its row is final as it is,
        and is not remembered for an exit row (--wide)."""
        held.ended = True
        if not held.final:
            self._final(held)

    def take(self, now_ns: int, limit: int | None = None) -> list[Row]:
        """The rows at the front of the queue that are final (held fork rows are
        once their window has passed by `now_ns`), in order, at most `limit` kept
        by the filters."""
        queue, out = self.queue, []
        while queue and (limit is None or len(out) < limit):
            held = queue[0]
            if not held.final:
                if held.deadline > now_ns:
                    break
                self._final(held)
            queue.popleft()
            if not held.row.thread and self.pending.get(held.row.tgid) is held:
                del self.pending[held.row.tgid]
            if held.shown:
                out.append(self._show(held))
        return out

    def first_pos(self) -> int | None:
        """Ring position of the first row not taken (None: all taken)."""
        return self.queue[0].pos if self.queue else None

    def _show(self, held: _Held) -> Row:
        row = held.row
        if self.follow_exits and not row.exited and not row.thread and not held.ended:
            shown = self.shown
            if len(shown) >= SHOWN_LIMIT:
                # Only a host with this many live processes, or lost exit records,
                # gets here: the longest-shown row gives up its exit row.
                del shown[next(iter(shown))]
            if held.later is not None:
                later = replace(row)
                _take_exec(later, held.later)
                shown[row.pid] = later
            else:
                shown[row.pid] = row
        return row

    def flush(self) -> list[Row]:
        """Every row left, held ones as they are (the stream ends)."""
        return self.take(1 << 63)
