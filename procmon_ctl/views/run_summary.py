"""The summary of a `run -- CMD` (a RunSummary) as people read it, after the rows
on stderr; `run --json` prints the model itself."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import Setting, Words, plain
from ..kernel.abi import FollowLimits
from . import render
from .schema import RunSummary
from .wrap import wrap

FOLLOWED_LIMIT = FollowLimits.FOLLOWED_MAX_PROCESSES.value

# On a terminal a process name is cut to the table's COMM column, so that a name of
# escapes (15 bytes that are not UTF-8 show as 60 columns) leaves room for the rest.
_NAME_SHOWN = 16


def summary_text(
    s: RunSummary, width: int | None = None, words: Callable[[Words], str] = plain
) -> str:
    """The summary for people.  With `width` (the terminal's the summary goes to)
    every line fits it: what varies in length is what is cut (a command line,
    ending in CUT) or counted (the names left off a list); the exit code and the
    counts are never cut; an INCOMPLETE line, which says what to do, is folded
    instead.  Without `width` (piped), every line whole."""

    def name(comm: str) -> str:
        shown = render.printable(comm)
        return shown if width is None else render.fit(shown, _NAME_SHOWN)

    # CMD's command line names what the summary is of; the outcome after it is the
    # part that matters, so on a terminal the command line gives way.
    status = f"exit code {s.exit_code}"
    if s.cmd_running:
        status = f"still running, not waited for after a second SIGINT ({status})"
    outcome = f": {status}, {s.processes} process(es) started in {render.duration_text(s.wall_ns)}"
    command = render.cmdline(s.command)
    if width is not None:
        command = render.fit(command, max(width - render.columns(outcome), render.MIN_COMMAND))
    lines = [render.fit_if(command + outcome, width)]
    if s.by_name:
        lines.append(
            _listed("  by name: ", [f"{name(n)} x{c}" for n, c in s.by_name.items()], width)
        )
    lines += failed_lines(s.failed, s.failures, width, name)
    if s.longest:
        top = s.longest[0]
        lines.append(
            render.fit_if(
                f"  longest-lived: {name(top.comm)} (pid {top.pid}) "
                f"{render.duration_text(top.duration_ns)}",
                width,
            )
        )
    lines += _cost_lines(s, name, width)
    if s.running:
        lines.append(
            _listed(
                "  still running: ", [f"{name(p.comm)} (pid {p.pid})" for p in s.running], width
            )
        )
    lines += lost_lines(s.lost_records, width, words)
    if s.unfollowed:
        lines += wrap(
            f"{s.unfollowed} process(es) of the tree not followed "
            f"(more than {FOLLOWED_LIMIT} at once)",
            width,
            "  INCOMPLETE: ",
            "    ",
        )
    return "\n".join(lines)


def _cost_lines(s: RunSummary, name: Callable[[str], str], width: int | None) -> list[str]:
    """Where the tree's CPU and memory went: the total (and wait4()'s for CMD,
    the kernel's own figure), the peak and when it ran, the costliest processes."""
    cost = s.cost
    if not cost.measured:
        return []
    cpu = render.duration_text(cost.cpu_user_ns + cost.cpu_system_ns)
    line = (
        f"  cpu: {cpu} (user {render.duration_text(cost.cpu_user_ns)}, "
        f"system {render.duration_text(cost.cpu_system_ns)})"
    )
    if cost.waited_cpu_user_ns is not None and cost.waited_cpu_system_ns is not None:
        waited = cost.waited_cpu_user_ns + cost.waited_cpu_system_ns
        line += f"; wait4() for CMD: {render.duration_text(waited)}"
    lines = [render.fit_if(line, width)]
    peak = cost.top_memory[0]
    span = f"{render.duration_text(peak.after_ns)} to "
    span += render.duration_text(peak.after_ns + peak.duration_ns)
    when = f", from {span} after CMD started"
    lines.append(
        render.fit_if(
            f"  peak memory: {render.memory_text(peak.max_rss_kib)}, {name(peak.comm)} "
            f"(pid {peak.pid}){when}",
            width,
        )
    )
    lines.append(
        _listed(
            "  most cpu: ",
            [
                f"{name(c.comm)} (pid {c.pid}) {render.duration_text(c.cpu_ns)}"
                for c in cost.top_cpu
            ],
            width,
        )
    )
    lines.append(
        _listed(
            "  most memory: ",
            [
                f"{name(c.comm)} (pid {c.pid}) {render.memory_text(c.max_rss_kib)}"
                for c in cost.top_memory
            ],
            width,
        )
    )
    return lines


def _listed(label: str, items: list[str], width: int | None) -> str:
    """label + items, comma-separated; on a terminal, the items that fit and then
    `… N more`, so a long list costs one line and says what it left off."""
    line = label + ", ".join(items)
    if width is None or render.columns(line) <= width:
        return line
    kept, used = 0, render.columns(label)
    # Keep one more item while it and the mark of the rest still fit.
    while kept < len(items) - 1:
        more = f", {render.CUT} {len(items) - kept - 1} more"
        if used + render.columns(items[kept]) + render.columns(more) > width:
            break
        used += render.columns(items[kept]) + 2
        kept += 1
    shown = [*items[:kept], f"{render.CUT} {len(items) - kept} more"]
    return render.fit(label + ", ".join(shown), width)


def lost_lines(lost: int, width: int | None, words: Callable[[Words], str]) -> list[str]:
    """A summary's INCOMPLETE lines when records were lost (none when none were)."""
    if not lost:
        return []
    text = (
        f"{lost} record(s) lost (the ring buffer was full; a larger ",
        Setting("ring_size"),
        " helps)",
    )
    return wrap(words(text), width, "  INCOMPLETE: ", "    ")


def failed_lines(
    failed: list, failures: int, width: int | None, name: Callable[[str], str]
) -> list[str]:
    """A summary's lines for the processes that failed (each with pid, comm, exit
    code or signal and argv), then how many more did."""
    lines = []
    for f in failed:
        how = (
            f"killed by {render.signal_text(f.signal)}" if f.signal else f"exit code {f.exit_code}"
        )
        head = f"  failed: {name(f.comm)} (pid {f.pid}): {how}"
        if f.argv is None:
            lines.append(render.fit_if(head, width))
        else:
            lines.append(render.with_command(head, render.cmdline(f.argv, f.argv_truncated), width))
    if failures > len(failed):
        lines.append(render.fit_if(f"  ... and {failures - len(failed)} more failed", width))
    return lines
