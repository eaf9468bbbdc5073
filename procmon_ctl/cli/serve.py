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
) -> None:
    """Serve the counters as Prometheus metrics over HTTP.

    They are read from the instance's maps at each scrape.
    /metrics?name[]=NAME (repeatable) gives only those series.  Limits, so that no
    client can tie serve up: at most 64 connections open at once (a new one closes
    the oldest that has not sent its request yet), a request must arrive within 10 s
    of connecting (silent connections are closed then), and at most 4 answers are
    written at once, each given up after 10 s without progress."""
    from ..commands.exporter import serve_forever
    from .hints import option
    from .messages import say

    serve_forever(
        pinned(ctx),
        address,
        port,
        attach_too,
        object_path,
        lambda text: print(text, flush=True),
        lambda text: say("serve", text),
        option,
    )
