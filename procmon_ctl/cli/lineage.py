"""`lineage PID`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._common import command


@command(quick=True)
def lineage(
    pid: Annotated[
        int,
        typer.Argument(metavar="PID", help="The process (running, or seen in the log)."),
    ],
    log: Annotated[
        str | None,
        typer.Option(
            "--log",
            metavar="FILE",
            help="The JSON log to look in (`events --output FILE` writes one; - reads stdin; "
            '"" for none) [default: /var/log/procmon/events.jsonl, the log service\'s, '
            "when it exists]",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: the process and its lineage.")
    ] = False,
) -> None:
    """Say who started a process, and who started that, up to pid 1.

    For a running process from /proc, and from the JSON log of a named reader (the
    log service's by default) for processes that have exited, or whose parent has:
    /proc only knows a process's parent now (a reaper, once the parent has exited);
    the log knows who started it.  Ancestors that have exited are marked."""
    from ..commands.lineage import lineage_of
    from ..errors import Given, MissingError, UsageError

    if pid < 1:
        raise UsageError(("PID ", Given(str(pid)), " is not a process id: give 1 or more"))
    answer = lineage_of(pid, log)
    if answer.found is None:
        where = f"nor in the log {answer.log}" if answer.log else "and there is no log to look in"
        raise MissingError(
            f"no process {pid}: not running, {where} "
            "(exited processes are known from a log: docs/logs.md)"
        )
    found = answer.found
    if json_out:
        from ..process.decode import json_safe
        from ..views.lineage import found_json

        sources = [s for s, used in (("log", found.from_log), ("proc", found.from_proc)) if used]
        print(json_safe(found_json(found.process, sources)))
        return
    from ..views.lineage import found_lines
    from ..views.render import stream_width

    print("\n".join(found_lines(found.process, stream_width(sys.stdout))))
    if answer.log is None and found.from_proc:
        from .messages import note

        note(
            "from /proc alone, which knows a process's parent now, not who started it: "
            "a log (events --output FILE, --log FILE) knows exited ancestors too"
        )
