"""`procmon-ctl run`: an instance of its own that lives exactly as long as the command.

The instance is a PrivateInstance: loaded and attached by this process, pinned
nowhere, so the kernel removes it when this process ends, however it ends.

With `-- CMD` the kernel follows CMD's process tree (follow mode): only its
processes produce records, so the host's other processes cost one map lookup and
no ring space, and the stream ends from CMD's own exit, whatever else runs."""

from __future__ import annotations

import errno
import os
import resource
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from ..errors import ProcmonError
from ..instance.pins import RECORD_EVENTS
from ..instance.private import PrivateInstance
from ..instance.readers import ReaderWants
from ..kernel.system import HOST_PID_NAMESPACE, pid_namespace, proc_has_host_pids
from ..process.decode import text
from ..process.procfs import read_stat
from ..process.run_summary import Costly, TreeSummary
from ..process.tree import ProcessTree
from ..process.users import RunAs, become, environment_for
from ..stream.follow import StreamOptions, View, follow
from ..stream.sink import Sink, UntilItFails
from ..views import render
from ..views.schema import RunCost, RunCostly, RunExit, RunLifetime, RunProcess, RunSummary
from ..views.tree import tree_model

# Signals `run` passes on to CMD, as `timeout` does; it then waits for CMD.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# si_code of a signal the kernel sent itself: the terminal's Ctrl-C or hangup,
# which went to the whole foreground process group: run's, and CMD's unless CMD
# left it (setsid, setpgid).
SI_KERNEL = 0x80
# The second of these ends run's wait: Ctrl-C twice gives the terminal back even
# when CMD ignores or handles the first.
STOPS_WAITING = signal.SIGINT
# After that second one, how long run still waits for CMD, which got it too and may
# end of it (a second Ctrl-C often means "now"): its status, if it does.
LAST_WAIT = 0.5
# Python ignores these; CMD gets them at their defaults, as from a shell.
RESET_IN_CHILD = (signal.SIGPIPE, signal.SIGXFSZ)


def run_monitor(
    obj: Path,
    events: list[str],
    ring_size: int | None,
    opts: StreamOptions,
    view: View,
    out: TextIO,
) -> int:
    # The reader's slot before the first link, as for CMD: what happens once run is
    # attached is in its ring, however long the reader takes to start reading.
    reader = ReaderWants(threads=opts.threads)
    with PrivateInstance(obj, events, ring_size, reader=reader) as instance:
        return follow(instance, opts, view, out)


