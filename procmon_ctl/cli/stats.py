"""`stats` and `status`."""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import command, hints, pinned, print_json

if TYPE_CHECKING:
    from ..errors import Words

JsonObjectOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@command(quick=True)
def stats(
    ctx: typer.Context,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="Print compact JSON: one object, or with --watch one per interval."
        ),
    ] = False,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Print rates per second every --interval until interrupted."),
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval", metavar="SECONDS", help="Seconds between --watch lines.  [default: 1.0]"
        ),
    ] = None,
) -> None:
    """Show the counters: processes, threads, execs, exits, losses.

    process_count is the seed's shared counter; --watch prints rates per second."""
    from ..commands import stats as counters
    from ..errors import UsageError, require_interval
    from ..process.clock import now_rfc3339
    from ..views import stats as lines

    if interval is not None:
        require_interval("interval", interval)
        if not watch:
            raise UsageError("--interval applies only with --watch: add --watch")
    pins = pinned(ctx)
    if not watch:
        s = counters.read_stats(pins)
        at = now_rfc3339()
        _warn(ctx, counters.attach_warning(pins))
        if json_out:
            from ..commands.readers import reader_statuses

            print(lines.stats_json(s, at, reader_statuses(pins)))
        else:
            print(lines.stats_text(s))
        return
    gc.enable()  # runs until interrupted: collect as usual
    samples = counters.watch(pins, 1.0 if interval is None else interval)
    _warn(ctx, counters.attach_warning(pins))
    if not json_out:
        print(lines.rates_header(), flush=True)
    for sample in samples:
        line = lines.rates_json(sample) if json_out else lines.rates_text(sample)
        print(line, flush=True)


def _warn(ctx: typer.Context, warning: Words | None) -> None:
    # The hints (how this instance's commands are spelled) only to word a warning.
    if warning:
        from .messages import warning as say_warning

        say_warning(hints(ctx).words(warning))


@command(quick=True)
def status(ctx: typer.Context, json_out: JsonObjectOpt = False) -> None:
    """Show what is loaded and attached, its pins and its readers.

    Programs and links, maps, the ring buffer, by pin path (their kernel ids with
    --json), and the readers (as `readers` lists them)."""
    from ..commands.stats import read_status
    from ..views.render import stream_width
    from ..views.stats import status_text

    s = read_status(pinned(ctx))
    if json_out:
        print_json(s)
    else:
        print(status_text(s, stream_width(sys.stdout)))
