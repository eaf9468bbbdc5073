"""Instance: what commands and readers ask of an instance, whichever kind it is.

Two kinds: PinnedInstance (pinned.py), which `load` pinned in bpffs and every
process on the host may share, and PrivateInstance (private.py), the fds of the
one process that loaded it (`run`, `serve --attach`).  Callers hold an Instance
and never ask which kind it is.

An abstract base class rather than a typing.Protocol: each kind says that it is
one, a kind missing a method fails when it is made rather than halfway through a
reader, and what both do alike (reading the counters) is written here once, on
top of open_map()."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, Protocol


class SlotHold(Protocol):
    """A reader slot held by this process (Instance.hold_slot)."""

    def close(self) -> None:
        """Let the slot go."""


class Instance(ABC):
    # Whether the programs write records only for one followed process tree
    # (`run -- CMD`): a reader keeps the setting when it rewrites the settings map.
    follow_mode: bool
    # A reader slot the instance took for its one reader when it was made (a private
    # instance's: `run` spawns CMD before its reader opens); None: readers take one.
    reserved: Any = None  # a readers.HeldSlot (which knows this class: not named here)

    @property
    @abstractmethod
    def description(self) -> str:
        """The instance, in a message ("the instance at /sys/fs/bpf/procmon")."""

    @abstractmethod
    def open_map(self, name: str) -> int:
        """A new fd of the map `name` (the caller closes it); a pinned map only once
        checked to be the one procmon-ctl pinned (StateError if not)."""

    @abstractmethod
    def open_program(self, name: str) -> int:
        """A new fd of the program `name` (the caller closes it), as open_map()."""

    @abstractmethod
    def slots_lock(self) -> AbstractContextManager[None]:
        """Held while reader slots are taken or freed (readers.py)."""

    @abstractmethod
    def hold_slot(self, slot: int) -> SlotHold | None:
        """Reader slot `slot` held by this process until the hold is closed or the
        process ends, however it ends; None when another process holds it."""

    @abstractmethod
    def slot_in_use(self, slot: int) -> bool:
        """Whether some process holds reader slot `slot`."""

    @abstractmethod
    def slot_holder(self, slot: int) -> int | None:
        """The pid of the process holding reader slot `slot`, if known."""

    @abstractmethod
    def keep_ring(self, slot: int, ring_fd: int) -> None:
        """Keep the ring of named reader slot `slot` where kept_ring() finds it for
        the next reader of that name, which may run with CAP_BPF alone (a service):
        getting it back by its id from `rings` needs CAP_SYS_ADMIN."""

    @abstractmethod
    def kept_ring(self, slot: int, ring_id: int) -> int | None:
        """A new fd of slot `slot`'s kept ring if it is the ring `ring_id` (the one
        in `rings`); None when none is kept."""

    @abstractmethod
    def forget_ring(self, slot: int) -> None:
        """Slot `slot` is freed: its kept ring, if any, goes."""

    @abstractmethod
    def still_there(self, rings_fd: int) -> bool:
        """Whether `rings_fd` (of the `rings` map a reader started with) is still
        this instance's: False once a pinned instance was unloaded (or unloaded and
        loaded again)."""

    @abstractmethod
    def attached_events(self) -> list[str]:
        """The events (pins.PROGRAMS' names) whose programs are attached now."""

    @abstractmethod
    def require_failed_execs(self) -> None:
        """Refuse `events --failed` unless this instance can attach the failed-exec
        programs (exec_failures.py)."""

    def counters(self) -> dict[str, int]:
        """Every counter the programs keep, by name (counters.py)."""
        from .counters import read_counters

        return read_counters(self.open_map)
