"""`events --failed`: execs that failed, from the execve/execveat syscall tracepoints.

`load` pins two programs for them (pins.FAILED_EXEC_PROGRAMS), on the syscalls'
exits, that `attach` never attaches: a syscall tracepoint, once
enabled, makes every syscall of every process take the slow path
(TIF_SYSCALL_TRACEPOINT).  So only a reader that asks for them attaches them, by
perf event fds of its own, never pinned: they are detached when it ends, however it
ends (even SIGKILL closes its fds).  Without --failed they cost nothing, and the
programs put exec_failed records only in the rings of --failed readers."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import BpfError, MissingError, PermissionDenied, Setting, StateError
from ..kernel import libbpf
from ..kernel.system import TRACEFS_ROOT, ensure_tracefs, require_root
from .base import Instance
from .pins import FAILED_EXEC_PROGRAMS

# Each syscall program's tracepoint, in the syscalls group.
TRACEPOINTS = {
    "handle_execve_exit": "sys_exit_execve",
    "handle_execveat_exit": "sys_exit_execveat",
}


def check(instance: Instance) -> None:
    """Refuse --failed where it cannot work, before any output."""
    instance.require_failed_execs()


def tracepoint_id(name: str) -> int:
    path = TRACEFS_ROOT / "events" / "syscalls" / name / "id"
    try:
        return int(path.read_text())
    except FileNotFoundError:
        raise MissingError(
            (
                f"{path} not found: this kernel has no syscall tracepoints "
                "(CONFIG_FTRACE_SYSCALLS), which ",
                Setting("failed"),
                " needs",
            )
        ) from None
    except (OSError, ValueError) as err:
        raise MissingError(f"cannot read the id of tracepoint syscalls/{name}: {err}") from None


def refuse_second_reader(pid: int | None) -> None:
    """The kernel attaches a program to a syscall tracepoint once (a second perf
    event for it is refused, EEXIST): one --failed reader at a time."""
    who = f"pid {pid}" if pid else "another reader"
    raise StateError(
        (
            f"{who} already reads failed execs from this instance, and the kernel attaches "
            "their programs once: stop it, or read without ",
            Setting("failed"),
        )
    )


@contextmanager
def attached(instance: Instance) -> Iterator[None]:
    """The failed-exec programs of a pinned instance attached for the with block:
    both or none (a failure closes those already attached), detached on leaving."""
    check(instance)
    require_root("attaching the failed-exec programs")
    ensure_tracefs()
    ids = {prog: tracepoint_id(name) for prog, name in TRACEPOINTS.items()}
    fds: list[int] = []
    try:
        for prog in FAILED_EXEC_PROGRAMS:
            prog_fd = instance.open_program(prog)
            try:
                fds.append(libbpf.perf_tracepoint_attach(prog_fd, ids[prog]))
            except libbpf.LibbpfError as err:
                if err.errno == errno.EEXIST:
                    refuse_second_reader(None)  # one that started as this one did
                if libbpf.is_permission(err):
                    raise PermissionDenied(f"attaching {prog}") from None
                raise BpfError(
                    f"attaching {prog} to tracepoint syscalls/{TRACEPOINTS[prog]} failed: {err}"
                ) from None
            finally:
                os.close(prog_fd)  # the perf event or link holds the program
        yield
    finally:
        for fd in reversed(fds):
            os.close(fd)
