"""Stats and status: what the pinned maps count, and what is loaded and attached."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..instance.pinned import PinnedInstance
from ..instance.pins import MAPS, PROGRAMS
from ..kernel import signals
from ..kernel.abi import COUNTER_NAMES
from ..kernel.system import require_root
from ..views.stats import RATE_FIELDS, Sample

if TYPE_CHECKING:
    from ..errors import Words
    from ..views.stats_schema import Stats, Status


def read_stats(pinned: PinnedInstance) -> Stats:
    """The seed's process_count, with the per-CPU counters beside it, in the model."""
    from ..views.stats_schema import Stats

    require_root("reading BPF maps")
    pinned.require_loaded()
    counters = pinned.counters()
    return Stats(process_count=counters["process_count"], **{n: counters[n] for n in COUNTER_NAMES})


def attach_warning(pinned: PinnedInstance) -> Words | None:
    """Why some counters cannot move: programs that are not attached (the counters
    count in the programs).  None when all are."""
    from ..errors import Command, Setting

    missing = [e for e in PROGRAMS if e not in pinned.attached_events()]
    if not missing:
        return None
    counting = [e for e in missing if e in _COUNTED_BY]
    if len(missing) == len(PROGRAMS):
        what: tuple = (f"nothing attached at {pinned.root}: the counters will not move",)
    elif counting:
        what = (
            f"{', '.join(counting)} not attached at {pinned.root}: "
            f"{' and '.join(_COUNTED_BY[e] for e in counting)} will not be counted",
        )
    else:  # cgroup alone: it counts nothing
        what = (
            f"cgroup not attached at {pinned.root}: the filter of a ",
            Setting("cgroup"),
            " or ",
            Setting("container"),
            " reader follows its cgroup made anew only as that reader looks it up again",
        )
    return (*what, " (run ", Command("attach"), ")")


# What each program counts (the `stats` fields it moves).
_COUNTED_BY = {
    "fork": "processes and threads",
    "exec": "execs",
    "exit": "exits",
}


def watch(
    pinned: PinnedInstance, interval: float, sleep: Callable[[float], None] = time.sleep
) -> Iterator[Sample]:
    """A Sample every `interval` seconds, forever.  The first reading is taken at
    once, so a missing instance fails before any output."""
    return _samples(pinned, interval, sleep, read_stats(pinned), time.monotonic())


def _samples(
    pinned: PinnedInstance,
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
        cur, now, unix_ns = read_stats(pinned), time.monotonic(), time.time_ns()
        after, seconds = cur.model_dump(), now - t_prev
        rates = {f: (after[f] - before[f]) / seconds for f in RATE_FIELDS}
        yield Sample(unix_ns, seconds, rates, cur)
        before, t_prev = after, now


def read_status(pinned: PinnedInstance) -> Status:
    from ..instance.pin_fds import id_of
    from ..instance.readers import ReaderSlots
    from ..views.stats_schema import ProgramStatus, Status
    from .readers import reader_statuses

    require_root("reading BPF pins")
    layout = pinned.layout
    if not layout.root.exists():
        return Status(pin_dir=str(layout.root), loaded=False)
    pinned.identity.check_pins()

    # Each id through libbpf on the pin, as check_pins reads them: no bpftool process
    # per pin (up to fifteen, and sh imported for them).
    def pinned_id(pin: Path, kind: str) -> int | None:
        return id_of(layout, str(pin.relative_to(layout.root)), kind) if pin.exists() else None

    programs = []
    for event in PROGRAMS:
        prog_pin, link_pin = layout.prog(event), layout.link(event)
        link_id = pinned_id(link_pin, "link")
        programs.append(
            ProgramStatus(
                event=event,
                pin=str(prog_pin),
                id=pinned_id(prog_pin, "prog"),
                attached=link_id is not None,
                link_id=link_id,
                link_pin=str(link_pin) if link_id is not None else None,
            )
        )
    maps = {}
    for name in MAPS:
        map_id = pinned_id(layout.map(name), "map")
        if map_id is not None:
            maps[name] = map_id
    ring_size, readers = None, []
    if layout.is_complete():
        ring_size = ReaderSlots(pinned).new_ring_size()
        readers = reader_statuses(pinned)
    return Status(
        pin_dir=str(layout.root),
        loaded=layout.is_loaded(),
        programs=programs,
        maps=maps,
        ring_size=ring_size,
        readers=readers,
    )
