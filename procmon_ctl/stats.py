"""Stats and status: what the pinned maps count, and what is loaded and attached."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from . import signals
from .abi import COUNTER_KEYS, COUNTER_NAMES
from .pins import MAPS, PROGRAMS, PinLayout
from .system import require_root

if TYPE_CHECKING:
    from .models import Stats, Status

# The counters `stats --watch` shows as rates.
RATE_FIELDS = ("processes", "threads", "execs", "exits", "dropped")


def read_stats(layout: PinLayout) -> Stats:
    """The seed's `bpftool map dump` of process_count, with the per-CPU counters
    beside it, parsed into the models."""
    from . import bpftool
    from .models import Stats

    require_root("reading BPF maps")
    layout.require_loaded()
    seed, counters = bpftool.map_dumps(layout.map("process_count"), layout.map("counters"))
    by_key = counters.by_key()
    values = {name: by_key.get(k, 0) for k, name in zip(COUNTER_KEYS, COUNTER_NAMES, strict=True)}
    return Stats(process_count=seed.by_key().get(0, 0), **values)


def stats_text(s: Stats) -> str:
    return "\n".join(f"{name:<14} {value}" for name, value in s.model_dump().items())


def watch_rates(
    layout: PinLayout, interval: float, sleep: Callable[[float], None] = time.sleep
) -> Iterator[dict[str, float]]:
    """Per-second rates of RATE_FIELDS, one dict every `interval` seconds, forever.
    The first reading is taken at once, so a missing instance fails before any output."""
    return _rates(layout, interval, sleep, read_stats(layout).model_dump(), time.monotonic())


def _rates(
    layout: PinLayout,
    interval: float,
    sleep: Callable[[float], None],
    prev: dict[str, int],
    t_prev: float,
) -> Iterator[dict[str, float]]:
    while True:
        sleep(interval)
        # A checkpoint each line: a stop whose raise was swallowed ends the loop here.
        signals.raise_if_stopped()
        cur, now = read_stats(layout).model_dump(), time.monotonic()
        yield {f: (cur[f] - prev[f]) / (now - t_prev) for f in RATE_FIELDS}
        prev, t_prev = cur, now


def rates_header() -> str:
    return "  ".join(f"{f + '/s':>12}" for f in RATE_FIELDS)


def rates_text(rates: dict[str, float]) -> str:
    return "  ".join(f"{rates[f]:>12.1f}" for f in RATE_FIELDS)


def rates_json(rates: dict[str, float]) -> str:
    import json

    return json.dumps({f"{k}_per_s": round(v, 1) for k, v in rates.items()})


def read_status(layout: PinLayout) -> Status:
    from . import bpftool
    from .models import ProgramStatus, Status

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


def status_text(s: Status) -> str:
    lines = [f"pin dir: {s.pin_dir} ({'loaded' if s.loaded else 'not loaded'})"]
    for p in s.programs:
        link = f"attached, link {p.link_id} ({p.link_pin})" if p.attached else "not attached"
        lines.append(f"  {p.event:<5} program {p.id} ({p.pin}): {link}")
    for name, map_id in s.maps.items():
        lines.append(f"  map {name:<14} id {map_id}")
    if s.ring_size:
        lines.append(f"  ring buffer: {s.ring_size} bytes")
    return "\n".join(lines)
