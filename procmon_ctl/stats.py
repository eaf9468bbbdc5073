"""Stats and status: what the pinned maps count, and what is loaded and attached."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .decode import COUNTER_NAMES
from .errors import BpfError, StateError
from .pins import MAPS, PROGRAMS, PinLayout
from .system import require_root

if TYPE_CHECKING:
    from .models import Stats, Status

# `stats` reads the maps through libbpf (a few syscalls) rather than bpftool through
# sh (two processes, and sh and the models to import): it answers in a fraction of
# the time.  bpftool, sh and pydantic models are imported only by what needs them.


def read_counters(layout: PinLayout) -> dict[str, int]:
    """The Stats fields, in order: process_count, then the per-CPU counters summed."""
    from . import libbpf

    require_root("reading BPF maps")
    if not layout.map("counters").exists():
        raise StateError(f"nothing loaded at {layout.root}: run `procmon-ctl load` first")
    values = {}
    try:
        fd = libbpf.obj_get(layout.map("process_count"))
        try:
            values["process_count"] = libbpf.array_u64(fd, 0)
        finally:
            os.close(fd)
        fd = libbpf.obj_get(layout.map("counters"))
        try:
            sums = libbpf.percpu_array_sums(fd, range(len(COUNTER_NAMES)))
        finally:
            os.close(fd)
    except libbpf.LibbpfError as err:
        if libbpf.is_not_found(err):
            raise StateError(f"{layout.root} is not completely loaded ({err}): "
                             "run `procmon-ctl unload`, then `procmon-ctl load`") from None
        raise BpfError(f"reading the counters at {layout.maps_dir}: {err}") from None
    values.update(zip(COUNTER_NAMES, sums, strict=True))
    return values


def read_stats(layout: PinLayout) -> Stats:
    from .models import Stats

    return Stats(**read_counters(layout))


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
        programs.append(ProgramStatus(
            event=event, pin=str(prog_pin), id=prog_id, attached=link is not None,
            link_id=link.id if link else None, link_pin=str(link_pin) if link else None,
        ))
    maps, ring_size = {}, None
    for name in MAPS:
        if layout.map(name).exists():
            info = bpftool.map_show(layout.map(name))
            maps[name] = info.id
            if name == "events":
                ring_size = info.max_entries
    return Status(
        pin_dir=str(layout.root), loaded=layout.is_loaded(), programs=programs, maps=maps,
        ring_size=ring_size,
    )
