"""`help [COMMAND]`: the help of procmon-ctl, or of one command, as `--help` prints it."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import command


@command(quick=True, name="help")
def help_command(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="[COMMAND]",
            help="The command to describe [default: procmon-ctl itself].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show the help of procmon-ctl or of one command.

    The same text as `procmon-ctl --help` or `procmon-ctl COMMAND --help`."""
    from ..errors import Command, Given, UsageError

    group_ctx = ctx.parent
    if name is None:
        print(group_ctx.get_help())
        return
    group = group_ctx.command
    described = group.get_command(group_ctx, name) if name in group.commands else None
    if described is None:
        from difflib import get_close_matches

        alike = get_close_matches(name, list(group.commands), n=2)
        meant = f" (did you mean {' or '.join(alike)}?)" if alike else ""
        raise UsageError(
            (
                "no command ",
                Given(name, as_is_if_printable=True),
                f"{meant}: ",
                Command("help"),
                " lists them",
            )
        )
    with type(ctx)(described, info_name=name, parent=group_ctx) as described_ctx:
        print(described.get_help(described_ctx))
