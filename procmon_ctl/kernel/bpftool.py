"""Every bpftool call, through sh: loading the object, writing the settings, and
what `doctor` asks of bpftool itself.  Ids of what is pinned are read through libbpf
(instance/pin_fds.py), not here: a bpftool process per pin is slow to start.

Errors become one-line ProcmonErrors that say how to fix them."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import select
import signal
from functools import cache
from pathlib import Path

import sh

from ..errors import BpfError, Command, MissingError, PermissionDenied, StateError
from . import signals

INSTALL_HINT = "install it with `apt-get install bpftool` (or run `make`)"


@cache
def _bpftool() -> sh.Command:
    try:
        return sh.Command("bpftool")
    except sh.CommandNotFound:
        raise MissingError(f"bpftool not found in PATH: {INSTALL_HINT}") from None


def _errors(stderr: str) -> list[str]:
    return [ln.strip() for ln in stderr.splitlines() if ln.strip()]


_JSON_ERROR = re.compile(r'"error":\s*"((?:[^"\\]|\\.)*)"')


def _translate(err: sh.ErrorReturnCode, what: str) -> Exception:
    out = (err.stderr or b"").decode(errors="replace") + (err.stdout or b"").decode(
        errors="replace"
    )
    # bpftool -j reports errors as {"error": "..."} on stdout (inside each command's
    # "output" in batch mode): that is the message.
    lines = _errors(out)
    found = _JSON_ERROR.search(out)
    if found:
        with contextlib.suppress(ValueError):
            lines = ["Error: " + json.loads(f'"{found.group(1)}"')]
    text = " ".join(lines)
    if ("Operation not permitted" in text or "Permission denied" in text) and os.geteuid() != 0:
        return PermissionDenied(what)
    if "No such file or directory" in text:
        return StateError((f"{what}: nothing is pinned there: run ", Command("load"), " first"))
    if err.exit_code < 0:
        # Killed: what it printed before is no reason (a JSON document cut short).
        return BpfError(f"{what}: bpftool was killed by {_signal_name(-err.exit_code)}")
    first = next((ln for ln in lines if ln.startswith("Error")), lines[-1] if lines else "failed")
    return BpfError(f"{what}: {first.removeprefix('Error: ')}")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


PR_SET_PDEATHSIG = 1


@cache
def _prctl():
    return ctypes.CDLL(None, use_errno=True).prctl


def _die_with_us():
    """preexec for bpftool: killed when we die.  A `load` killed with SIGKILL must
    not leave a bpftool behind that goes on pinning after an `unload` cleaned up."""
    prctl, parent = _prctl(), os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # we died before prctl took effect
            os._exit(1)

    return preexec


def _to_the_end(cmd: sh.Command, *argv: str, **options) -> str:
    """Run bpftool to its end with stop signals held, and return its stdout.

    A stop raised while sh forks or runs its threads can be swallowed there
    ("Exception ignored in ... _releaseLock", issue 13.7): held, it is raised as
    bpftool returns, or while waiting for it (_wait): bpftool is then killed and
    reaped first, so nothing it would still pin appears after the caller's cleanup.

    bpftool runs in a process group of its own: Ctrl-C on the terminal, or a
    signal to our group (`timeout`, `kill -INT -PGID`), stops us, not it.  Killed
    half-way it would only fail the call, and the stop would show as that error."""
    with signals.deferred():
        proc = cmd(
            *argv,
            _env={**os.environ, "LC_ALL": "C"},
            _preexec_fn=_die_with_us(),
            _new_group=True,
            _bg=True,
            _bg_exc=False,
            **options,
        )
        try:
            _wait(proc)
        except sh.ErrorReturnCode:
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait()
            raise
    return str(proc)


# How often a wait for bpftool checks for a stop signal.
STOP_CHECK = 0.02


def _wait(proc: sh.RunningCommand) -> None:
    """proc.wait(), cut short by a stop signal: Terminated is raised within
    STOP_CHECK rather than when bpftool is done (`prog loadall` takes a second or
    more on a slow kernel), and the caller kills bpftool before it goes on."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # reaped already: done
        proc.wait()
        return
    try:
        while not select.select([pidfd], [], [], STOP_CHECK)[0]:
            signals.raise_if_stopped(in_deferred=True)
    finally:
        os.close(pidfd)
    proc.wait()


