"""`run`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import _common
from ._common import (
    CommOpt,
    JsonOpt,
    ObjectOpt,
    PidOpt,
    PpidOpt,
    RawOpt,
    ThreadsOpt,
    TreeOpt,
    UidOpt,
    WideOpt,
    print_json,
)


@_common.command(context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="A command to run and follow (after --): its process tree only."),
    ] = None,
    object_path: ObjectOpt = None,
    ring_size: Annotated[
        int | None, typer.Option("--ring-size", help="Ring buffer size in bytes (a power of two).")
    ] = None,
    json_out: JsonOpt = False,
    raw: RawOpt = False,
    wide: WideOpt = False,
    threads: ThreadsOpt = False,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            "-n",
            help="Stop after this many rows (or lines with --json/--raw); with CMD, show at "
            "most this many and still summarise the whole tree.",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            help="Stop after this many seconds (without CMD; with CMD, run lasts as long as "
            "CMD does: limit CMD with timeout(1)).",
        ),
    ] = None,
    comm: CommOpt = None,
    pid: PidOpt = None,
    ppid: PpidOpt = None,
    uid: UidOpt = None,
    tree: TreeOpt = None,
) -> None:
    """Load and attach an instance of its own, stream until Ctrl-C, SIGTERM or --duration.

    The instance is pinned nowhere (--pin-dir does not apply): it is gone when run
    ends, however it ends.

    With `-- CMD ARGS`, the kernel follows exactly CMD's process tree: rows (in the
    format the options ask for) go to stderr, then a summary (--json: one object,
    the last line on stdout); run exits with CMD's status.  SIGINT, SIGTERM and
    SIGHUP sent to run are passed on to CMD; run waits for CMD and does not wait
    for descendants still running when it ends (the summary lists them)."""
    from ..errors import UsageError
    from ..load import find_object
    from ..render import tty_width
    from ..run import run_command, run_monitor, summary_text
    from ..stream import stream_options

    if command and duration is not None:
        raise UsageError(
            "--duration does not apply with a command: run lasts as long as CMD; "
            "limit CMD with timeout(1), e.g. `run -- timeout 10 CMD`"
        )
    opts = stream_options(
        json_out=json_out,
        raw=raw,
        wide=wide,
        threads=threads,
        count=count,
        duration=duration,
        from_now=False,
        comm=comm,
        pid=pid,
        ppid=ppid,
        uid=uid,
        tree=tree,
    )
    obj = find_object(object_path)
    if not command:
        run_monitor(obj, ["fork", "exec", "exit"], ring_size, opts, sys.stdout)
        return
    summary = run_command(obj, command, ring_size, opts, sys.stderr)
    try:
        if json_out:
            print_json(summary)
        else:
            print(
                summary_text(summary, tty_width(_fileno(sys.stderr))), file=sys.stderr, flush=True
            )
    except OSError:
        pass  # the terminal went away (SIGHUP): the exit status still tells
    raise typer.Exit(summary.exit_code)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError):
        return None
