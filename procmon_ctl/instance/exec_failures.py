"""`events --failed`: execs that failed, from the execve/execveat syscall tracepoints.

`load` pins six programs for them (pins.FAILED_EXEC_PROGRAMS) that `attach` never
attaches: a syscall tracepoint, once enabled, makes every syscall of every process
take the slow path (TIF_SYSCALL_TRACEPOINT).  So only a reader that asks for them
attaches them, by perf event and link fds of its own, never pinned: they are
detached when it ends, however it ends (even SIGKILL closes its fds).  Four are on
the syscalls' entries and exits; two forget the execs in progress that end without
their syscall's exit (sched_process_exec, sched_process_exit), and cost an exit a
map delete only while such a reader runs.  Without --failed they cost nothing, and
the programs put exec_failed records only in the rings of --failed readers."""

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
    "handle_execve_enter": "sys_enter_execve",
    "handle_execveat_enter": "sys_enter_execveat",
    "handle_execve_exit": "sys_exit_execve",
    "handle_execveat_exit": "sys_exit_execveat",
}
# The others are tp_btf programs: attached as raw tracepoints, by a link fd.
BTF_TRACEPOINTS = {
    "forget_on_exec": "sched_process_exec",
    "forget_on_exit": "sched_process_exit",
}
ATTEMPTS_MAP = "exec_attempts"  # thread id (u32) -> struct exec_attempt
ATTEMPT_KEY_SIZE = 4


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
    all six or none (a failure closes those already attached), detached on leaving."""
    check(instance)
    require_root("attaching the failed-exec programs")
    ensure_tracefs()
    ids = {prog: tracepoint_id(name) for prog, name in TRACEPOINTS.items()}
    fds: list[int] = []
    try:
        _forget_attempts(instance)
        # Those that forget entries first: no entry is made before they run.
        for prog in FAILED_EXEC_PROGRAMS:
            prog_fd = instance.open_program(prog)
            try:
                if prog in BTF_TRACEPOINTS:
                    fds.append(libbpf.raw_tracepoint_open(prog_fd))
                else:
                    fds.append(libbpf.perf_tracepoint_attach(prog_fd, ids[prog]))
            except libbpf.LibbpfError as err:
                if err.errno == errno.EEXIST:
                    refuse_second_reader(None)  # one that started as this one did
                if libbpf.is_permission(err):
                    raise PermissionDenied(f"attaching {prog}") from None
                where = BTF_TRACEPOINTS.get(prog) or f"syscalls/{TRACEPOINTS[prog]}"
                raise BpfError(f"attaching {prog} to tracepoint {where} failed: {err}") from None
            finally:
                os.close(prog_fd)  # the perf event or link holds the program
        yield
    finally:
        # Exits first: an exit program that runs finds only entries its entry made.
        for fd in reversed(fds):
            os.close(fd)


def _forget_attempts(instance: Instance) -> None:
    """Empty exec_attempts before the entry programs run: an entry left by an earlier
    reader (detached between a syscall's entry and exit) would otherwise be read at
    the exit of a later exec of the same thread that entered unseen."""
    fd = instance.open_map(ATTEMPTS_MAP)
    try:
        for key in libbpf.map_keys(fd, ATTEMPT_KEY_SIZE):
            libbpf.map_delete(fd, key)
    finally:
        os.close(fd)
