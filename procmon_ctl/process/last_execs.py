"""The program each process last ran, by pid: what lets an exit say which command
ended (the filename and argv of JSON exit lines, the names of `events --summary`).

Kept from the records, in ring order:
- an exec sets its process's entry (a thread's exec replaces the whole process's
  image, and its record names the process, tgid);
- a fork that makes a process gives the child its parent's entry: a child that
  has not exec'd runs its parent's image, so its command line is its parent's
  last exec's (as ps shows it);
- an exit takes the entry out (pop); thread forks and exits change nothing.
Processes running when the reader starts are taken from /proc (procfs.processes():
their command lines, without a filename).

Bounded by entries (`cap`) and by the bytes their values take (`max_bytes`): past
either, the entry set longest ago goes first (no entry is read but at its exit,
which removes it, so this is least recently used).  A process whose entry went has
an exit that says nothing of its program.  native/json_lines.c keeps the same
table for the C writer, with the same bounds and the same order of eviction, so
that both writers write the same lines."""

from __future__ import annotations

from typing import Generic, TypeVar

from .procfs import ProcInfo, processes

V = TypeVar("V")

# Living processes a host runs are a few thousand; this many leaves room for a
# storm's short-lived ones whose exits are still in the ring.
CAP = 1 << 15
# What the values may take in all: a command line is kept up to 16 KiB (ARGV_MAX_BYTES),
# six times that as JSON at worst; most are under 200 bytes.
MAX_BYTES = 64 << 20


class LastExecs(Generic[V]):
    """pid -> what its process last exec'd (a value of the caller's: the JSON
    writers keep their lines' fragment), with each value's size in bytes."""

    def __init__(self, cap: int = CAP, max_bytes: int = MAX_BYTES):
        self.cap, self.max_bytes = cap, max_bytes
        # Oldest set first: dicts keep insertion order, and set() moves a pid last.
        self._entries: dict[int, tuple[V, int]] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, pid: int) -> V | None:
        entry = self._entries.get(pid)
        return None if entry is None else entry[0]

    def set(self, pid: int, value: V, size: int) -> None:
        """The process `pid` exec'd what `value` says (`size` bytes of it)."""
        entries = self._entries
        old = entries.pop(pid, None)
        if old is not None:
            self.bytes -= old[1]
        entries[pid] = (value, size)
        self.bytes += size
        while len(entries) > self.cap or self.bytes > self.max_bytes:
            self.bytes -= entries.pop(next(iter(entries)))[1]

    def fork(self, child: int, parent: int) -> None:
        """The process `parent` forked `child`, which runs its image until it execs."""
        entry = self._entries.get(parent)
        if entry is None:
            self.pop(child)  # what a former process of that pid ran is not this one's
        else:
            self.set(child, *entry)

    def pop(self, pid: int) -> V | None:
        """The process `pid` exited: what it last ran, and its entry is gone."""
        entry = self._entries.pop(pid, None)
        if entry is None:
            return None
        self.bytes -= entry[1]
        return entry[0]


def running_programs(root: str = "/proc") -> list[ProcInfo]:
    """The processes running now with a command line (not kernel threads, not
    zombies), oldest first: what a table starts from."""
    return [info for info in processes(root) if info.argv]
