"""`events --summary`: what a reader saw (process/events_tally.py's figures) as an
EventsSummary, and that as people read it, like `forkstat -S` but from exact
records.  Lines fit a terminal's width as run's summary does (run_summary.py)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import Words, plain
from ..process.decode import errno_name
from ..process.events_tally import Ended, EventsTally
from . import render
from .run_summary import failed_lines, lost_lines
from .schema import EventsCommand, EventsEnded, EventsFailedExec, EventsSummary

# Commands the text lists by name, the busiest first (the JSON has them all).
COMMANDS_SHOWN = 10


def _ended(x: Ended) -> EventsEnded:
    return EventsEnded(
        pid=x.pid,
        comm=x.comm,
        duration_ns=x.duration_ns,
        exit_code=x.exit_code,
        signal=x.signal,
        argv=None if x.argv is None else list(x.argv),
        argv_truncated=x.argv_truncated,
    )


def summary_of(tally: EventsTally, duration_ns: int, failed: bool) -> EventsSummary:
    """The summary of a reader that read for `duration_ns` (`failed`: with --failed)."""
    commands = sorted(
        tally.by_command.items(), key=lambda i: (-(i[1].forks + i[1].execs + i[1].exits), i[0])
    )
    counts = [c for _, c in commands] + [tally.others]
    return EventsSummary(
        duration_ns=duration_ns,
        forks=sum(c.forks for c in counts),
        execs=sum(c.execs for c in counts),
        exits=sum(c.exits for c in counts),
        by_command=[
            EventsCommand(comm=name, forks=c.forks, execs=c.execs, exits=c.exits)
            for name, c in commands
        ],
        failures=tally.failures,
        failed=[_ended(x) for x in tally.failed],
        failed_execs=tally.failed_execs if failed else None,
        failed_exec_list=[
            EventsFailedExec(pid=f.pid, comm=f.comm, filename=f.filename, errno=f.errno)
            for f in tally.failed_exec_list
        ],
        shortest=[_ended(x) for x in tally.shortest_lived()],
        longest=[_ended(x) for x in tally.longest_lived()],
        lost_records=tally.lost,
    )


def summary_text(
    s: EventsSummary, width: int | None = None, words: Callable[[Words], str] = plain
) -> str:
    """The summary for people (every line fits `width` when given: a terminal's)."""

    def name(comm: str) -> str:
        return render.printable(comm)

    def lived(head: str, ended: list[EventsEnded]) -> list[str]:
        lines = []
        for x in ended:
            line = f"  {head}: {name(x.comm)} (pid {x.pid}) {render.duration_text(x.duration_ns)}"
            if x.argv is None:
                lines.append(render.fit_if(line, width))
            else:
                lines.append(
                    render.with_command(line, render.cmdline(x.argv, x.argv_truncated), width)
                )
        return lines

    lines = [
        render.fit_if(
            f"{s.forks} fork(s), {s.execs} exec(s), {s.exits} exit(s) in "
            f"{render.duration_text(s.duration_ns)}, {s.failures} failed",
            width,
        )
    ]
    shown = s.by_command[:COMMANDS_SHOWN]
    if shown:
        lines.append(render.fit_if("  by command (forks/execs/exits):", width))
        lines += [
            render.fit_if(f"    {name(c.comm)} {c.forks}/{c.execs}/{c.exits}", width) for c in shown
        ]
        if len(s.by_command) > len(shown):
            lines.append(render.fit_if(f"    ... and {len(s.by_command) - len(shown)} more", width))
    lines += failed_lines(s.failed, s.failures, width, name)
    if s.failed_execs is not None:
        lines.append(render.fit_if(f"  failed execs: {s.failed_execs}", width))
        lines += [
            render.fit_if(
                f"    {name(x.comm)} (pid {x.pid}): {name(x.filename)}: {errno_name(x.errno)}",
                width,
            )
            for x in s.failed_exec_list
        ]
    lines += lived("shortest-lived", s.shortest[:1])
    lines += lived("longest-lived", s.longest[:1])
    lines += lost_lines(s.lost_records, width, words)
    return "\n".join(lines)
