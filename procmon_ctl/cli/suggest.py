"""What to say about an option the command does not have.

Click suggests the command's options that look most like the one typed, comparing
them with their leading dashes: every long option shares "--", so `run --lineage`
was offered `--ring-size`.  Here names are compared without the dashes, and an
option that another command has is named as that command's."""

from __future__ import annotations

from difflib import get_close_matches

# How alike (difflib's ratio) a name must be to be suggested: `--wid` gets --wide,
# not --uid and --pid.
_ALIKE = 0.7


def no_such_option(err) -> str:
    """The line for Click's NoSuchOption `err`: "No such option: --X" and what the
    user may have meant, or where to look."""
    typed = err.option_name
    ctx = err.ctx
    said = f"No such option: {typed}"
    if ctx is None or not typed.startswith("--"):
        return err.format_message()
    own = _long_options(ctx.command)
    alike = get_close_matches(typed[2:], [o[2:] for o in own], n=3, cutoff=_ALIKE)
    if alike:
        return f"{said} (did you mean {' or '.join('--' + a for a in alike)}?)"
    group_ctx = ctx if ctx.parent is None else ctx.parent
    group = group_ctx.command
    others = [
        name
        for name in group.commands
        if (c := group.get_command(group_ctx, name)) is not None
        and c is not ctx.command
        and typed in _long_options(c)
    ]
    path = ctx.command_path
    if others and ctx.parent is None:
        return f"{said} (an option of {_listed(others)}: give it after the command)"
    if others:
        return f"{said} (an option of {_listed(others)}, not of {ctx.info_name})"
    return f"{said} (the options: `{path} --help`)"


def _long_options(command) -> list[str]:
    return [
        o
        for p in command.params
        if not getattr(p, "hidden", False)
        for o in (*p.opts, *p.secondary_opts)
        if o.startswith("--")
    ]


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
