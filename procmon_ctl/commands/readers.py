"""`readers`: the readers of the pinned instance, as models, and the removal of a
named reader's place.  `status` and `stats` list them the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MissingError
from ..instance.pinned import PinnedInstance
from ..instance.readers import ReaderSlots, ReaderState
from ..kernel.system import require_root

if TYPE_CHECKING:
    from ..instance.base import Instance
    from ..views.stats_schema import ReaderStatus


def read_readers(pinned: PinnedInstance) -> list[ReaderStatus]:
    require_root("reading BPF maps")
    pinned.require_loaded()
    return reader_statuses(pinned)


def reader_statuses(instance: Instance) -> list[ReaderStatus]:
    """Every reader of the instance, by slot (slots whose reader has ended are
    freed first)."""
    return _statuses(ReaderSlots(instance).states())


def _statuses(states: list[ReaderState]) -> list[ReaderStatus]:
    from ..views.stats_schema import ReaderStatus

    paths = _cgroup_paths({s.cgroup_id for s in states if s.cgroup_id is not None})
    return [
        ReaderStatus(
            slot=s.slot,
            name=s.name,
            pid=s.pid,
            threads=s.threads,
            failed=s.failed,
            cgroup_id=s.cgroup_id,
            cgroup=paths.get(s.cgroup_id) if s.cgroup_id is not None else None,
            argv_bytes=s.argv_bytes,
            ring_size=s.ring_size,
            waiting_bytes=s.waiting,
            produced=s.produced,
            delivered=s.delivered,
            dropped=s.dropped,
            filtered=s.filtered,
        )
        for s in states
    ]


def _cgroup_paths(ids: set[int]) -> dict[int, str | None]:
    """The paths of the cgroups readers filter by (None: gone, or no cgroup v2
    mount to find them on)."""
    if not ids:
        return {}
    from ..process.cgroups import CgroupNames

    try:
        names = CgroupNames()
    except MissingError:
        return dict.fromkeys(ids)
    return {i: names.lookup(i).path for i in ids}


def remove_reader(pinned: PinnedInstance, name: str) -> ReaderStatus:
    """Free the slot of the named reader `name` (which must be down): what it was
    just before."""
    require_root("removing a reader")
    pinned.require_loaded()
    return _statuses([ReaderSlots(pinned).remove(name)])[0]
