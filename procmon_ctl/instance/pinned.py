"""PinnedInstance: the instance `load` pinned in a pin dir, shared by every process
on the host, put together from its pieces: where its pins are (pins.py), the
record of what procmon-ctl pinned (record.py) and the checks against it
(identity.py), and its locks (locks.py)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Command, StateError, Words
from . import pin_dir
from .base import Instance
from .identity import PinIdentity
from .pins import FAILED_EXEC_PROGRAMS, OLD_FAILED_EXEC_PROGRAMS, PinLayout
from .record import PinRecord

if TYPE_CHECKING:
    from .locks import PinLocks

LOAD_FIRST = ("run ", Command("load"), " first")


@dataclass(frozen=True)
class PinnedInstance(Instance):
    layout: PinLayout

    follow_mode = False  # a pinned instance is shared: never one process tree's

    @classmethod
    def resolve(cls, pin_dir_given: str | os.PathLike | None = None) -> PinnedInstance:
        """The instance of --pin-dir / $PROCMON_PIN_DIR / the default (pin_dir.resolve)."""
        return cls(pin_dir.resolve(pin_dir_given))

    @classmethod
    def at(cls, root: Path) -> PinnedInstance:
        """The instance whose pin dir is `root`, taken as it is (no checks)."""
        return cls(PinLayout(root))

    @property
    def root(self) -> Path:
        return self.layout.root

    @cached_property
    def record(self) -> PinRecord:
        return PinRecord(self.layout)

    @cached_property
    def identity(self) -> PinIdentity:
        return PinIdentity(self.layout, self.record)

    @cached_property
    def locks(self) -> PinLocks:
        from .locks import PinLocks  # here: `stats` takes no lock

        return PinLocks(self.layout)

    def state_paths(self) -> list[Path]:
        """Every file of this pin dir in /run/procmon-ctl."""
        return [*self.locks.paths(), self.record.path, self.record.temporary_path]

    def require_loaded(self, fix: Words = LOAD_FIRST) -> None:
        """Refuse to go on unless a whole instance is pinned here, and it is the one
        procmon-ctl loaded (PinIdentity.check_pins).  fix: what to do instead of
        loading first."""
        if not self.layout.is_loaded():
            raise StateError((f"nothing loaded at {self.root}: ", *fix))
        if not self.layout.is_complete():
            raise StateError(self.incomplete_message())
        self.identity.check_pins()

    def incomplete_message(self) -> Words:
        return (
            f"an incomplete pin set is at {self.root} (an interrupted load?): run ",
            Command("unload"),
            " to remove it, then load again",
        )

    # -- Instance --

    @property
    def description(self) -> str:
        return f"the instance at {self.root}"

    def open_map(self, name: str) -> int:
        return self.identity.open_map(name)

    def open_program(self, name: str) -> int:
        return self.identity.open_program(name)

    def slots_lock(self):
        return self.locks.admin()

    def hold_slot(self, slot: int):
        return self.locks.hold_slot(slot)

    def slot_in_use(self, slot: int) -> bool:
        return self.locks.slot_in_use(slot)

    def slot_holder(self, slot: int) -> int | None:
        return self.locks.slot_holder(slot)

    def keep_ring(self, slot: int, ring_fd: int) -> None:
        from ..kernel import libbpf

        self.forget_ring(slot)  # a ring that was lost and made anew replaces its pin
        self.layout.readers_dir.mkdir(mode=0o700, exist_ok=True)
        # Recorded before it is pinned: a pinned ring is always a recorded one.
        self.record.remember_reader_ring(slot, libbpf.map_info(ring_fd).id)
        libbpf.obj_pin(ring_fd, self.layout.reader_ring(slot))

    def kept_ring(self, slot: int, ring_id: int) -> int | None:
        from ..kernel import libbpf

        fd = self.identity.open_reader_ring(slot)
        if fd is not None and libbpf.map_info(fd).id != ring_id:
            os.close(fd)  # not the slot's ring any more: the caller asks `rings`
            return None
        return fd

    def forget_ring(self, slot: int) -> None:
        # Only a pin the record says is ours goes (as with unload).
        if self.record.forget_reader_ring(slot):
            self.layout.reader_ring(slot).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # only once it is empty: as load left it
            self.layout.readers_dir.rmdir()

    def still_there(self, rings_fd: int) -> bool:
        return self.identity.same_map("rings", rings_fd)

    def attached_events(self) -> list[str]:
        return self.layout.attached_events()

    def require_failed_execs(self) -> None:
        missing = [p for p in FAILED_EXEC_PROGRAMS if not self.layout.program(p).exists()]
        old = [p for p in OLD_FAILED_EXEC_PROGRAMS if self.layout.program(p).exists()]
        if old:
            raise StateError(
                (
                    f"the instance at {self.root} has the failed-exec programs of an older "
                    f"object ({', '.join(old)}); run ",
                    Command("unload"),
                    " and load again",
                )
            )
        if missing:
            raise StateError(
                (
                    f"the instance at {self.root} has no failed-exec programs "
                    f"({', '.join(missing)}): it was loaded from an older object; run ",
                    Command("unload"),
                    " and load again",
                )
            )
