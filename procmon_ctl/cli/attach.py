"""`attach` and `detach`."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import EVENTS_HELP, command, layout

EventsOpt = Annotated[str, typer.Option("--events", help=EVENTS_HELP)]


@command()
def attach(events: EventsOpt = "fork,exec,exit") -> None:
    """Attach the loaded programs with pinned links that outlive this command."""
    from ..attach import attach as attach_programs
    from ..attach import parse_events

    done = attach_programs(layout(), parse_events(events))
    print(f"attached {', '.join(done)}")


@command()
def detach(events: EventsOpt = "fork,exec,exit") -> None:
    """Detach: remove the link pins; the counters stop growing."""
    from ..attach import detach as detach_programs
    from ..attach import parse_events

    done = detach_programs(layout(), parse_events(events))
    print(f"detached {', '.join(done)}")
