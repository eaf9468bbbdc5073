"""Stats and status: what the pinned maps count, and what is loaded and attached."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..instance.pins import MAPS, PROGRAMS, PinLayout
from ..kernel import signals
from ..kernel.abi import COUNTER_KEYS, COUNTER_NAMES
from ..kernel.system import require_root
from ..process.clock import rfc3339_utc

if TYPE_CHECKING:
    from ..views.schema import Stats, Status

# The counters `stats --watch` shows as rates.
RATE_FIELDS = ("processes", "threads", "execs", "exits", "dropped")


def read_stats(layout: PinLayout) -> Stats:
    """The seed's `bpftool map dump` of process_count, with the per-CPU counters
    beside it, parsed into the models."""
    from ..kernel import bpftool
    from ..views.schema import Stats

    require_root("reading BPF maps")
    layout.require_loaded()
    seed, counters = bpftool.map_dumps(layout.map("process_count"), layout.map("counters"))
    by_key = counters.by_key()
    values = {name: by_key.get(k, 0) for k, name in zip(COUNTER_KEYS, COUNTER_NAMES, strict=True)}
    return Stats(process_count=seed.by_key().get(0, 0), **values)


def stats_text(s: Stats) -> str:
    return "\n".join(f"{name:<14} {value}" for name, value in s.model_dump().items())


def stats_json(s: Stats, at: str) -> str:
    """`stats --json`: one compact line, "time" (when the counters were read) first."""
    return _compact({"time": at, **s.model_dump()})


def _compact(obj: dict) -> str:
    import json

    return json.dumps(obj, separators=(",", ":"))


def attach_warning(layout: PinLayout) -> str | None:
    """Why some counters cannot move: programs that are not attached (the counters
    count in the programs).  None when all are."""
    from ..cli import hints

    missing = [e for e in PROGRAMS if e not in layout.attached_events()]
    if not missing:
        return None
    if len(missing) == len(PROGRAMS):
        what = f"nothing attached at {layout.root}: the counters will not move"
    else:
        what = (
            f"{', '.join(missing)} not attached at {layout.root}: "
            f"{' and '.join(_COUNTED_BY[e] for e in missing)} will not be counted"
        )
    return f"{what} (run {hints.command('attach')})"


# What each program counts (the `stats` fields it moves).
_COUNTED_BY = {
    "fork": "processes and threads",
    "exec": "execs",
    "exit": "exits",
}


@dataclass
class Sample:
    """One `stats --watch` line: the rates per second over the interval that ended
    at `unix_ns` (the wall clock when the counters were read), and the totals then."""

    unix_ns: int
    seconds: float  # the interval measured (the monotonic clock), not the one asked for
    rates: dict[str, float]
    totals: Stats


def watch(
    layout: PinLayout, interval: float, sleep: Callable[[float], None] = time.sleep
) -> Iterator[Sample]:
    """A Sample every `interval` seconds, forever.  The first reading is taken at
    once, so a missing instance fails before any output."""
    return _samples(layout, interval, sleep, read_stats(layout), time.monotonic())


def _samples(
    layout: PinLayout,
    interval: float,
    sleep: Callable[[float], None],
    prev: Stats,
    t_prev: float,
) -> Iterator[Sample]:
    before = prev.model_dump()
    while True:
        sleep(interval)
        # A checkpoint each line: a stop whose raise was swallowed ends the loop here.
        signals.raise_if_stopped()
        cur, now, unix_ns = read_stats(layout), time.monotonic(), time.time_ns()
        after, seconds = cur.model_dump(), now - t_prev
        rates = {f: (after[f] - before[f]) / seconds for f in RATE_FIELDS}
        yield Sample(unix_ns, seconds, rates, cur)
        before, t_prev = after, now


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


def read_status(layout: PinLayout) -> Status:
    from ..kernel import bpftool
    from ..views.schema import ProgramStatus, Status

    require_root("reading BPF pins")
    if not layout.root.exists():
        return Status(pin_dir=str(layout.root), loaded=False)
    layout.check_pins()
    programs = []
    for event in PROGRAMS:
        prog_pin, link_pin = layout.prog(event), layout.link(event)
        prog_id = bpftool.prog_show(prog_pin).id if prog_pin.exists() else None
        link = bpftool.link_show(link_pin) if link_pin.exists() else None
        programs.append(
            ProgramStatus(
                event=event,
                pin=str(prog_pin),
                id=prog_id,
                attached=link is not None,
                link_id=link.id if link else None,
                link_pin=str(link_pin) if link else None,
            )
        )
    maps, ring_size = {}, None
    for name in MAPS:
        if layout.map(name).exists():
            info = bpftool.map_show(layout.map(name))
            maps[name] = info.id
            if name == "events":
                ring_size = info.max_entries
    return Status(
        pin_dir=str(layout.root),
        loaded=layout.is_loaded(),
        programs=programs,
        maps=maps,
        ring_size=ring_size,
    )


def status_text(s: Status, width: int | None = None) -> str:
    """The pin dir once, then aligned tables of the programs and the maps, their
    pins relative to it; ids only in --json (bpftool takes a pin path as well).
    `width`: a terminal's, to cut a pin dir too long for it (with render.CUT);
    None (piped): the whole path."""
    from ..views.render import fit

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
        lines.append(f"ring buffer: {_size_text(s.ring_size)}")
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
