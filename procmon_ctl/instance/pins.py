"""The pin layout: where every program, map and link of one instance lives in bpffs.

<pin dir>/progs/handle_fork   programs, pinned by `bpftool prog loadall`
<pin dir>/maps/rings          maps, pinned by `pinmaps`
<pin dir>/links/fork          links, pinned by `procmon-ctl attach`
<pin dir>/readers/3           a named reader's ring (slot 3), pinned by its first reader

What else makes a pin dir the pinned instance is beside this: whether a path may be
one (pin_dir.py), the record of the kernel ids of what procmon-ctl pinned there
(record.py) and the checks against it (identity.py), its locks (locks.py), all
put together in pinned.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..kernel.system import BPFFS_ROOT

DEFAULT_PIN_DIR = BPFFS_ROOT / "procmon"

# The tracepoint each program attaches to, by the name users give it.
PROGRAMS = {
    "fork": "handle_fork",
    "exec": "handle_exec",
    "exit": "handle_exit",
    # Not an event of its own: keeps each --cgroup reader's filter on its cgroup when
    # that is made anew (a restart), in the kernel, before a process can be in it.
    "cgroup": "handle_cgroup_mkdir",
}
# The events whose programs make records (`cgroup` serves readers' filters only).
RECORD_EVENTS = ("fork", "exec", "exit")
MAPS = (
    "rings",
    "readers",
    "reader_counts",
    "reader_losses",
    "process_count",
    "counters",
    "settings",
    "exited",
    "followed",
)
# The failed-exec programs (`events --failed`): loaded and pinned by `load` with
# the others, but attached only by such a reader, by fds it holds for as long as
# it runs (exec_failures.py): never by `attach`, never as a pinned link.
FAILED_EXEC_PROGRAMS = (
    "handle_execve_exit",
    "handle_execveat_exit",
)
# Maps `load` pins besides MAPS (which `status` lists): where exec records are built.
EXEC_MAPS = ("scratch_space",)
# What an object before issue 28 pinned for `events --failed`: its exit programs need
# these to have run, so such an instance is loaded again before it is read with
# --failed.
OLD_FAILED_EXEC_PROGRAMS = ("handle_execve_enter", "forget_on_exec")
# Made by `load` of versions before reader slots, below the pin dir while it sized
# the ring, and removed again: still ours should one be left.
RING_STAGING = "ring_staging"


@dataclass(frozen=True)
class PinLayout:
    root: Path

    @property
    def progs_dir(self) -> Path:
        return self.root / "progs"

    @property
    def maps_dir(self) -> Path:
        return self.root / "maps"

    @property
    def links_dir(self) -> Path:
        return self.root / "links"

    @property
    def readers_dir(self) -> Path:
        return self.root / "readers"

    def prog(self, event: str) -> Path:
        return self.progs_dir / PROGRAMS[event]

    def program(self, name: str) -> Path:
        """The pin of a program by its own name (prog() takes an event's)."""
        return self.progs_dir / name

    def map(self, name: str) -> Path:
        return self.maps_dir / name

    def link(self, event: str) -> Path:
        return self.links_dir / event

    def reader_ring(self, slot: int) -> Path:
        """A named reader's ring, kept while the reader is down: pinned so that its
        next reader opens it with CAP_BPF (by its id needs CAP_SYS_ADMIN).  By slot,
        not by name: bpffs refuses names with dots (events.jsonl)."""
        return self.readers_dir / str(slot)

    def is_loaded(self) -> bool:
        return self.progs_dir.exists() or self.maps_dir.exists()

    def is_complete(self) -> bool:
        """Every program and map pinned: what a finished `load` leaves."""
        return all(self.prog(e).exists() for e in PROGRAMS) and all(
            self.map(m).exists() for m in MAPS
        )

    def attached_events(self) -> list[str]:
        return [event for event in PROGRAMS if self.link(event).exists()]

    def all_pins(self) -> list[Path]:
        """Every pin below the root, deepest first (the order to remove them in)."""
        if not self.root.exists():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root, topdown=False):
            found += [Path(dirpath) / n for n in filenames]
            found += [Path(dirpath) / n for n in dirnames]
        return found


def pin_names(record: dict[str, int] | None) -> set[str]:
    """The pins (relative names) a load and an attach make, and what the record
    says this one made (the object's internal maps, e.g. process__rodata)."""
    names = {f"progs/{p}" for p in (*PROGRAMS.values(), *FAILED_EXEC_PROGRAMS)}
    names |= {f"maps/{m}" for m in (*MAPS, *EXEC_MAPS)}
    names |= {f"links/{e}" for e in PROGRAMS}
    return names | set(record or ())
