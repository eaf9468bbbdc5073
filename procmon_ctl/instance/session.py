"""ReaderSession: what one reader keeps in the kernel while it reads.

- The leases: `--threads`, and the cgroup filter of `--cgroup`/`--container`, are
  leases in the `settings` map that the reader renews, never switches it must
  remember to turn off; a reader that dies by SIGKILL leaves thread streaming on,
  or the host's other processes kept out of the ring, for at most THREADS_LEASE_NS.
  A thread of the reader's own renews them, not its reading loop: a reader that is
  alive but stalled (blocked writing to a paused pager or a slow pipe, or starved
  of CPU) must keep the threads it asked for, which would otherwise go unrecorded
  without any gap to say so.
- The losses it has marked: LOSS_MARKED in the `losses` map, so that a sequence of
  readers marks every lost record exactly once (see enum loss_key).
- Whether its instance is still there: a pinned ring that was unloaded (or
  unloaded and loaded again) is a dead end, and the reader says so and stops."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from ..errors import StateError
from ..kernel import libbpf
from ..kernel.abi import LOSS_VALUE, SETTINGS, LossKey
from .settings import argv_bytes_of, settings_value

# Thread streaming outlives a reader that dies without cleaning up by at most this.
THREADS_LEASE_NS = 1_000_000_000
# The reader renews its lease this often.
RENEW_EVERY_NS = THREADS_LEASE_NS // 4
# How long after the reader writes its settings a record may still have been made
# under the old ones (a program reads them first, then stamps its record).
SETTINGS_SEEN_NS = 1_000_000
# How often a pinned reader checks that its ring is still the one pinned.
CHECK_SOURCE_EVERY_NS = 1_000_000_000

_KEY_DROPPED = LossKey.DROPPED.value.to_bytes(4, "little")
_KEY_MARKED = LossKey.MARKED.value.to_bytes(4, "little")
_SETTINGS_KEY = bytes(4)

# Whether the ring the reader has is still its instance's (Instance.still_there).
StillThere = Callable[[], bool]


class ReaderSession:
    """Owns two map fds (closed by close()); `gone` names the instance for the
    message when `still_there()` says it was unloaded."""

    def __init__(
        self,
        settings_fd: int,
        losses_fd: int,
        wakeup_bytes: int,
        follow: bool,
        threads: bool,
        still_there: StillThere | None = None,
        gone: str = "",
        cgroup: tuple[int, int] | None = None,
    ):
        self._settings_fd, self._losses_fd = settings_fd, losses_fd
        self._wakeup_bytes, self._follow, self.threads = wakeup_bytes, follow, threads
        self._cgroup = cgroup  # (id, level) of the cgroup filter
        self._leased = threads or cgroup is not None
        self._still_there, self._gone = still_there, gone
        # What `load` chose: the reader rewrites the value, and keeps this as it was.
        self._argv_bytes = argv_bytes_of(
            libbpf.map_lookup(settings_fd, _SETTINGS_KEY, SETTINGS.size)
        )
        self._checked = time.monotonic_ns()
        self.marked = self._saved = self._lookup(_KEY_MARKED)
        self._write_settings(time.monotonic_ns() + THREADS_LEASE_NS if self._leased else 0)
        # Records stamped from here on were made under these settings (the kernel's
        # cgroup filter): those before are the backlog.  A program that read the old
        # settings stamps its record within microseconds: the margin covers it.
        self.started_ns = time.monotonic_ns() + SETTINGS_SEEN_NS
        self._stop_renewing = threading.Event()
        self._renewer = None
        if self._leased:
            self._renewer = threading.Thread(target=self._renew, name="procmon-lease", daemon=True)
            self._renewer.start()

    def _renew(self) -> None:
        while not self._stop_renewing.wait(RENEW_EVERY_NS / 1e9):
            self._write_settings(time.monotonic_ns() + THREADS_LEASE_NS)

    def close(self) -> None:
        try:
            if self._renewer is not None:
                self._stop_renewing.set()
                self._renewer.join()
                # A thread storm should not fill the ring while nobody asked for
                # threads, nor the host's records be kept out once nobody filters.
                self._write_settings(0)
        finally:
            for fd in (self._settings_fd, self._losses_fd):
                os.close(fd)

    def __enter__(self) -> ReaderSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write_settings(self, until_ns: int) -> None:
        value = settings_value(
            until_ns if self.threads else 0,
            self._wakeup_bytes,
            self._follow,
            self._argv_bytes,
            self._cgroup if until_ns else None,
            until_ns,
        )
        libbpf.map_update(self._settings_fd, _SETTINGS_KEY, value)

    def _lookup(self, key: bytes) -> int:
        return LOSS_VALUE.unpack(libbpf.map_lookup(self._losses_fd, key, LOSS_VALUE.size))[0]

    def unmarked(self) -> int:
        """Losses the ring has counted that no gap line has reported yet.  Ask only
        when the reader has read everything: a record still unread carries its own."""
        return max(0, self._lookup(_KEY_DROPPED) - self.marked)

    def save_marked(self) -> None:
        """Record the gap lines written so far, before their records are committed:
        a reader killed in between repeats the batch, but not its gap lines."""
        if self.marked != self._saved:
            libbpf.map_update(self._losses_fd, _KEY_MARKED, LOSS_VALUE.pack(self.marked))
            self._saved = self.marked

    def tick(self) -> None:
        """Between batches: stop if the instance is gone."""
        now = time.monotonic_ns()
        if self._still_there is not None and now - self._checked >= CHECK_SOURCE_EVERY_NS:
            self._checked = now
            if not self._still_there():
                raise StateError(
                    f"{self._gone} was unloaded while this reader ran (it reads a ring "
                    "nobody writes any more): start the reader again once it is loaded"
                )
