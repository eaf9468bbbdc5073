"""The readers of an instance as people read them: the table of `readers` and
`status`, and what `readers rm` says it removed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernel.abi import ArgvLimits

if TYPE_CHECKING:
    from .stats_schema import ReaderStatus

HEADINGS = (
    "SLOT",
    "NAME",
    "PID",
    "RING",
    "WAITING",
    "DELIVERED",
    "DROPPED",
    "FILTERED",
    "FILTERS",
)
# On a terminal too narrow for the whole table, FILTERS and then NAME are cut, down
# to these widths (the figures never are); piped, every cell is whole.
_FILTERS_MIN = 8
_NAME_MIN = 6


def readers_lines(readers: list[ReaderStatus], width: int | None = None) -> list[str]:
    """A table, one row per reader, or the one line that says there is none.
    `width`: a terminal's, to cut NAME and FILTERS to (None: piped, whole)."""
    if not readers:
        return ["readers: none"]
    from .render import columns, fit, printable

    rows = [HEADINGS, *(_row(r) for r in readers)]
    rows = [(*row[:-1], printable(row[-1])) for row in rows]  # a cgroup path is anyone's
    widths = [max(columns(row[i]) for row in rows) for i in range(len(HEADINGS))]
    if width is not None:
        _narrow(widths, width)
    lines = []
    for row in rows:
        cells = [fit(cell, w) for cell, w in zip(row, widths, strict=True)]
        padded = [c + " " * (w - columns(c)) for c, w in zip(cells[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]))
    return lines


def _narrow(widths: list[int], width: int) -> None:
    """Cut FILTERS (the last column), then NAME, so the table fits `width` if it can."""
    over = sum(widths) + 2 * (len(widths) - 1) - width
    for column, least in ((len(widths) - 1, _FILTERS_MIN), (HEADINGS.index("NAME"), _NAME_MIN)):
        if over <= 0:
            return
        cut = min(over, max(widths[column] - max(least, len(HEADINGS[column])), 0))
        widths[column] -= cut
        over -= cut


def _row(r: ReaderStatus) -> tuple[str, ...]:
    return (
        str(r.slot),
        r.name or "-",
        "down" if r.pid is None else str(r.pid),
        short_size(r.ring_size),
        waiting_text(r.waiting_bytes, r.ring_size),
        str(r.delivered),
        str(r.dropped),
        str(r.filtered),
        filters_text(r),
    )


def filters_text(r: ReaderStatus) -> str:
    """What the reader asks for besides every process's fork, exec and exit."""
    wants = [w for w, on in (("threads", r.threads), ("failed", r.failed)) if on]
    if r.cgroup_id is not None:
        wants.append(f"cgroup {r.cgroup}" if r.cgroup else f"cgroup id {r.cgroup_id} (gone)")
    if r.argv_bytes != ArgvLimits.ARGV_DEFAULT_BYTES:  # the usual bound goes unsaid
        wants.append(f"argv {short_size(r.argv_bytes)}" if r.argv_bytes else "no argv")
    return ", ".join(wants) or "-"


def short_size(size: int) -> str:
    """A size in a table cell, in units of 1024: 4M, 256K, 2.4K, 600B."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size // scale}{unit}" if size % scale == 0 else f"{size / scale:.1f}{unit}"
    return f"{size}B"


def waiting_text(waiting: int, ring_size: int) -> str:
    """What waits in a ring, and how full that makes it: "12.8K 1%"."""
    if not ring_size:
        return short_size(waiting)
    percent = 100 * waiting // ring_size  # down: 100% only when it is full
    shown = "<1%" if waiting and not percent else f"{percent}%"
    return f"{short_size(waiting)} {shown}"


def removed_text(r: ReaderStatus) -> str:
    """`readers rm NAME`'s line: what went with the reader's place."""
    # Bytes, whatever the size: the line reads alike for 900 bytes and 9 MiB.
    return f"removed the reader {r.name} ({r.waiting_bytes} bytes unread in its ring)"
