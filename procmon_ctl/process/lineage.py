"""Who started each process: the table behind `events --lineage`.

A record's lineage is the chain of processes that forked its process, parent
first, up to pid 1 (or the topmost one known: kthreadd, pid 2, for kernel
threads).  It is "who started it", not "who is its parent now": a process whose
parent exits keeps that parent, marked exited, and the parent's own ancestors,
although its exit record's ppid names the reaper (init or a subreaper).

The table is built from /proc when the reader starts (ProcessTable.from_proc),
then kept from the records.  /proc only knows a process's current parent, so a
process already orphaned when the reader starts has its reaper as parent: its
lineage starts there.  /proc is read by procfs.

Entries hold a reference to their parent's entry, never its pid, so a reused pid
cannot graft one process's ancestors onto another.  The table is bounded: it
holds the processes not known to have exited, and the exited ones still named in
the lineage of one of those; an exited entry goes as soon as its last child
entry goes.  Records that are lost can leave entries of dead processes behind,
hence a hard cap too (see ProcessTable).

Records are fed in ring order; pick the lineage up through what feed() returns:

    process = table.feed(event)   # the process the record is about
    ancestors = process.lineage() if process else []

The text readers show of it is views/lineage.py's.

feed() returns the entry even when the record was its exit and the entry has
left the table: it still holds its ancestors."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import NamedTuple

from ..kernel.abi import EXEC, EXIT, FORK
from .decode import Event
from .procfs import ProcInfo, processes, read_process

# Entries in a table at most.  A table that never loses a record holds the living
# processes and the exited ancestors they need, well below this on any host (the
# kernel's default pid_max is 32768, or 4 million on large machines).  Past it,
# exits were lost and dead processes linger: see ProcessTable._shrink.
CAP = 1 << 17

# Ancestors a lineage shows at most, nearest first.  Real trees are a few dozen
# deep at most (systemd, sshd, shells, tmux, recursive make, a compiler driver);
# but any user can make a chain as deep as the table's cap by forking and exiting
# in a loop, and every record below it would then repeat the whole chain.
DEPTH = 64


class Ancestor(NamedTuple):
    pid: int
    comm: str  # decode.text(), as in records
    argv: tuple[str, ...]  # () for kernel threads, zombies and what was never seen
    exited: bool
    # The lineage stops here, DEPTH ancestors up: this one's own are left out.
    cut: bool = False


class Process:
    """One process in the table.  `comm` and `argv` are its last exec's (its
    parent's until it execs); `children` counts the entries whose parent it is
    that are still kept."""

    __slots__ = ("argv", "children", "comm", "exited", "parent", "pid", "shown")

    def __init__(self, pid: int, comm: str, argv: tuple[str, ...], parent: Process | None):
        self.pid = pid
        self.comm = comm
        self.argv = argv
        self.parent = parent
        self.children = 0
        self.exited = False
        # What a view made of this entry, kept by the view (a lineage repeats its
        # ancestors record after record); None again whenever the entry changes.
        self.shown: str | None = None

    def __repr__(self) -> str:
        state = " exited" if self.exited else ""
        return f"<Process {self.pid} {self.comm!r}{state}>"

    def ancestors(self) -> Iterator[Process]:
        """Parent first, then grandparent, and so on: all of them."""
        p = self.parent
        while p is not None:
            yield p
            p = p.parent

    def lineage(self) -> list[Ancestor]:
        """The ancestors, parent first, DEPTH at most (the last one `cut` when
        there are more)."""
        shown = list(islice(self.ancestors(), DEPTH))
        lineage = [Ancestor(p.pid, p.comm, p.argv, p.exited) for p in shown]
        if shown and shown[-1].parent is not None:
            lineage[-1] = lineage[-1]._replace(cut=True)
        return lineage


class ProcessTable:
    """The processes whose lineage records may ask for, by pid.

    Bounded by the processes alive plus the exited ancestors they need; and, as a
    safety net against lost exit records, by `cap` entries (see _shrink).

    `root` is where to read /proc for a process a record names but the table does
    not know (its fork record was lost, or it was evicted); None: never read it,
    as a table built from synthetic records must not."""

    def __init__(self, root: str | None = None, cap: int = CAP):
        self.root = root
        self.cap = cap
        # Processes not known to have exited, oldest first (eviction's order).
        self._living: dict[int, Process] = {}
        # Exited processes still named in a lineage: no pid maps to them, as the
        # pid may already be another process's.
        self._exited: set[Process] = set()

    @classmethod
    def from_proc(cls, root: str = "/proc", cap: int = CAP) -> ProcessTable:
        """Every process /proc shows, with its parent as /proc has it.  Build it
        after the ring is attached: a process started in between is then in the
        table, its records (queued before the scan) replay what it already shows."""
        table = cls(root, cap)
        found = processes(root)
        living = table._living
        for info in found:
            living[info.pid] = Process(info.pid, info.comm, info.argv, None)
        for info in found:
            parent = living.get(info.ppid)
            if parent is not None:
                living[info.pid].parent = parent
                parent.children += 1
        table._shrink()
        return table

    def __len__(self) -> int:
        return len(self._living) + len(self._exited)

    @property
    def living_count(self) -> int:
        return len(self._living)

    @property
    def exited_count(self) -> int:
        return len(self._exited)

    def entries(self) -> Iterator[Process]:
        """Every entry kept: the living processes, then the exited ones."""
        yield from self._living.values()
        yield from self._exited

    def get(self, pid: int) -> Process | None:
        """The living process `pid`, as far as the records tell."""
        return self._living.get(pid)

    def feed(self, e: Event) -> Process | None:
        """Take in one record; return the process it is about (the child of a
        fork, the process of the others: its tgid), None when the table does not
        know it.  Its lineage is the record's, whatever the record was."""
        kind = e.type
        if kind == FORK:
            if e.thread:
                return self._living.get(e.tgid)
            return self._fork(e.tgid, e.ppid, e.comm)
        if kind == EXEC:
            return self._exec(e.tgid, e.ppid, e.comm, e.argv or ())
        if kind == EXIT:
            process = self._living.pop(e.tgid, None)
            if process is not None:
                self._end(process)
            return process
        # exec_failed changes nothing; unknown record types neither.
        return self._living.get(e.tgid)

    def lineage(self, pid: int) -> list[Ancestor]:
        """The ancestors of the living process `pid`, parent first ([] when it is
        unknown).  For a record, use what feed() returned: after an exit record
        its pid is no longer in the table."""
        process = self._living.get(pid)
        return [] if process is None else process.lineage()

    def _fork(self, pid: int, ppid: int, comm: str) -> Process:
        living = self._living
        old = living.pop(pid, None)
        if old is not None:
            # The pid's last process ended without its exit record reaching us.
            self._end(old)
        parent = living.get(ppid)
        if parent is None:
            parent = self.adopt(ppid)
            if parent is None and ppid > 0:
                # The fork record names the parent (comm is its name): enough for
                # a lineage one step long.
                parent = living[ppid] = Process(ppid, comm, (), None)
        child = Process(pid, comm, parent.argv if parent is not None else (), parent)
        if parent is not None:
            parent.children += 1
        living[pid] = child
        if len(living) + len(self._exited) > self.cap:
            self._shrink()
        return child

    def _exec(self, pid: int, ppid: int, comm: str, argv: tuple[str, ...]) -> Process:
        process = self._living.get(pid)
        if process is None:
            # Its fork was lost or it was evicted: its parent now is the best guess.
            parent = self._living.get(ppid) or self.adopt(ppid)
            process = self._living[pid] = Process(pid, comm, argv, parent)
            if parent is not None:
                parent.children += 1
            if len(self) > self.cap:
                self._shrink()
            return process
        process.comm = comm
        process.argv = argv
        process.shown = None
        return process

    def _end(self, process: Process) -> None:
        """`process` has exited and is no longer in _living."""
        process.exited = True
        process.shown = None
        if process.children:
            self._exited.add(process)
        else:
            self._release(process.parent)

    def _release(self, parent: Process | None) -> None:
        """One child entry of `parent` has gone: drop the exited ancestors that
        no longer have any."""
        while parent is not None:
            parent.children -= 1
            if parent.children or not parent.exited:
                return
            self._exited.discard(parent)
            parent = parent.parent

    def adopt(self, pid: int) -> Process | None:
        """The process `pid` and the ancestors the table lacks, read from /proc and
        taken into the table (None without a root or once it has gone)."""
        if self.root is None or pid <= 0:
            return None
        missing: dict[int, ProcInfo] = {}
        parent = None
        # A pid met twice is a loop made of pids reused while we walk.
        while pid > 0 and pid not in missing:
            info = read_process(pid, self.root)
            if info is None:
                break
            missing[pid] = info
            parent = self._living.get(info.ppid)
            if parent is not None:
                break
            pid = info.ppid
        for info in reversed(missing.values()):
            process = self._living[info.pid] = Process(info.pid, info.comm, info.argv, parent)
            if parent is not None:
                parent.children += 1
            parent = process
        return parent if missing else None

    def _shrink(self) -> None:
        """Past the cap: evict an eighth of it at once, so that the scan below is
        paid once per cap/8 new entries.  Exited entries go first (they cost a
        lineage its top, not a process), then living ones that no entry names as
        parent, oldest first (most likely dead processes whose exit was lost),
        then the oldest of the rest.  A process whose parent is evicted keeps a
        lineage that stops short of it; an evicted living process that turns up
        in a later record is taken in anew (from /proc when the table has a
        root), and its exit alone is ignored."""
        excess = len(self) - self.cap
        if excess <= 0:
            return
        need = excess + self.cap // 8
        victims: set[Process] = set()
        for p in self._exited:
            if len(victims) >= need:
                break
            victims.add(p)
        for leaves_only in (True, False):
            for p in self._living.values():
                if len(victims) >= need:
                    break
                if p not in victims and (p.children == 0 or not leaves_only):
                    victims.add(p)
        self._exited -= victims
        for p in victims:
            if self._living.get(p.pid) is p:
                del self._living[p.pid]
        for p in (*self._living.values(), *self._exited):
            if p.parent in victims:
                p.parent = None
        for p in victims:
            if p.parent is not None and p.parent not in victims:
                self._release(p.parent)
            p.parent = None
