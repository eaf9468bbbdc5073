"""The one exception hierarchy.  Every failure a user can cause or meet ends up
as a ProcmonError that says what is wrong and how to fix it; the CLI words it as
one line and exits with the error's code.

What only the CLI can spell travels as data in the error's parts, beside the
text: the setting at fault by its domain name (Setting("ring_size"), which the CLI
writes as its option), the command that would fix it (Command("unload"), which
the CLI writes for the instance in use, with its --pin-dir) and a value as the
user gave it (Given, which the CLI quotes).  Layers below the CLI never spell an
option or a command line."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Exit codes, documented in the README.  Every failure prints exactly one line,
# `procmon-ctl: error: ...`, on stderr (a rejected program's verifier log comes
# before it); success is 0, and so is stopping a monitor with Ctrl-C or SIGTERM.
#
#   0   success, also where what was asked already held (load, attach, detach)
#   1   the kernel or bpftool refused an operation (e.g. the verifier rejected a
#       program), or an unexpected system error
#   2   bad input: unknown option or command, a value of the wrong type or range
#       (a filter no process can pass: --pid -1, --comm ""), --pin-dir outside
#       bpffs or relative, an object that is not an eBPF ELF,
#       --ring-size not a power of two, unknown --events name, an unknown
#       `run --user`, `run --` with nothing after it
#   3   wrong state: nothing loaded there (but for unload and detach, which exit 0
#       there, already in the state asked for), loaded with another object, ring size
#       or argv bound than `load` asks for, a named reader already reading, an
#       --output file another reader is writing, readers active (unload), the pin
#       dir belongs to someone else, its lock held by a stopped process
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


@dataclass(frozen=True)
class Setting:
    """A setting the user chose, by its domain name: "ring_size", "pin_dir"."""

    name: str


@dataclass(frozen=True)
class Command:
    """A procmon-ctl command to run, by its name and the (flag) settings it is run
    with: Command("unload", ("force",)).  A remedy: it acts on the instance in use.
    In backticks, unless it stands as a line of its own (backticks=False)."""

    name: str
    settings: tuple[str, ...] = ()
    backticks: bool = True


@dataclass(frozen=True)
class Given:
    """A value as the user gave it (a path, a name): the CLI quotes it, bytes that
    are not UTF-8 as \\xNN; with as_is_if_printable, only when it is not printable."""

    text: str
    as_is_if_printable: bool = False


Part = str | Setting | Command | Given
# A message for a person, as its parts: text, and what the CLI spells.
Words = tuple[Part, ...]


def plain(words: Words) -> str:
    """The words with no CLI to spell them: a setting by its domain name, a command
    by its words.  For logs and tests; what a user reads is worded by the CLI."""
    return "".join(_plain(part) for part in words)


def _plain(part: Part) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Setting):
        return part.name
    if isinstance(part, Command):
        return "`" + " ".join((part.name, *part.settings)) + "`"
    return part.text if part.text.isprintable() else repr(part.text)


class ProcmonError(Exception):
    """message: the text, or its parts (Words) when it names a setting, a command
    or a value the user gave."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str | Words, exit_code: int | None = None):
        self.words: Words = (message,) if isinstance(message, str) else tuple(message)
        super().__init__(plain(self.words))
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        """The words with no CLI to spell them (plain())."""
        return str(self.args[0])

    @property
    def setting(self) -> str | None:
        """The setting at fault, by its domain name, when the error names one."""
        return next((p.name for p in self.words if isinstance(p, Setting)), None)

    @property
    def remedies(self) -> tuple[Command, ...]:
        """The commands the error says to run."""
        return tuple(p for p in self.words if isinstance(p, Command))


class UsageError(ProcmonError):
    exit_code = EXIT_USAGE


class StateError(ProcmonError):
    """Not loaded, already loaded, a named reader already reading, ..."""

    exit_code = EXIT_STATE


class MissingError(ProcmonError):
    exit_code = EXIT_MISSING


class PermissionDenied(ProcmonError):
    exit_code = EXIT_PERMISSION

    def __init__(self, what: str = ""):
        detail = f"; needed for {what}" if what else ""
        super().__init__(f"permission denied: run as root (sudo){detail}")


def require_positive(setting: str, value: float | None) -> None:
    """A number of seconds (the duration): finite and above 0.  nan must be caught
    here: it fails every comparison, so a deadline made of it is never reached."""
    if value is not None and not (0 < value < math.inf):
        raise UsageError((Setting(setting), f" must be greater than 0 and finite (got {value})"))


# The longest --interval: time.sleep() overflows above ~292 years, and a day
# between two lines is already more than anyone watches for.
MAX_INTERVAL = 24 * 60 * 60


def require_interval(setting: str, value: float) -> None:
    """Seconds between two readings: above 0, at most MAX_INTERVAL (nan and inf
    are neither)."""
    if not (0 < value <= MAX_INTERVAL):
        raise UsageError(
            (
                Setting(setting),
                f" must be greater than 0 and at most {MAX_INTERVAL} seconds (got {value})",
            )
        )


# The kernel's ceiling for kernel.pid_max on 64-bit (PID_MAX_LIMIT, 4 * 1024 * 1024):
# pids are below pid_max, so no process id is ever above this.  The ceiling, not
# this host's pid_max: pid_max can be raised while a reader runs, and since 6.14 a
# PID namespace has a pid_max of its own, which is what /proc shows inside it.
PID_MAX = 4 * 1024 * 1024 - 1
# (uid_t)-1 is no user's: setuid() and chown() take it for "leave unchanged".
UID_MAX = 2**32 - 2


def require_pid(setting: str, value: int | None) -> None:
    """A process id a filter is to match: one a process can have (pid 0 is the
    kernel's idle task, which forks only while the kernel boots)."""
    if value is not None and not 1 <= value <= PID_MAX:
        raise UsageError(
            (
                Setting(setting),
                f" {value} is not a process id: use 1 to {PID_MAX} "
                f"(every pid is below the kernel's PID_MAX_LIMIT, {PID_MAX + 1})",
            )
        )


def require_uid(setting: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= UID_MAX:
        raise UsageError(
            (
                Setting(setting),
                f" {value} is not a user id: use 0 to {UID_MAX} "
                f"({UID_MAX + 1} is (uid_t)-1, which no user has)",
            )
        )


class BpfError(ProcmonError):
    """A libbpf or bpftool call failed for a reason the user cannot fix by retyping."""
