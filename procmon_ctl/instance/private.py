"""Instances a command makes for itself (`run`, `serve --attach`).

The object is loaded with libbpf in the command's own process (PrivateInstance):
its programs, maps and links are fds of that process only and nothing is pinned,
so when the command ends, however it ends (SIGKILL, the OOM killer, a closed
terminal), the kernel detaches and frees everything."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ..errors import BpfError, Command, Setting, UsageError
from ..kernel import libbpf
from ..kernel.abi import FollowLimits
from ..kernel.system import pid_namespace
from .base import Instance
from .pins import FAILED_EXEC_PROGRAMS, PROGRAMS
from .settings import DEFAULT_ARGV_BYTES, default_wakeup_bytes, settings_value
from .startup import DEFAULT_RING_SIZE, check_start

_PID = struct.Struct("I")  # the `followed` map's key: a tgid


class PrivateInstance(Instance):
    """The object loaded, configured and attached by this process, pinned nowhere.

    With `follow`, the programs write records only for the processes in the
    `followed` map (and add their children to it): `run -- CMD`'s tree."""

    # Its ring was made with it: every record in it is from this process's time.
    has_backlog = False

    def __init__(
        self,
        obj: Path,
        events: list[str],
        ring_size: int | None,
        follow: bool = False,
        follow_limit: int = FollowLimits.FOLLOWED_MAX_PROCESSES.value,
        argv_bytes: int = DEFAULT_ARGV_BYTES,
    ):
        check_start(ring_size, argv_bytes)
        self.argv_bytes = argv_bytes
        self.follow_mode = follow
        self.events = list(events)
        self.ring_size = ring_size or DEFAULT_RING_SIZE
        self.wakeup_bytes = default_wakeup_bytes(self.ring_size)
        self._links: list[int] = []
        self._object: libbpf.BpfObject | None = None
        stage = "opening"
        try:
            self._object = libbpf.BpfObject(obj)
            self._object.set_max_entries("events", self.ring_size)
            if follow:
                self._object.set_max_entries("followed", follow_limit)
            # Only `events --failed` (on a pinned instance) attaches these: a private
            # instance need not pay for their verification.
            for program in FAILED_EXEC_PROGRAMS:
                self._object.skip_program(program)
            stage = "loading"
            self._object.load()
            # Before the first link: a program that ran with follow still 0 would
            # put every process of the host in the ring.
            self.write_settings(0, self.wakeup_bytes)
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
        if self._object is not None:
            self._object.close()
            self._object = None

    def map_fd(self, name: str) -> int:
        return self._object.map_fd(name)

    def write_settings(
        self, threads_until_ns: int, wakeup_bytes: int, spawner: tuple[int, int] | None = None
    ) -> None:
        value = settings_value(
            threads_until_ns, wakeup_bytes, self.follow_mode, self.argv_bytes, spawner=spawner
        )
        libbpf.map_update(self.map_fd("settings"), bytes(4), value)

    @contextmanager
    def spawning(self) -> Iterator[None]:
        """Follow mode, before any reader: for the with block, a process this
        process forks starts the followed tree (CMD).  The kernel knows this
        process by its pid in its own PID namespace and that namespace's inode:
        in a container getpid() is not the host's pid, which `followed` holds."""
        self.write_settings(0, self.wakeup_bytes, (pid_namespace(), os.getpid()))
        try:
            yield
        finally:
            self.write_settings(0, self.wakeup_bytes)

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

    def reader_lock(self):
        return nullcontext()  # nobody else can reach its ring

    def still_there(self, ring_fd: int) -> bool:
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
