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
)

# ctx.meta's key: the command line ended with `--` (Click drops it).
ENDS_WITH_DASHES = "procmon_ctl.run.ends_with_dashes"


class RunCommand(_common.HelpedCommand):
    """`run`, knowing whether its options ended with a bare `--`: `run --` with nothing
    after it is a command left out, not a request to watch the whole host."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        last = args[-1] if args else None  # before Click takes the list apart
        rest = super().parse_args(ctx, args)
        # Unless that `--` was an option's value (`--comm --`).
        values = [v for value in ctx.params.values() for v in _listed(value)]
        ctx.meta[ENDS_WITH_DASHES] = last == "--" and "--" not in values
        return rest


def _listed(value) -> tuple:
    """An option's value as the values given (a repeated option has several)."""
    return tuple(value) if isinstance(value, list | tuple) else (value,)


@_common.command(cls=RunCommand, context_settings={"allow_interspersed_args": False})
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
            "most this many and still summarise the whole tree (0: no rows, as --quiet).",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="With CMD: no rows, only the summary (--json: the summary object alone).",
        ),
    ] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="With CMD: write the rows and the summary (and --tree's tree) to FILE, "
            "emptied first, as `strace -o` and `time -o` do, and nothing to CMD's stdout or "
            "stderr; - is stdout, /dev/fd/N (a shell's >(...)) run's descriptor N. A new "
            "file is made as the umask says; with --user it is opened as that user, else "
            "only a regular file root may write, never through a symlink.",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            "-u",
            metavar="USER",
            help="Run CMD as USER (a name, or a uid), with USER's groups and HOME, SHELL, "
            "USER and LOGNAME, as `sudo -u` does; run keeps root for the kernel. "
            'E.g. `sudo procmon-ctl run -u "$USER" -- make`.',
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
    the last line on stdout), or all of it to --output's file; run exits with CMD's
    status.  On a terminal, each of run's writes starts on a line of its own, never
    after a line CMD left unfinished.  SIGINT, SIGTERM and SIGHUP sent to run are
    passed on to CMD; run waits for CMD (a second SIGINT ends the wait: exit 130) and
    does not wait for descendants still running when it ends (the summary lists
    them).  A closed stderr stops the rows, not CMD.  --tree prints the tree of
    processes CMD started, pstree-like."""
    from ..commands.run import run_monitor
    from ..errors import UsageError
    from ..instance.pins import RECORD_EVENTS
    from ..instance.startup import find_object
    from .stream_flags import StreamFlags

    if not command and ctx.meta.get(ENDS_WITH_DASHES):
        raise UsageError(
            "nothing after --: give a command, `run -- CMD` (`run` alone watches the host)"
        )
    if not command:
        for given, name in ((quiet, "--quiet"), (output, "--output"), (user, "--user")):
            if given:
                raise UsageError(f"{name} is for a command's run: `run {name} ... -- CMD`")
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
    if count == 0 and command:
        quiet, count = True, None  # -n 0: no rows, as --quiet
    if quiet:
        row_options = (
            ("--count", count is not None),
            ("--raw", raw),
            ("--wide", wide),
            ("--comm", bool(comm)),
            ("--pid", bool(pid)),
            ("--ppid", bool(ppid)),
            ("--uid", bool(uid)),
        )
        for name, given in row_options:
            if given:
                raise UsageError(f"--quiet shows no rows: {name} is for rows; leave one out")
    run_as = None
    if user is not None:
        from ..process.users import find_user

        run_as = find_user(user)
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
    if quiet:
        stream.options.count = 0
    obj = find_object(object_path)
    if not command:
        run_monitor(obj, list(RECORD_EVENTS), ring_size, stream.options, stream.view, sys.stdout)
        return
    from ..kernel.system import require_root

    # Before the file is opened: as root, or as the user, is the only way run opens it.
    require_root("loading BPF programs")
    with contextlib.ExitStack() as closing:
        if output is None:
            where = "stderr"
            rows_to, summary_to = sys.stderr, sys.stdout if json_out else sys.stderr
        elif output == "-":
            where = "stdout"
            rows_to = summary_to = sys.stdout
        else:
            from ..commands.run_output import OutputFile

            where = output
            rows_to = summary_to = closing.enter_context(OutputFile(output, run_as))
        code = _run_with_cmd(
            command,
            obj,
            ring_size,
            stream,
            run_as,
            json_out=json_out,
            tree=tree,
            words=words,
            rows_to=rows_to,
            summary_to=summary_to,
            where=where,
        )
    raise typer.Exit(code)


def _run_with_cmd(
    command, obj, ring_size, stream, run_as, *, json_out, tree, words, rows_to, summary_to, where
) -> int:
    """CMD run and followed, rows to `rows_to`, the summary to `summary_to` (run's
    stdout or stderr, or --output's file, `where`); returns CMD's status."""
    from ..commands.run import run_command
    from ..commands.run_output import shared_with_cmd
    from ..process.decode import json_safe
    from ..views.render import tty_width
    from ..views.run_summary import summary_text
    from ..views.tree import tree_text
    from .messages import say

    def warn(note: str) -> None:
        # On whichever of run's streams did not fail (stderr but for a failed stderr).
        to = sys.stdout if where == "stderr" else sys.stderr
        with contextlib.suppress(OSError):
            say("warning", note, to)

    def rows_failed(err: OSError) -> None:
        warn(
            f"no more rows: writing them to {where} failed ({err.strerror or err}); "
            "CMD runs on and run exits with its status"
        )

    rows, summary_out = shared_with_cmd(rows_to), shared_with_cmd(summary_to)
    # The JSON summary always has the tree: a program reading it should not need
    # to know a flag to find a field, and the tree is bounded.
    summary = run_command(
        obj,
        command,
        ring_size,
        stream.options,
        stream.view,
        rows,
        tree=tree or json_out,
        rows_failed=rows_failed,
        user=run_as,
    )
    try:
        if json_out:
            text = json_safe(summary.model_dump_json())
        else:
            width = tty_width(getattr(summary_out, "fd", None))
            text = summary_text(summary, width, words)
            if tree and summary.tree is not None:
                text += "\n" + tree_text(summary.tree, summary.tree_left_out, width)
        summary_out.write(text + "\n")
        summary_out.flush()
    except OSError as err:
        if where not in ("stderr", "stdout"):
            warn(f"cannot write the summary to {where}: {err.strerror or err}")
        # else a closed pipe, the terminal gone (SIGHUP): the exit status still tells
    return summary.exit_code
