"""`readers` and `readers rm NAME`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._common import command, pinned

ActionArg = Annotated[
    str | None,
    typer.Argument(
        metavar="rm",
        help="rm NAME: remove the place of the named reader NAME (it must be down): its "
        "slot, and what its ring holds unread.",
        show_default=False,
    ),
]
NameArg = Annotated[
    str | None,
    typer.Argument(metavar="NAME", help="The reader to remove.", show_default=False),
]


@command(quick=True)
def readers(
    ctx: typer.Context,
    action: ActionArg = None,
    name: NameArg = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON array: an object per reader.")
    ] = False,
) -> None:
    """List who reads the instance; remove a named reader's place.

    Each reader: name (or -), pid (or down: a named reader not running, whose ring
    keeps filling), filters, ring size and how full it is, records delivered,
    dropped and filtered out."""
    from ..commands import readers as slots
    from ..errors import Command, Given, UsageError

    if action is None:
        states = slots.read_readers(pinned(ctx))
        if json_out:
            from ..process.decode import json_safe

            print(json_safe(_json_array(states)))
        else:
            from ..views.readers import readers_lines
            from ..views.render import stream_width

            print("\n".join(readers_lines(states, stream_width(sys.stdout))))
        return
    if action != "rm":
        raise UsageError(
            (
                "readers takes no ",
                Given(action),
                ": run ",
                Command("readers"),
                " to list the readers, ",
                Command("readers rm NAME"),
                " to remove a named one",
            )
        )
    if name is None:
        raise UsageError(
            ("readers rm needs the name of the reader to remove: ", Command("readers rm NAME"))
        )
    if json_out:
        raise UsageError("--json applies only to the list of readers: leave it out with rm")
    from ..views.readers import removed_text

    print(removed_text(slots.remove_reader(pinned(ctx), name)))


def _json_array(states) -> str:
    from pydantic import TypeAdapter

    from ..views.stats_schema import ReaderStatus

    return TypeAdapter(list[ReaderStatus]).dump_json(states).decode()
