"""The one exception hierarchy.  Every failure a user can cause or meet ends up
as a ProcmonError with one line of text that says what is wrong and how to fix
it; the CLI prints that line and exits with the error's code."""

from __future__ import annotations

import math

# Exit codes, documented in the README.  Every failure prints exactly one line,
# `procmon-ctl: error: ...`, on stderr (a rejected program's verifier log comes
# before it); success is 0, and so is stopping a monitor with Ctrl-C or SIGTERM.
#
#   0   success
#   1   the kernel or bpftool refused an operation (e.g. the verifier rejected a
#       program), or an unexpected system error
#   2   bad input: unknown option or command, a value of the wrong type or range
#       (a filter no process can pass: --pid -1, --comm ""), --pin-dir outside
#       bpffs or relative, an object that is not an eBPF ELF,
#       --ring-size not a power of two, unknown --events name
#   3   wrong state: not loaded / already loaded, not attached / already attached,
#       another reader holds the ring buffer, the pin dir belongs to someone else
#   4   a prerequisite is missing: bpftool or libbpf, the object file, a kernel
#       feature or mount; `doctor` found a FAIL
#   77  not root: "permission denied: run as root (sudo)" (EX_NOPERM, sysexits.h)
#   N   `run -- CMD`: CMD's status as a shell reports it (128+N: killed by signal N);
#       127: CMD not found, 126: not executable
EXIT_FAILED = 1  # the kernel or bpftool refused an operation
EXIT_USAGE = 2  # bad input on the command line
EXIT_STATE = 3  # the pin set is not in the state the command needs
EXIT_MISSING = 4  # a prerequisite (tool, object file, kernel feature) is missing
EXIT_PERMISSION = 77  # not root (EX_NOPERM in sysexits.h)


class ProcmonError(Exception):
    exit_code = EXIT_FAILED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(ProcmonError):
    exit_code = EXIT_USAGE


class StateError(ProcmonError):
    """Not loaded, already loaded, another reader active, ..."""

    exit_code = EXIT_STATE


class MissingError(ProcmonError):
    exit_code = EXIT_MISSING


class PermissionDenied(ProcmonError):
    exit_code = EXIT_PERMISSION

    def __init__(self, what: str = ""):
        detail = f"; needed for {what}" if what else ""
        super().__init__(f"permission denied: run as root (sudo){detail}")


def require_positive(option: str, value: float | None) -> None:
    """A number of seconds (--duration): finite and above 0.  nan must be caught
    here: it fails every comparison, so a deadline made of it is never reached."""
    if value is not None and not (0 < value < math.inf):
        raise UsageError(f"{option} must be greater than 0 and finite (got {value})")


# The longest --interval: time.sleep() overflows above ~292 years, and a day
# between two lines is already more than anyone watches for.
MAX_INTERVAL = 24 * 60 * 60


def require_interval(option: str, value: float) -> None:
    """Seconds between two readings: above 0, at most MAX_INTERVAL (nan and inf
    are neither)."""
    if not (0 < value <= MAX_INTERVAL):
        raise UsageError(
            f"{option} must be greater than 0 and at most {MAX_INTERVAL} seconds (got {value})"
        )


# The kernel's ceiling for kernel.pid_max on 64-bit (PID_MAX_LIMIT, 4 * 1024 * 1024):
# pids are below pid_max, so no process id is ever above this.  The ceiling, not
# this host's pid_max: pid_max can be raised while a reader runs, and since 6.14 a
# PID namespace has a pid_max of its own, which is what /proc shows inside it.
PID_MAX = 4 * 1024 * 1024 - 1
# (uid_t)-1 is no user's: setuid() and chown() take it for "leave unchanged".
UID_MAX = 2**32 - 2


def require_pid(option: str, value: int | None) -> None:
    """A process id a filter is to match: one a process can have (pid 0 is the
    kernel's idle task, which forks only while the kernel boots)."""
    if value is not None and not 1 <= value <= PID_MAX:
        raise UsageError(
            f"{option} {value} is not a process id: use 1 to {PID_MAX} "
            f"(every pid is below the kernel's PID_MAX_LIMIT, {PID_MAX + 1})"
        )


def require_uid(option: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= UID_MAX:
        raise UsageError(
            f"{option} {value} is not a user id: use 0 to {UID_MAX} "
            f"({UID_MAX + 1} is (uid_t)-1, which no user has)"
        )


class BpfError(ProcmonError):
    """A libbpf or bpftool call failed for a reason the user cannot fix by retyping."""
