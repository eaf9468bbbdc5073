"""`serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import command, layout


@command()
def serve(
    address: Annotated[
        str,
        typer.Option("--address", help="Address to listen on (0.0.0.0 for every interface)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 9464,
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
        typer.Option("--object", help="BPF object for --attach [default: the one `make` builds]"),
    ] = None,
) -> None:
    """Serve the counters as Prometheus metrics over HTTP, read at scrape time."""
    from ..exporter import serve_forever

    serve_forever(
        layout(), address, port, attach_too, object_path, lambda text: print(text, flush=True)
    )
