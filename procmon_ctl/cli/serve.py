"""`serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import command, pinned


@command()
def serve(
    ctx: typer.Context,
    address: Annotated[
        str,
        typer.Option(
            "--address",
            metavar="ADDRESS",
            help="Address to listen on (0.0.0.0 for every interface).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="TCP port to listen on (1-65535).")
    ] = 9464,
    attach_too: Annotated[
        bool,
        typer.Option(
            "--attach",
            help="Serve an instance of its own, loaded and attached first and pinned nowhere "
            "(--pin-dir does not apply): gone when serve ends, however it ends.",
        ),
    ] = False,
    object_path: Annotated[
        str | None,
        typer.Option(
            "--object",
            metavar="FILE",
            help="BPF object for --attach [default: the one `make` builds]",
        ),
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            "--top",
            metavar="N",
            help="Values with a series of their own per label (command, container, user), "
            '1-1000; the rest are counted as "(other)".',
        ),
    ] = 50,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed",
            help="Also count failed execs by errno (procmon_failed_execs_total).  Attaches "
            "the failed-exec programs, which slow every syscall a little, and only one "
            "reader at a time can (as `events --failed`).",
        ),
    ] = False,
    counters_only: Annotated[
        bool,
        typer.Option(
            "--counters-only",
            help="Serve the instance's counters alone: no reader of its own, so none of the "
            "series by command, container, user, exit status or lifetime.",
        ),
    ] = False,
) -> None:
    """Serve Prometheus metrics: counts by command, container, user

    The counters are read from the instance's maps at each scrape.  serve is also a
    reader of its own (as `events`, taking nothing from other readers): it counts
    execs by command, new processes by container and by user (the --top busiest
    values each, and "(other)"), exits by status and by signal, and process
    lifetimes as a histogram (README, "Metrics").
    /metrics?name[]=NAME (repeatable) gives only those series.  Limits, so that no
    client can tie serve up: at most 64 connections open at once (a new one closes
    the oldest that has not sent its request yet), a request must arrive within 10 s
    of connecting (silent connections are closed then), and at most 4 answers are
    written at once, each given up after 10 s without progress."""
    from ..commands.exporter import Counting, serve_forever
    from ..errors import Setting, UsageError
    from .hints import option
    from .messages import say

    if counters_only and failed:
        raise UsageError(
            (
                Setting("failed"),
                " is counted by serve's own reader, which ",
                Setting("counters_only"),
                " leaves out: give one of them",
            )
        )
    serve_forever(
        pinned(ctx),
        address,
        port,
        attach_too,
        object_path,
        None if counters_only else Counting(top, failed),
        lambda text: print(text, flush=True),
        lambda text: say("serve", text),
        option,
    )
