"""The readers of an instance as people read them: the table of `readers` and
`status`, and what `readers rm` says it removed."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schema import ReaderStatus

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
# The narrowest FILTERS column cut to a terminal's width still shows.
_FILTERS_MIN = 12


def readers_lines(readers: list[ReaderStatus], width: int | None = None) -> list[str]:
    """A table, one row per reader (its FILTERS cut to a terminal's `width`; None:
    whole), or the one line that says there is none."""
    if not readers:
        return ["readers: none"]
    from .render import fit, printable

    rows = [HEADINGS, *(_row(r) for r in readers)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS) - 1)]
    room = None if width is None else max(width - sum(w + 2 for w in widths), _FILTERS_MIN)
    lines = []
    for row in rows:
        filters = printable(row[-1])
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, filters if room is None else fit(filters, room)]))
    return lines


def _row(r: ReaderStatus) -> tuple[str, ...]:
    return (
        str(r.slot),
        r.name or "-",
        "down" if r.pid is None else str(r.pid),
        size_text(r.ring_size),
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
    return ", ".join(wants) or "-"


def size_text(size: int) -> str:
    """A ring's size, short: 4 MiB, 256 KiB, 1.5 MiB, 600 B."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            figure = size / scale
            return f"{figure:.0f} {unit}" if size % scale == 0 else f"{figure:.1f} {unit}"
    return f"{size} B"


def waiting_text(waiting: int, ring_size: int) -> str:
    """What waits in a ring, and how full that makes it: "12.0 KiB 1%"."""
    if not ring_size:
        return size_text(waiting)
    percent = 100 * waiting / ring_size
    shown = "<1%" if 0 < percent < 1 else f"{percent:.0f}%"
    return f"{size_text(waiting)} {shown}"


def removed_text(r: ReaderStatus) -> str:
    """`readers rm NAME`'s line: what went with the reader's place."""
    what = f"removed the reader {r.name}"
    if r.waiting_bytes:
        return f"{what} and the {size_text(r.waiting_bytes)} its ring held unread"
    return what