def run(*args: str, what: str, as_json: bool = True, stdin: str | None = None):
    cmd = _bpftool()
    argv = ["-j", *args] if as_json else list(args)
    try:
        # A pipe, not sh's default pseudo-terminal: the output is parsed, never shown,
        # and a pty costs a few ms per call (4.1 against 5.0 ms median here).
        out = _to_the_end(cmd, *argv, _in=stdin, _tty_out=False)
    except sh.ErrorReturnCode as err:
        raise _translate(err, what) from None
    if not as_json:
        return out
    return json.loads(out) if out.strip() else None


class LoadFailed(BpfError):
    """bpftool prog loadall failed; `log` holds what libbpf printed (verifier log)."""

    def __init__(self, summary: str, log: list[str], rejected: bool = False):
        # `rejected`: the verifier refused a program, and the CLI prints its log
        # before this line.
        super().__init__(f"{summary} (verifier log above)" if rejected else summary)
        self.summary = summary
        self.log = log

    @property
    def verifier_log(self) -> list[str]:
        """The verifier's own lines (between libbpf's BEGIN/END PROG LOAD LOG), or
        everything libbpf printed when the verifier was not the one to refuse."""
        begin = next((i for i, ln in enumerate(self.log) if "BEGIN PROG LOAD LOG" in ln), None)
        if begin is None:
            return self.log
        end = next((i for i, ln in enumerate(self.log) if "END PROG LOAD LOG" in ln), None)
        return self.log[begin + 1 : end]


def _load_failure(obj: Path, log: list[str]) -> LoadFailed:
    """One line: which program the verifier refused and its last word, when it did."""
    begin = next((ln for ln in log if "BEGIN PROG LOAD LOG" in ln), None)
    if begin is not None:
        prog = re.search(r"prog '([^']+)'", begin)
        lines = LoadFailed("", log).verifier_log
        # The verifier's verdict is the line before its "processed N insns" summary.
        done = next((i for i, ln in enumerate(lines) if ln.startswith("processed ")), len(lines))
        verdict = lines[done - 1].strip() if done > 0 else "see the log above"
        name = prog.group(1) if prog else "a program"
        return LoadFailed(
            f"the kernel verifier rejected {name} in {obj}: {verdict}", log, rejected=True
        )
    errors = _errors("\n".join(log))
    reason = next((ln for ln in errors if ln.startswith("Error")), errors[-1] if errors else "")
    return LoadFailed(f"bpftool prog loadall {obj} failed: {reason.removeprefix('Error: ')}", log)


def prog_loadall(obj: Path, progs_dir: Path, maps_dir: Path, *map_args: str) -> None:
    cmd = _bpftool()
    try:
        _to_the_end(
            cmd, "prog", "loadall", str(obj), str(progs_dir), *map_args, "pinmaps", str(maps_dir)
        )
    except sh.ErrorReturnCode as err:
        stderr = (err.stderr or b"").decode(errors="replace")
        log = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
        text = " ".join(log)
        if "Operation not permitted" in text and os.geteuid() != 0:
            raise PermissionDenied("loading BPF programs") from None
        raise _load_failure(obj, log) from None


def map_update(pin: Path, key: bytes, value: bytes) -> None:
    run(
        "map",
        "update",
        "pinned",
        str(pin),
        "key",
        *(f"0x{b:02x}" for b in key),
        "value",
        *(f"0x{b:02x}" for b in value),
        what=f"writing {pin}",
        as_json=False,
    )


def version() -> str:
    """ "v7.1.0" from `bpftool version` (older ones print the path they were run as
    first, so the last word of the first line)."""
    first = str(run("version", what="bpftool version", as_json=False)).splitlines()[0]
    return first.split()[-1]


def can_attach_tracing() -> bool:
    """Whether this bpftool can attach a tracepoint program itself (`autoattach`,
    bpftool 7.2+).  Read from its help, not its version: distributions backport."""
    help_text = run("prog", "help", what="bpftool prog help", as_json=False)
    return bool(re.search(r"\bautoattach\b", str(help_text)))
