"""Stats and status: what the pinned maps count, and what is loaded and attached."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decode import COUNTER_NAMES
from .errors import StateError
from .pins import MAPS, PROGRAMS, PinLayout
from .system import require_root

if TYPE_CHECKING:
    from .models import Stats, Status


def read_stats(layout: PinLayout) -> Stats:
    """The seed's `bpftool map dump` of process_count, with the per-CPU counters
    beside it, parsed into the models."""
    from . import bpftool
    from .models import Stats

    require_root("reading BPF maps")
    if not layout.map("counters").exists():
        raise StateError(f"nothing loaded at {layout.root}: run `procmon-ctl load` first")
    seed, counters = bpftool.map_dumps(layout.map("process_count"), layout.map("counters"))
    by_key = counters.by_key()
    values = {name: by_key.get(i, 0) for i, name in enumerate(COUNTER_NAMES)}
    return Stats(process_count=seed.by_key().get(0, 0), **values)


def read_status(layout: PinLayout) -> Status:
    from . import bpftool
    from .models import ProgramStatus, Status

    require_root("reading BPF pins")
    if not layout.root.exists():
        return Status(pin_dir=str(layout.root), loaded=False)
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
