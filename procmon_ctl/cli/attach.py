"""`attach` and `detach`."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import EVENTS_HELP, command, pinned

EventsOpt = Annotated[str, typer.Option("--events", metavar="EVENTS", help=EVENTS_HELP)]


@command()
def attach(ctx: typer.Context, events: EventsOpt = "fork,exec,exit,cgroup") -> None:
    """Start watching: attach the loaded programs (second step).

    The programs are attached with pinned links that outlive this command; those
    already attached are left as they are."""
    from ..instance.attach import attach as attach_programs
    from ..instance.attach import parse_events

    done, already = attach_programs(pinned(ctx), parse_events(events))
    print(_outcome("attached", done, already, "already attached"))


@command()
def detach(ctx: typer.Context, events: EventsOpt = "fork,exec,exit,cgroup") -> None:
    """Stop watching: detach the programs, leaving them loaded.

    The link pins are removed; the counters stop growing.  `attach` starts again."""
    from ..instance.attach import detach as detach_programs
    from ..instance.attach import parse_events

    done, idle = detach_programs(pinned(ctx), parse_events(events))
    print(_outcome("detached", done, idle, "not attached"))


def _outcome(verb: str, done: list[str], left: list[str], state: str) -> str:
    """ "attached fork; exec was already attached", or "... : nothing to do"."""
    if not left:
        return f"{verb} {', '.join(done)}"
    were = f"{', '.join(left)} {'was' if len(left) == 1 else 'were'} {state}"
    return f"{verb} {', '.join(done)}; {were}" if done else f"{were}: nothing to do"
