"""`run`."""

from __future__ import annotations

import contextlib
import shutil
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
    UidOpt,
    WideOpt,
    print_json,
)


@_common.command(context_settings={"allow_interspersed_args": False})
def run(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- CMD [ARG]...]",
            help="A command to run and follow (after --): its process tree only.",
        ),
    ] = None,
    object_path: ObjectOpt = None,
    ring_size: Annotated[
        int | None,
        typer.Option(
            "--ring-size", metavar="BYTES", help="Ring buffer size in bytes (a power of two)."
        ),
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
            metavar="N",
            help="Stop after this many rows (or lines with --json/--raw); with CMD, show at "
            "most this many and still summarise the whole tree.",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            metavar="SECONDS",
            help="Stop after this many seconds (without CMD; with CMD, run lasts as long as "
            "CMD does: limit CMD with timeout(1)).",
        ),
    ] = None,
    comm: CommOpt = None,
    pid: PidOpt = None,
    ppid: PpidOpt = None,
    uid: UidOpt = None,
    tree_of: Annotated[
        list[int] | None,
        typer.Option(
            "--tree-of",
            metavar="PID",
            help="Only rows of this process and its descendants, following new children "
            "(as `events --tree-of PID`); again for more trees.",
        ),
    ] = None,
    tree: Annotated[
        bool,
        typer.Option(
            "--tree",
            help="With CMD: after the summary, print CMD's whole process tree, each process "
            "with its command line, lifetime and exit status (--json always has it).",
        ),
    ] = False,
) -> None:
    """Run a command and show every process it started.

    Without CMD: watch the whole machine until Ctrl-C, SIGTERM or --duration, as
    `events` does, with no `load` or `attach` first.  run loads and attaches an
    instance of its own, pinned nowhere (--pin-dir does not apply): it is gone when
    run ends, however it ends.

    With `-- CMD ARGS`, the kernel follows exactly CMD's process tree: rows (in the
    format the options ask for) go to stderr, then a summary (--json: one object,
    the last line on stdout); run exits with CMD's status.  SIGINT, SIGTERM and
    SIGHUP sent to run are passed on to CMD; run waits for CMD (a second SIGINT ends
    the wait: exit 130) and does not wait for descendants still running when it
    ends (the summary lists them).  A closed stderr stops the rows, not CMD.  --tree
    prints the tree of processes CMD started, as pstree does."""
    from ..commands.run import run_command, run_monitor
    from ..errors import UsageError
    from ..instance.pins import RECORD_EVENTS
    from ..instance.startup import find_object
    from ..views.render import stream_width
    from ..views.run_summary import summary_text
    from ..views.tree import tree_text
    from .messages import say
    from .stream_flags import StreamFlags

    if tree and not command:
        raise UsageError("--tree prints the tree of a command: give it one, `run --tree -- CMD`")
    if tree and len(command) == 1 and command[0].isdigit() and shutil.which(command[0]) is None:
        # `run --tree PID` filtered rows before --tree became this flag.
        raise UsageError(
            f"--tree takes no PID: for the rows of {command[0]}'s tree use `run --tree-of "
            f"{command[0]}`; for a command's tree, `run --tree -- CMD`"
        )
    if command and duration is not None:
        raise UsageError(
            "--duration does not apply with a command: run lasts as long as CMD; "
            "limit CMD with timeout(1), e.g. `run -- timeout 10 CMD`"
        )
    words = _common.hints(ctx).words
    stream = StreamFlags(
        json_out=json_out,
        raw=raw,
        wide=wide,
        threads=threads,
        count=count,
        duration=duration,
        comm=comm or (),
        pid=pid or (),
        ppid=ppid or (),
        uid=uid or (),
        tree=tree_of or (),
    ).stream(words)
    obj = find_object(object_path)
    if not command:
        run_monitor(obj, list(RECORD_EVENTS), ring_size, stream.options, stream.view, sys.stdout)
        return

    def rows_failed(err: OSError) -> None:
        # Once, on stdout: stderr, where the rows went, is what failed.
        note = (
            f"no more rows: writing them to stderr failed ({err.strerror or err}); "
            "CMD runs on and run exits with its status"
        )
        with contextlib.suppress(OSError):
            say("warning", note, sys.stdout)

    # The JSON summary always has the tree: a program reading it should not need
    # to know a flag to find a field, and the tree is bounded.
    summary = run_command(
        obj,
        command,
        ring_size,
        stream.options,
        stream.view,
        sys.stderr,
        tree=tree or json_out,
        rows_failed=rows_failed,
    )
    try:
        if json_out:
            print_json(summary)
        else:
            width = stream_width(sys.stderr)
            text = summary_text(summary, width, words)
            if tree and summary.tree is not None:
                text += "\n" + tree_text(summary.tree, summary.tree_left_out, width)
            print(text, file=sys.stderr, flush=True)
    except OSError:
        pass  # a closed pipe, the terminal gone (SIGHUP): the exit status still tells
    raise typer.Exit(summary.exit_code)
