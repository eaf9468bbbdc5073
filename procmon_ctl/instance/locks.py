"""The two locks of a pin dir, files in /run/procmon-ctl (state_dir.py): `admin`,
held while pins are made or removed, and `reader`, held by the one reader of the
ring.  Each is removed by whoever holds it when it finds no pin dir left (_take)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import Command, StateError, Words
from .pins import PinLayout
from .state_dir import LOCK_DIR, own_state_dir, state_file


@dataclass(frozen=True)
class PinLocks:
    layout: PinLayout

    def paths(self) -> list[Path]:
        """The lock files of this pin dir: admin, reader."""
        return [self.path(kind) for kind in ("admin", "reader")]

    def path(self, kind: str) -> Path:
        """The lock file of `kind` ("admin" or "reader")."""
        return state_file(self.layout.root, f".{kind}.lock")

    @contextmanager
    def _holding(self, kind: str, wait: bool) -> Iterator[bool]:
        """Hold the `kind` lock (waiting for it, or not); yields whether it is held.
        On leaving, a lock whose pin dir is gone is removed: nobody needs it, and
        whoever waits on the removed file notices and takes the new one (_take)."""
        path = self.path(kind)
        fd = _take(path, wait)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                try:
                    if not self.layout.root.exists():
                        path.unlink(missing_ok=True)
                finally:
                    os.close(fd)

    @contextmanager
    def _lock(self, kind: str, busy_message: Words | None) -> Iterator[None]:
        with self._holding(kind, wait=busy_message is None) as held:
            if not held:
                raise StateError(busy_message)
            yield

    def admin(self):
        """Held while pins are made or removed, so two shells never interleave."""
        return self._lock("admin", None)

    def reader(self):
        """Held by the one reader of the ring buffer: its consumer position is shared,
        so two readers would each silently get part of the stream."""
        return self._lock(
            "reader",
            (
                f"another reader is already reading {self.layout.map('events')}: stop it first, "
                "or get a stream of your own from a private instance with ",
                Command("run"),
                " (one reader at a time consumes a ring buffer)",
            ),
        )

    def reader_free(self):
        """Holds the reader lock if no reader does; yields whether it does (`unload`
        asks before it removes a ring someone reads)."""
        return self._holding("reader", wait=False)

    def reader_pid(self) -> int | None:
        """The process that holds the reader lock, from /proc/locks."""
        try:
            inode = os.stat(self.path("reader")).st_ino
            with open("/proc/locks") as f:
                for line in f:
                    fields = line.split()
                    if "FLOCK" in fields and fields[-3].endswith(f":{inode}"):
                        return int(fields[-4])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def remove_legacy(self) -> None:
        """Lock files of this pin dir under the names older procmon-ctl versions gave
        them (the escaped path); removed when nobody holds them."""
        name = str(self.layout.root).strip("/").replace("%", "%25").replace("_", "%5F")
        for kind in ("admin", "reader"):
            path = LOCK_DIR / (name.replace("/", "_") + f".{kind}.lock")
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue  # absent, or a name too long to have been made
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _is_file_at(fd, path):
                    path.unlink()
            except OSError:
                pass
            finally:
                os.close(fd)


def _take(path: Path, wait: bool) -> int | None:
    """An fd holding the flock of the file at `path`; None when another holds it and
    wait is False."""
    own_state_dir()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # The holder before us may have removed the file (its pin dir was gone): a
        # lock on that orphan excludes nobody, so take the file now at the path.
        if _is_file_at(fd, path):
            return fd
        os.close(fd)


def _is_file_at(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)
