"""Stop signals (SIGINT, SIGTERM, SIGHUP) for the whole program: how a command is
stopped, and why a stop is never lost.

The handler records the signal and raises Terminated where the main thread is, so
a sleep, a poll or a blocked write ends at once and cleanup runs as the stack
unwinds.  A raise can land where nobody passes it on (an at-fork callback inside
`sh`, a finaliser: "Exception ignored in ..."), so it is not trusted alone:

- the first stop signal also arms a one-shot timer (SIGALRM); when it fires and
  no Terminated is unwinding the stack, Terminated is raised again (and again,
  every RECHECK, until the program ends);
- loops and the bpftool wrapper call raise_if_stopped() at their checkpoints, so a
  swallowed raise comes back at once rather than at the timer;
- deferred() holds a stop back while a block that must not be cut in half runs
  (write a batch, flush, commit it to the ring); it is raised as the block ends,
  or by the timer if the block is still running HELD_GRACE after the signal.

job_stops_held() holds back the other kind of stop, job control's (Ctrl-Z), where
a stopped process would keep others waiting.

Nothing here raises while a Terminated is already being handled (an `except` or
`finally` below it, a context manager's exit): cleanup that is running is let
finish.  Kept to the standard library: stream/follow.py, the hot path, uses deferred().
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# A held stop is raised anyway this long after the signal: what the stop then
# still runs (cleanup, interpreter exit) must fit in the second a stop may take.
HELD_GRACE = 0.5
# After that, how often a stop that is neither raised nor unwinding is raised again.
RECHECK = 0.2


class Terminated(BaseException):
    """A stop signal: how a monitor is stopped.  Cleanup runs as it unwinds.

    A BaseException, as KeyboardInterrupt is: `except Exception` in a library
    must not catch a stop."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    signum: int | None = None  # the first stop signal received, if any
    received_at = 0.0
    raising = False  # False while starting up and once the program is ending
    held = 0  # depth of deferred() blocks
    previous: dict[int, Any] | None = None  # handlers before install(), to restore
    previous_unraisable: Any = None
    mask: set[int] | None = None  # the signal mask before stand_down() blocked ours


_state = _State()


def caused_by_stop(exc: BaseException | None) -> bool:
    """Whether exc is a Terminated or was raised while one was handled: a stop that
    landed in code which wraps what it catches (Python turns an exception inside
    __set_name__, e.g. during an import, into a RuntimeError)."""
    for _ in range(100):  # a __context__ chain is short; never loop on a strange one
        if exc is None:
            return False
        if isinstance(exc, Terminated):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _unwinding() -> bool:
    """Whether a Terminated is being handled where the main thread is (an except
    or finally block, a context manager's __exit__, or code they call)."""
    return caused_by_stop(sys.exc_info()[1])


def _on_stop(signum: int, frame: FrameType | None) -> None:
    if _state.signum is None:
        _state.signum, _state.received_at = signum, time.monotonic()
        if _state.raising:
            signal.setitimer(signal.ITIMER_REAL, HELD_GRACE)
    if _state.raising and not _state.held and not _unwinding():
        raise Terminated(signum)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    if _state.signum is None or not _state.raising:
        return
    # Armed again first: this raise can be swallowed too.
    signal.setitimer(signal.ITIMER_REAL, RECHECK)
    if not _unwinding():
        raise Terminated(_state.signum)


def _on_unraisable(hook: Any) -> None:
    # A stop raised into a finaliser or an at-fork callback: not an error to print.
    # The timer or the next checkpoint raises it again where it can propagate.
    if isinstance(hook.exc_value, Terminated):
        return
    (_state.previous_unraisable or sys.__unraisablehook__)(hook)


def install() -> bool:
    """Handle the stop signals from now on; False if they already are.

    Until arm(), a stop is only recorded: while the program starts (importing
    Typer, pydantic, sh) a raise would escape as a traceback.

    The stop signals come blocked when the program is started through its
    command (env --block-signal in its first line, see the Makefile): one sent
    while the interpreter started waited in the kernel, and is received here,
    once there is a handler for it.  Before, Python's own SIGINT handler would
    have raised KeyboardInterrupt in the middle of its start ("Fatal Python
    error"), and SIGTERM or SIGHUP would have killed it."""
    if _state.previous is not None:
        return False
    _state.previous = {s: signal.getsignal(s) for s in (*STOP_SIGNALS, signal.SIGALRM)}
    _state.previous_unraisable = sys.unraisablehook
    sys.unraisablehook = _on_unraisable
    for s in STOP_SIGNALS:
        signal.signal(s, _on_stop)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return True


def arm() -> None:
    """Stop signals raise Terminated from now on; one that came while starting
    up is raised here."""
    _state.raising = True
    if _state.signum is not None:
        signal.setitimer(
            signal.ITIMER_REAL, max(0.001, HELD_GRACE - (time.monotonic() - _state.received_at))
        )
    raise_if_stopped()


def stand_down() -> None:
    """The program is ending: a stop from now on is held back by the kernel (the
    signals are blocked).  Raised into the exit path it would print a traceback;
    and the interpreter puts the default actions back as it finalises, so one that
    came then would kill the program with the signal instead of its exit code."""
    _state.raising = False
    signal.setitimer(signal.ITIMER_REAL, 0)
    if _state.mask is None:
        _state.mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def uninstall() -> None:
    """Put back what install() replaced and forget any stop (for a caller that
    runs the CLI in its own process, as the tests do)."""
    stand_down()
    # Unblocked while the handlers still only record: what came meanwhile is dropped.
    signal.pthread_sigmask(signal.SIG_SETMASK, _state.mask)
    _state.mask = None
    if _state.previous is not None:
        for s, handler in _state.previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = _state.previous_unraisable or sys.__unraisablehook__
    _state.previous = _state.previous_unraisable = None
    _state.signum, _state.held = None, 0


def stopped() -> int | None:
    """The stop signal received, if one was."""
    return _state.signum


def raise_if_stopped(*, in_deferred: bool = False) -> None:
    """A checkpoint: raise Terminated if a stop signal came and no Terminated is on
    its way up already (its raise was swallowed).  Inside deferred() the block's
    end raises it instead, unless `in_deferred`: a point of the block where it may
    be cut (waiting for a process it then kills and reaps)."""
    if (
        _state.signum is not None
        and _state.raising
        and (in_deferred or not _state.held)
        and not _unwinding()
    ):
        raise Terminated(_state.signum)


class _Deferred:
    __slots__ = ()

    def __enter__(self) -> None:
        _state.held += 1

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        _state.held -= 1
        if exc_type is None:
            raise_if_stopped()


_DEFERRED = _Deferred()


def deferred() -> _Deferred:
    """`with deferred():` a stop signal that arrives inside the block is held and
    raised as Terminated when the block ends, so the block is never cut in half;
    if the block still runs HELD_GRACE after the signal, it is raised anyway.
    Blocks nest (the outermost one's end raises).  A stop that came before the
    block is raised at its end too: every block is a checkpoint."""
    return _DEFERRED


# Job control's stops: Ctrl-Z (SIGTSTP), and a background job's use of its terminal.
JOB_STOP_SIGNALS = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})


@contextmanager
def job_stops_held() -> Iterator[None]:
    """`with job_stops_held():` a job-control stop (Ctrl-Z) that arrives inside the
    block waits in the kernel and stops the process as the block ends: for a lock
    other processes wait for, which a stopped shell job would keep from them until
    it is resumed.  This thread's mask; SIGSTOP cannot be held."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, JOB_STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, JOB_STOP_SIGNALS - before)
