"""ReaderSession: what one reader keeps track of while it reads its slot.

- The losses it has marked: READER_LOSS_MARKED of its slot, so that every record
  its ring refused is marked in its stream exactly once, across restarts of a named
  reader (see enum reader_loss).
- Whether its instance is still there: a slot of an instance that was unloaded (or
  unloaded and loaded again) is a dead end, and the reader says so and stops.
- Between batches, whatever else must be looked at now and then (`every_second`:
  the cgroup a `--cgroup`/`--container` filter follows, made anew).

Nothing here lapses while the reader lives: its settings are its slot's, and the
kernel drops them only when its process ends (readers.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ..errors import StateError
from .readers import HeldSlot

# How often a reader checks that its instance is still the one pinned.
CHECK_SOURCE_EVERY_NS = 1_000_000_000

# Whether the slot the reader has is still its instance's (Instance.still_there).
StillThere = Callable[[int], bool]


class ReaderSession:
    """Owns an fd of the instance's `rings` map (closed by close()); `gone` names
    the instance for the message when it was unloaded."""

    def __init__(
        self,
        held: HeldSlot,
        rings_fd: int,
        still_there: StillThere | None = None,
        gone: str = "",
        every_second: Callable[[], None] | None = None,
    ):
        self.held = held
        self._rings_fd = rings_fd
        self._still_there, self._gone = still_there, gone
        self._every_second = every_second
        self._checked = time.monotonic_ns()
        self.marked = self._saved = held.marked()

    def close(self) -> None:
        if self._rings_fd >= 0:
            os.close(self._rings_fd)
            self._rings_fd = -1

    def __enter__(self) -> ReaderSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def unmarked(self) -> int:
        """Losses the ring has counted that no gap line has reported yet.  Ask only
        when the reader has read everything: a record still unread carries its own."""
        return max(0, self.held.dropped() - self.marked)

    def save_marked(self) -> None:
        """Record the gap lines written so far, before their records are committed:
        a reader killed in between repeats the batch, but not its gap lines."""
        if self.marked != self._saved:
            self.held.save_marked(self.marked)
            self._saved = self.marked

    def tick(self) -> None:
        """Between batches: stop if the instance is gone."""
        now = time.monotonic_ns()
        if now - self._checked < CHECK_SOURCE_EVERY_NS:
            return
        self._checked = now
        if self._still_there is not None and not self._still_there(self._rings_fd):
            raise StateError(
                f"{self._gone} was unloaded while this reader ran (it reads a ring "
                "nobody writes any more): start the reader again once it is loaded"
            )
        if self._every_second is not None:
            self._every_second()