@contextmanager
def held_signals() -> Iterator[set[int]]:
    """SIGINT, SIGTERM and SIGHUP held back for run to forward (sigtimedwait) rather
    than handled; yields the mask CMD must start with.  On leaving, any still
    pending are dropped: CMD has ended, and what they asked for is done."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        yield old
    finally:
        while signal.sigtimedwait(FORWARDED, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Command:
    """CMD, started inside the followed tree (as `user`, if given), and how it ended."""

    def __init__(
        self, argv: list[str], instance: PrivateInstance, mask: set[int], user: RunAs | None
    ):
        early = signal.sigtimedwait(FORWARDED, 0)
        if early is not None:
            # Ctrl-C (or a stop) while the instance was loading: do not start CMD.
            name = signal.Signals(early.si_signo).name
            raise ProcmonError(
                f"{name} before {render.given(argv[0])} started: not running it",
                128 + early.si_signo,
            )
        # For the instant of the spawn this process is the tree's spawner, so the
        # kernel puts CMD in the tree as it forks: CMD cannot run, fork or exec before.
        try:
            with instance.spawning():
                if user is None:
                    self.pid = os.posix_spawnp(
                        argv[0], argv, os.environ, setsigmask=mask, setsigdef=RESET_IN_CHILD
                    )
                else:
                    self.pid = spawn_as(user, argv, mask)
        except BecomeFailed as err:
            raise ProcmonError(
                f"cannot run {render.given(argv[0])} as {render.given(user.name)}: {err.strerror}"
            ) from None
        except OSError as err:
            # As a shell reports it: 127 when there is no such command, 126 when it
            # is there but cannot be executed.
            code = 127 if err.errno == errno.ENOENT else 126
            raise ProcmonError(
                f"cannot run {render.given(argv[0])}: {err.strerror}", code
            ) from None
        self.started = time.monotonic()
        self.status: int | None = None
        # CMD's, as wait4() gives it: the kernel's own total of CMD and what it waited for.
        self.rusage: resource.struct_rusage | None = None
        self.ended_at = 0.0
        self.interrupted = False  # a STOPS_WAITING signal came
        self.last_wait: float | None = None  # when run stops waiting (a second one came)
        self.given_up = False  # run stopped waiting, CMD running

    def ended(self) -> bool:
        """Forward what was sent to run, and reap CMD once it has ended (or stop
        waiting for it after a second SIGINT)."""
        while (info := signal.sigtimedwait(FORWARDED, 0)) is not None:
            self._received(info)
        if self.status is None and not self.given_up:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            now = time.monotonic()
            if pid:
                self.status, self.ended_at, self.rusage = status, now, rusage
            elif self.last_wait is not None and now >= self.last_wait:
                self.given_up, self.ended_at = True, now
        return self.status is not None or self.given_up

    def _received(self, info: signal.struct_siginfo) -> None:
        if self.status is not None or self.given_up:
            return
        self._forward(info)
        if info.si_signo == STOPS_WAITING:
            if self.interrupted and self.last_wait is None:
                self.last_wait = time.monotonic() + LAST_WAIT
            self.interrupted = True

    def _forward(self, info: signal.struct_siginfo) -> None:
        signum, target = info.si_signo, self.pid
        if info.si_code == SI_KERNEL:
            # From the terminal, to its foreground process group: run's.
            try:
                group = os.getpgid(self.pid)
            except ProcessLookupError:
                return  # gone: nothing to forward
            if group == os.getpgrp():
                return  # CMD is in it and got it too: not twice
            if group == self.pid:
                # CMD leads a group of its own (setsid, setpgid): all of it, as the
                # terminal would have had it been the foreground one.  A shell waiting
                # for its child ignores a Ctrl-C that its child did not get.
                target = -group
        with suppress(ProcessLookupError):  # reaped in the meantime
            os.kill(target, signum)

    def exit_code(self) -> int:
        """As a shell reports it: the code, or 128 + the signal that killed it; when
        run stopped waiting, as for a program a second Ctrl-C ended (run's own status)."""
        if self.status is None:
            return 128 + STOPS_WAITING
        code = os.waitstatus_to_exitcode(self.status)
        return code if code >= 0 else 128 - code

    def kill(self) -> None:
        """run itself is failing: do not leave CMD running unwatched."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


class BecomeFailed(OSError):
    """CMD's process could not take its user's ids (and did not run CMD)."""


# What a child that failed before exec tells its parent: where, then the errno.
EXEC_STEP, BECOME_STEP = b"x", b"u"


def spawn_as(user: RunAs, argv: list[str], mask: set[int]) -> int:
    """posix_spawnp() for CMD as `user`, which posix_spawn cannot do: fork, take the
    user's groups and ids, the signal mask and dispositions posix_spawnp would have
    given, and the user's environment (users.environment_for), then exec.  As with
    posix_spawnp, a failure to exec is raised here (OSError, BecomeFailed when the
    ids could not be taken), never seen as CMD's exit status.  Nothing but that runs
    in the child: run has no other thread, so fork is safe."""
    env = environment_for(user, os.environ)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: it leaves only by exec or _exit
        step = BECOME_STEP
        try:
            os.close(report_r)
            become(user)
            step = EXEC_STEP
            for signum in (*FORWARDED, *RESET_IN_CHILD):
                # Python's handlers (exec would reset them, but a signal may come first)
                # and what Python ignores go back to their defaults.
                if signum in RESET_IN_CHILD or callable(signal.getsignal(signum)):
                    signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.execvpe(argv[0], argv, env)
        except OSError as err:
            with suppress(OSError):
                os.write(report_w, step + (err.errno or errno.EPERM).to_bytes(4, "little"))
        finally:
            os._exit(127)
    os.close(report_w)
    try:
        report = b""
        while chunk := os.read(report_r, 5):
            report += chunk
    finally:
        os.close(report_r)
    if not report:
        return pid  # exec'd: the pipe closed with it
    os.waitpid(pid, 0)
    step, code = report[:1], int.from_bytes(report[1:5], "little")
    raise (BecomeFailed if step == BECOME_STEP else OSError)(code, os.strerror(code))


def run_command(
    obj: Path,
    argv: list[str],
    ring_size: int | None,
    opts: StreamOptions,
    view: View,
    live: TextIO,
    tree: bool = False,
    rows_failed: Callable[[OSError], None] = lambda err: None,
    user: RunAs | None = None,
) -> RunSummary:
    """Run argv in follow mode (as `user`, if given); stream its tree's rows to `live`
    as `opts` and `view` ask (none with opts.count 0) and return what the tree did
    (with `tree`, its process tree too).

    A write to `live` that fails (a closed pipe) stops the rows, not CMD, nor the
    summary: `rows_failed` is told once, and run follows CMD to its end."""
    if not argv[0]:
        # posix_spawnp() would raise ValueError; a shell, env and timeout all report
        # an empty command name as a command not found (and nothing is loaded for it).
        raise ProcmonError(f"cannot run {render.given(argv[0])}: {os.strerror(errno.ENOENT)}", 127)
    rows: Sink = UntilItFails(live, rows_failed)
    with (
        held_signals() as mask,
        PrivateInstance(
            obj,
            list(RECORD_EVENTS),
            ring_size,
            follow=True,
            reader=ReaderWants(threads=opts.threads),
        ) as instance,
    ):
        command = Command(argv, instance, mask, user)
        # CMD's arguments are bytes too: named as its processes' arguments are.
        shown = [text(os.fsencode(arg)) for arg in argv]
        host_pids = proc_has_host_pids()
        summary = TreeSummary(
            ProcessTree(
                command.pid,
                shown,
                count_threads=opts.threads,
                root_by_ns_pid=pid_namespace() != HOST_PID_NAMESPACE,
            )
            if tree
            else None
        )
        try:
            follow(instance, opts, view, rows, end=command.ended, observe=summary)
        except BaseException:
            command.kill()
            raise
        summary.finish()
        counters = instance.counters()
        running = [
            RunProcess(pid=pid, comm=(host_pids and _comm_of(pid)) or summary.name_of(pid))
            for pid in sorted(instance.followed())
        ]
    return RunSummary(
        command=shown,
        exit_code=command.exit_code(),
        cmd_running=command.status is None,
        processes=summary.started,
        threads=counters["threads"],
        by_name=dict(summary.names.most_common()),
        failures=summary.failures,
        failed=[
            RunExit(
                pid=f.pid,
                comm=f.name,
                exit_code=f.exit_code,
                signal=f.signal,
                argv=None if f.argv is None else list(f.argv),
                argv_truncated=f.argv_truncated,
            )
            for f in summary.failed
        ],
        longest=[
            RunLifetime(pid=pid, comm=name, duration_ns=d)
            for d, pid, name in sorted(summary.longest, reverse=True)
        ],
        running=running,
        lost_records=counters["dropped"],
        unfollowed=counters["unfollowed"],
        wall_ns=int((command.ended_at - command.started) * 1e9),
        cost=_cost(summary, command.rusage, int(command.started * 1e9)),
        tree=None if summary.tree is None else tree_model(summary.tree),
        tree_left_out=0 if summary.tree is None else summary.tree.left_out,
    )


def _cost(summary: TreeSummary, waited: resource.struct_rusage | None, start_ns: int) -> RunCost:
    """What the tree cost; `start_ns`: when run started CMD (CLOCK_MONOTONIC, as the
    records' clock: time.monotonic() reads the same clock)."""

    def costly(c: Costly) -> RunCostly:
        return RunCostly(
            pid=c.pid,
            comm=c.name,
            cpu_ns=c.cpu_ns,
            max_rss_kib=c.max_rss_kib,
            after_ns=max(0, c.started_ns - start_ns),
            duration_ns=c.duration_ns,
        )

    return RunCost(
        cpu_user_ns=summary.cpu_user_ns,
        cpu_system_ns=summary.cpu_system_ns,
        measured=summary.measured,
        top_cpu=[costly(c) for c in summary.costliest(summary.by_cpu)],
        top_memory=[costly(c) for c in summary.costliest(summary.by_memory)],
        # struct timeval's microseconds, as ns.
        waited_cpu_user_ns=None if waited is None else round(waited.ru_utime * 1e6) * 1000,
        waited_cpu_system_ns=None if waited is None else round(waited.ru_stime * 1e6) * 1000,
        waited_max_rss_kib=None if waited is None else waited.ru_maxrss,
    )


def _comm_of(pid: int) -> str | None:
    """What a process is called now (it may have exec'd after the stream ended).
    Only where /proc numbers processes as the records do (system.proc_has_host_pids)."""
    stat = read_stat(pid)
    return stat.comm if stat is not None else None
