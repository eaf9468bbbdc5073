"""What the commands share: the global --pin-dir, how a command is registered,
and the options that several commands take."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Annotated, Any

import typer

from ..pins import PinLayout

# Every registered command: name -> (function, Typer settings).  A command module
# registers its commands when app.py imports it, which happens only when the
# command is run, listed by --help or completed.
REGISTRY: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


class OutputClosed(Exception):
    """stdout was closed under us (SIGPIPE); Typer would exit 1 on a BrokenPipeError."""


class _State:
    pin_dir: str | None = None


state = _State()


def layout() -> PinLayout:
    return PinLayout.resolve(state.pin_dir)


def command(*, quick: bool = False, **settings: Any):
    """Register a command (as app.command() would).

    quick: the command reads, prints and exits, so the cyclic collector stays off
    (see cli.main); any other turns it back on as it starts."""

    def register(fn):
        @functools.wraps(fn)
        def guarded(*a, **kw):
            if not quick:
                gc.enable()
            try:
                return fn(*a, **kw)
            except BrokenPipeError:
                raise OutputClosed() from None

        REGISTRY[fn.__name__.lower().replace("_", "-")] = (guarded, settings)
        return guarded

    return register


def print_json(model) -> None:
    print(model.model_dump_json())


EVENTS_HELP = "Which programs: a comma-separated list of fork, exec, exit."

ObjectOpt = Annotated[
    str | None,
    typer.Option("--object", help="BPF object to load [default: the one `make` builds]"),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="One JSON object per kernel event (schema: `procmon-ctl schema`)."),
]
RawOpt = Annotated[bool, typer.Option("--raw", help="Every kernel event as it arrives.")]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Add UID, EXIT, DURATION and FILENAME, show the command line whole; an exit "
        "row follows each process.",
    ),
]
ThreadsOpt = Annotated[
    bool,
    typer.Option("--threads", help="Stream new threads too (the kernel skips them otherwise)."),
]
CountOpt = Annotated[
    int | None,
    typer.Option("--count", "-n", help="Stop after this many rows (or lines with --json/--raw)."),
]
DurationOpt = Annotated[
    float | None, typer.Option("--duration", help="Stop after this many seconds.")
]
FromNowOpt = Annotated[
    bool,
    typer.Option("--from-now", help="Skip what waits in the ring buffer; show only new events."),
]
CommOpt = Annotated[str | None, typer.Option("--comm", help="Only processes with this name.")]
PidOpt = Annotated[int | None, typer.Option("--pid", help="Only this process id.")]
PpidOpt = Annotated[int | None, typer.Option("--ppid", help="Only children of this process.")]
UidOpt = Annotated[int | None, typer.Option("--uid", help="Only processes of this user id.")]
TreeOpt = Annotated[
    int | None,
    typer.Option("--tree", help="Only this process and its descendants, following new children."),
]
