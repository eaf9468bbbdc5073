"""Instances a command makes for itself (`run`, `serve --attach`).

The object is loaded with libbpf in the command's own process (PrivateInstance):
its programs, maps and links are fds of that process only and nothing is pinned,
so when the command ends, however it ends (SIGKILL, the OOM killer, a closed
terminal), the kernel detaches and frees everything."""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

from ..errors import BpfError, Command, Setting, UsageError
from ..kernel import libbpf
from ..kernel.abi import FollowLimits, Settings
from ..kernel.system import pid_namespace
from .base import Instance
from .pins import FAILED_EXEC_PROGRAMS, PROGRAMS
from .readers import HeldSlot, ReaderSlots, ReaderWants
from .settings import DEFAULT_ARGV_BYTES, default_wakeup_bytes, settings_value
from .startup import DEFAULT_RING_SIZE, check_start

_PID = struct.Struct("I")  # the `followed` map's key: a tgid


class PrivateInstance(Instance):
    """The object loaded, configured and attached by this process, pinned nowhere.

    With `follow`, the programs write records only for the processes in the
    `followed` map (and add their children to it): `run -- CMD`'s tree."""

    def __init__(
        self,
        obj: Path,
        events: list[str],
        ring_size: int | None,
        follow: bool = False,
        follow_limit: int = FollowLimits.FOLLOWED_MAX_PROCESSES.value,
        argv_bytes: int = DEFAULT_ARGV_BYTES,
        reader: ReaderWants | None = None,
    ):
        """`reader`: take a reader slot for it at once, before anything is attached,
        so that no record waits for the reader to start (`run` spawns CMD first)."""
        check_start(ring_size, argv_bytes)
        self.argv_bytes = argv_bytes
        self.follow_mode = follow
        self.events = list(events)
        self.ring_size = ring_size or DEFAULT_RING_SIZE
        self.wakeup_bytes = default_wakeup_bytes(self.ring_size)
        self._links: list[int] = []
        self._held: set[int] = set()  # the reader slots in use
        self._reserved = ExitStack()
        self.reserved: HeldSlot | None = None
        self._object: libbpf.BpfObject | None = None
        stage = "opening"
        try:
            self._object = libbpf.BpfObject(obj)
            if follow:
                self._object.set_max_entries("followed", follow_limit)
            # Only `events --failed` (on a pinned instance) attaches these: a private
            # instance need not pay for their verification.
            for program in FAILED_EXEC_PROGRAMS:
                self._object.skip_program(program)
            for event, program in PROGRAMS.items():
                if event not in events:
                    self._object.skip_program(program)
            stage = "loading"
            self._object.load()
            # Before the first link: a program that ran with follow still 0 would
            # put every process of the host in the ring.
            self._write_settings()
            if reader is not None:
                self.reserved = self._reserved.enter_context(ReaderSlots(self).taken(reader))
            for event in events:
                stage = f"attaching the {event} program of"
                self._links.append(
                    libbpf.raw_tracepoint_open(self._object.program_fd(PROGRAMS[event]))
                )
        except libbpf.LibbpfError as err:
            self.close()
            why = ("; ", Command("doctor"), " says why") if stage == "loading" else ()
            raise BpfError((f"{stage} {obj} failed: {os.strerror(err.errno)}", *why)) from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PrivateInstance:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Detach (links first) and free everything."""
        while self._links:
            os.close(self._links.pop())
        self._reserved.close()
        self.reserved = None
        if self._object is not None:
            self._object.close()
            self._object = None

    def map_fd(self, name: str) -> int:
        return self._object.map_fd(name)

    def _write_settings(self) -> None:
        """Before any reader takes a slot (the masks are readers.py's)."""
        value = settings_value(self.ring_size, self.follow_mode, self.argv_bytes)
        libbpf.map_update(self.map_fd("settings"), bytes(4), value)

    def _set_spawner(self, spawner: tuple[int, int] | None) -> None:
        fd = self.map_fd("settings")
        value = Settings.from_buffer_copy(libbpf.map_lookup(fd, bytes(4), ctypes.sizeof(Settings)))
        value.spawner_pidns, value.spawner_tgid = spawner or (0, 0)
        libbpf.map_update(fd, bytes(4), bytes(value))

    @contextmanager
    def spawning(self) -> Iterator[None]:
        """Follow mode, before any reader: for the with block, a process this
        process forks starts the followed tree (CMD).  The kernel knows this
        process by its pid in its own PID namespace and that namespace's inode:
        in a container getpid() is not the host's pid, which `followed` holds."""
        self._set_spawner((pid_namespace(), os.getpid()))
        try:
            yield
        finally:
            self._set_spawner(None)

    def follow(self, pid: int) -> None:
        """Put a process in the followed tree: its children join it as they fork."""
        libbpf.map_update(self.map_fd("followed"), _PID.pack(pid), b"\x01")

    def unfollow(self, pid: int) -> None:
        libbpf.map_delete(self.map_fd("followed"), _PID.pack(pid))

    def followed(self) -> list[int]:
        """The processes of the tree that have not exited."""
        return [_PID.unpack(k)[0] for k in libbpf.map_keys(self.map_fd("followed"), _PID.size)]

    # -- Instance --

    @property
    def description(self) -> str:
        return "the instance"

    def open_map(self, name: str) -> int:
        return os.dup(self.map_fd(name))

    def open_program(self, name: str) -> int:
        return os.dup(self._object.program_fd(name))

    # Nobody else can reach its maps: no locks, and its slots are this process's.
    def slots_lock(self):
        return nullcontext()

    def hold_slot(self, slot: int):
        return None if slot in self._held else _PrivateHold(self._held, slot)

    def slot_in_use(self, slot: int) -> bool:
        return slot in self._held

    def slot_holder(self, slot: int) -> int | None:
        return os.getpid() if slot in self._held else None

    # Its one reader is this process's, never a named one: no ring to keep.
    def keep_ring(self, slot: int, ring_fd: int) -> None:
        pass

    def kept_ring(self, slot: int, ring_id: int) -> int | None:
        return None

    def forget_ring(self, slot: int) -> None:
        pass

    def still_there(self, rings_fd: int) -> bool:
        return True  # its fds keep it loaded for as long as this process lives

    def attached_events(self) -> list[str]:
        return list(self.events)

    def require_failed_execs(self) -> None:
        raise UsageError(
            (
                Setting("failed"),
                " works on a pinned instance only (",
                Command("load"),
                ", then ",
                Command("events", ("failed",)),
                "), not on a private one",
            )
        )


class _PrivateHold:
    """A private instance's reader slot, in use until closed."""

    def __init__(self, held: set[int], slot: int):
        self._held, self._slot = held, slot
        held.add(slot)

    def close(self) -> None:
        self._held.discard(self._slot)
