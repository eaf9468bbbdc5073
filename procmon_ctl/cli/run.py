"""`run`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import _common
from ._common import (
    CommOpt,
    CountOpt,
    DurationOpt,
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
    state,
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
    count: CountOpt = None,
    duration: DurationOpt = None,
    comm: CommOpt = None,
    pid: PidOpt = None,
    ppid: PpidOpt = None,
    uid: UidOpt = None,
    tree: TreeOpt = None,
) -> None:
    """Load, attach and stream until Ctrl-C, SIGTERM or --duration, then remove it all.

    With `-- CMD ARGS`, follow exactly CMD's process tree (rows on stderr), print a
    summary (--json: one object, the last line on stdout) and exit with CMD's code."""
    from ..instance import private_pin_dir
    from ..load import find_object
    from ..pins import PinLayout
    from ..run import check_not_shared, run_command, run_monitor, summary_text
    from ..stream import stream_options

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
    pins = PinLayout.resolve(private_pin_dir(state.pin_dir))
    check_not_shared(pins)
    if not command:
        run_monitor(pins, obj, ["fork", "exec", "exit"], ring_size, opts, sys.stdout)
        return
    summary = run_command(
        pins, obj, command, ring_size, opts.filters, None if json_out else sys.stderr
    )
    if json_out:
        print_json(summary)
    else:
        print(summary_text(summary), file=sys.stderr)
    raise typer.Exit(summary.exit_code)
