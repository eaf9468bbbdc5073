"""`events`."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from . import messages
from ._common import (
    CommOpt,
    CountOpt,
    DurationOpt,
    FromNowOpt,
    JsonOpt,
    PidOpt,
    PpidOpt,
    RawOpt,
    ThreadsOpt,
    TimeOpt,
    TreeOfOpt,
    UidOpt,
    WideOpt,
    command,
    hints,
    pinned,
)


@command()
def events(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    raw: RawOpt = False,
    wide: WideOpt = False,
    with_time: TimeOpt = None,
    threads: ThreadsOpt = False,
    count: CountOpt = None,
    duration: DurationOpt = None,
    from_now: FromNowOpt = False,
    comm: CommOpt = None,
    pid: PidOpt = None,
    ppid: PpidOpt = None,
    uid: UidOpt = None,
    tree_of: TreeOfOpt = None,
    tree: Annotated[
        list[int] | None,
        typer.Option("--tree", hidden=True, help="Before --tree-of: a warning, then as it."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            metavar="FILE",
            help="Append JSON lines to this file instead (implies --json; - is stdout); "
            "SIGHUP reopens it, for logrotate. A named reader: --name, else named after "
            "the file's path (var-log-procmon-events.jsonl), so a restart loses nothing.",
        ),
    ] = None,
    ring_size: Annotated[
        int | None,
        typer.Option(
            "--ring-size",
            metavar="BYTES",
            help="This reader's ring buffer size in bytes (a power of two, at least one "
            "page) [default: what load was given]. A named reader keeps the ring it has.",
        ),
    ] = None,
    argv_bytes: Annotated[
        int | None,
        typer.Option(
            "--argv-bytes",
            metavar="BYTES",
            help="Keep at most this many bytes of each exec's command line (0 to 16384; a "
            "longer one is cut and marked argv_truncated) [default: what load was given]. "
            "0: no command lines, and the kernel reads none while no reader wants any.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            metavar="NAME",
            help="A reader that keeps its place: what happens while it is down waits in "
            "its ring (up to its size, then gap lines) and comes when a reader of this name "
            "starts again. `procmon-ctl readers` lists them, `readers rm NAME` removes one.",
        ),
    ] = None,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed",
            help="Also show execs that failed (errno, path and arguments tried): attaches "
            "the execve/execveat syscall tracepoints while this reader runs, which slows "
            "every syscall a little.",
        ),
    ] = False,
    cgroup: Annotated[
        list[str] | None,
        typer.Option(
            "--cgroup",
            metavar="PATH",
            help="Only processes in this cgroup v2 or below it: its path as /proc/PID/cgroup "
            "shows it (/system.slice/x.service) or under the cgroup2 mount. Filtered in the "
            "kernel: other processes take no ring space.",
        ),
    ] = None,
    container: Annotated[
        list[str] | None,
        typer.Option(
            "--container",
            metavar="CONTAINER",
            help="Only processes of this container (docker, containerd, CRI-O, podman, "
            "nspawn): its name as the runtime has it (podman ps), its id or a unique prefix of "
            "it. Filtered in the kernel, like --cgroup. A container not running yet (or "
            "stopped) is waited for: its processes show from its start.",
        ),
    ] = None,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="When the reader ends (--duration, --count, Ctrl-C, SIGTERM), print what it "
            "saw (as its filters let it through): counts by command, the failures, the shortest- "
            "and longest-lived (--json: one object). On stderr, or on stdout when --output "
            "takes the lines.",
        ),
    ] = False,
    lineage: Annotated[
        bool,
        typer.Option(
            "--lineage",
            help="Add who started each process: its ancestors up to init, with their "
            "command lines (JSON: a `lineage` array; tables: a line under each row).",
        ),
    ] = False,
) -> None:
    """Watch processes start, exec and exit, live, with filters.

    Reads the instance that `load` and `attach` made: one row per new process by
    default, each with its command line; --wide adds each exit, --json every
    kernel event.  Each reader has a ring of its own, so any number read at once, each with its own
    filters. A reader starts now; one with --name resumes where it stopped."""
    from ..errors import UsageError
    from ..stream.follow import check_can_read, follow
    from .stream_flags import StreamFlags

    if output is not None:
        if raw or wide or not output:
            raise UsageError(
                "--output FILE writes JSON lines: give a file name, without --raw or --wide"
            )
        if with_time is not None:
            raise UsageError(
                "--output FILE writes JSON lines, each with its `time`: "
                "--time and --no-time are for the tables"
            )
        json_out = True
        if output == "-":  # stdout, as for most tools; ./- names a file called -
            output = None
    if name is None and output is not None:
        from ..instance.readers import name_for_output

        name = name_for_output(output)
    words = hints(ctx)
    if tree:
        # The filter is --tree-of in both commands (run's --tree prints CMD's tree).
        messages.warning(
            "events --tree PID is now --tree-of PID; --tree will go in a later version"
        )
    stream = StreamFlags(
        json_out=json_out,
        raw=raw,
        wide=wide,
        threads=threads,
        count=count,
        duration=duration,
        from_now=from_now,
        comm=comm or (),
        pid=pid or (),
        ppid=ppid or (),
        uid=uid or (),
        tree=[*(tree_of or ()), *(tree or ())],
        failed=failed,
        cgroup=cgroup or (),
        container=container or (),
        lineage=lineage,
        with_time=with_time,
        name=name,
        ring_size=ring_size,
        argv_bytes=argv_bytes,
        container_column_if_running=True,
    ).stream(words.words)
    for note in stream.notes:
        messages.note(words.words(note))
    pins = pinned(ctx)
    warning = check_can_read(pins, failed)
    warning = words.words(warning) if warning else None
    if output is None:
        warn(warning)
        wait_note(stream.waiting, words.words)
        with summarized(stream, summary, json_out, failed, sys.stderr, words.words) as observe:
            follow(pins, stream.options, stream.view, sys.stdout, observe=observe)
        return
    from ..stream.logfile import ReopeningFile, reopen_on_sighup
    from ..views.json_lines import LINE_START

    with ReopeningFile(output, line_start=LINE_START) as sink:
        warn(warning)  # only once --output is known good: an error is the one line
        wait_note(stream.waiting, words.words)
        reopen_on_sighup(sink)
        with summarized(stream, summary, json_out, failed, sys.stdout, words.words) as observe:
            follow(pins, stream.options, stream.view, sink, observe=observe)


@contextlib.contextmanager
def summarized(stream, wanted: bool, json_out: bool, failed: bool, to, words):
    """--summary: the stream's observer, and its summary written to `to` when the
    reader ends: at --count or --duration, or at a stop signal (written as that
    unwinds); not after an error, which is then the last word.  It counts what the
    view's filters let through."""
    if not wanted:
        yield None
        return
    import time

    from ..kernel.signals import Terminated
    from ..process.events_tally import EventsTally

    tally = EventsTally(filters=getattr(stream.view, "filters", None))
    started = time.monotonic_ns()
    try:
        yield tally
    except (Terminated, KeyboardInterrupt):
        _write_summary(tally, time.monotonic_ns() - started, json_out, failed, to, words)
        raise
    _write_summary(tally, time.monotonic_ns() - started, json_out, failed, to, words)


def _write_summary(tally, duration_ns: int, json_out: bool, failed: bool, to, words) -> None:
    from ..views.events_summary import summary_of, summary_text

    s = summary_of(tally, duration_ns, failed)
    if json_out:
        from ..process.decode import json_safe

        text = json_safe(s.model_dump_json())
    else:
        from ..views.render import tty_width

        try:
            fd = to.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        text = summary_text(s, tty_width(fd), words)
    with contextlib.suppress(OSError):  # a closed pipe: nothing to tell it to
        to.write(text + "\n")
        to.flush()


def wait_note(waiting, words) -> None:
    """--container of a container that does not run: one line saying the reader waits."""
    if waiting is not None:
        messages.note(words(waiting))


def warn(warning: str | None) -> None:
    if warning:
        messages.warning(warning)
