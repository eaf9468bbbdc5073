"""`stats` and `status` as people and log shippers read them: the counters as
aligned lines or one compact JSON line, `stats --watch`'s rate lines, and the
status tables."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..instance.pins import PinLayout
from ..process.clock import rfc3339_utc
from .readers import readers_lines

if TYPE_CHECKING:
    from .stats_schema import ReaderStatus, Stats, Status

# The counters `stats --watch` shows as rates.
RATE_FIELDS = ("processes", "threads", "execs", "exits", "dropped")


@dataclass
class Sample:
    """One `stats --watch` line: the rates per second over the interval that ended
    at `unix_ns` (the wall clock when the counters were read), and the totals then."""

    unix_ns: int
    seconds: float  # the interval measured (the monotonic clock), not the one asked for
    rates: dict[str, float]
    totals: Stats


def stats_text(s: Stats) -> str:
    return "\n".join(f"{name:<14} {value}" for name, value in s.model_dump().items())


def stats_json(s: Stats, at: str, readers: list[ReaderStatus] | None = None) -> str:
    """`stats --json`: one compact line, "time" (when the counters were read) first,
    then the totals, then (when given) "readers": each reader's figures."""
    obj = {"time": at, **s.model_dump()}
    if readers is not None:
        obj["readers"] = [r.model_dump() for r in readers]
    return _compact(obj)


def _compact(obj: dict) -> str:
    import json

    return json.dumps(obj, separators=(",", ":"))


# TIME (local, to the second) then one column per rate: 78 columns.
_RATE_WIDTH = 12


def rates_header() -> str:
    return f"{'TIME':<8}  " + "  ".join(f"{f + '/s':>{_RATE_WIDTH}}" for f in RATE_FIELDS)


def rates_text(sample: Sample) -> str:
    at = time.strftime("%H:%M:%S", time.localtime(sample.unix_ns // 1_000_000_000))
    return f"{at:<8}  " + "  ".join(f"{sample.rates[f]:>{_RATE_WIDTH}.1f}" for f in RATE_FIELDS)


def rates_json(sample: Sample) -> str:
    """`stats --watch --json`: one compact line per interval: "time" (when the
    counters were read), "interval_s" (seconds since the reading before), the rates
    per second over it ("<field>_per_s"), then every total as `stats --json` has it,
    so a shipper needs no other source and a missed line loses no count."""
    return _compact(
        {
            "time": rfc3339_utc(sample.unix_ns),
            "interval_s": round(sample.seconds, 3),
            **{f"{k}_per_s": round(v, 1) for k, v in sample.rates.items()},
            **sample.totals.model_dump(),
        }
    )


def status_text(s: Status, width: int | None = None) -> str:
    """The pin dir once, then aligned tables of the programs and the maps, their
    pins relative to it; ids only in --json (bpftool takes a pin path as well).
    `width`: a terminal's, to cut a pin dir too long for it (with render.CUT);
    None (piped): the whole path."""
    from .render import fit

    state = "loaded" if s.loaded else "not loaded"
    pin_dir = s.pin_dir
    if width is not None:
        pin_dir = fit(pin_dir, max(width - len(f"pin dir:  ({state})"), 12))
    lines = [f"pin dir: {pin_dir} ({state})"]
    root = Path(s.pin_dir)
    if s.programs:
        rows = [("EVENT", "STATE", "PROGRAM", "LINK")]
        for p in s.programs:
            status = "attached" if p.attached else "not attached"
            if p.id is None:
                status = "no program"
            link = _relative(p.link_pin, root) if p.link_pin else "-"
            rows.append((p.event, status, _relative(p.pin, root), link))
        lines += _table(rows)
    if s.maps:
        pins = PinLayout(root)
        maps = ((name, _relative(str(pins.map(name)), root)) for name in s.maps)
        lines += _table([("MAP", "PIN"), *maps])
    if s.ring_size:
        lines.append(f"ring buffer: {_size_text(s.ring_size)} for each reader")
    if s.loaded and s.ring_size:
        lines += readers_lines(s.readers, width)
    return "\n".join(lines)


def _relative(pin: str, root: Path) -> str:
    try:
        return str(Path(pin).relative_to(root))
    except ValueError:  # not below the pin dir: whole
        return pin


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


def _size_text(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit} ({size} bytes)"
    return f"{size} bytes"
