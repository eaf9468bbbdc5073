"""A reader that counts instead of writing: `serve`'s, one reader among others.

It has a slot of its own like any `events` (so it takes nothing from other readers
and their filters do not change what it counts), starts at "now" and leaves nothing
behind.  Each batch is decoded and handed to a StreamTally before its records are
handed back to the ring; what its ring had no room for is counted as lost."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..instance.base import Instance
from ..process.decode import decode_at
from ..process.tally import StreamTally
from .follow import StreamOptions, failed_exec_programs, offset_batches, open_reader


def count_records(
    source: Instance,
    opts: StreamOptions,
    tally: StreamTally,
    opened: Callable[[], None] | None = None,
) -> None:
    """Count the records of `source` into `tally` until --duration or a stop signal
    (or the instance's unloading: StateError from the session).  `opened` is
    called once the reader has its slot."""
    deadline = None if opts.duration is None else time.monotonic() + opts.duration
    with (
        open_reader(source, opts) as (reader, session),
        failed_exec_programs(source, opts, session.held),
    ):
        if opened is not None:
            opened()
        ring = reader.view
        for offsets in offset_batches(reader, deadline):
            if offsets:
                tally.add(decode_at(ring, off) for off in offsets)
                reader.commit(len(offsets))
            lost = session.unmarked()
            if lost:
                tally.add_lost(lost)
                session.marked += lost
                session.save_marked()
            session.tick()
