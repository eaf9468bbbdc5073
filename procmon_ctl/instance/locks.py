"""The locks of a pin dir, files in /run/procmon-ctl (state_dir.py): `admin`, held
while pins are made or removed and while readers take or leave their slots, and
one per reader slot, held by the process reading it for as long as it reads, so
that a slot whose lock nobody holds has no reader, however its reader ended.
Each is removed by whoever holds it when it finds no pin dir left (_take)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..kernel.abi import ReaderLimits
from .pins import PinLayout
from .state_dir import LOCK_DIR, own_state_dir, state_file


@dataclass(frozen=True)
class PinLocks:
    layout: PinLayout

    def paths(self) -> list[Path]:
        """The lock files of this pin dir: admin, one per reader slot, and the one
        reader lock of versions before reader slots."""
        slots = [self.path(f"reader-{n}") for n in range(READERS_MAX)]
        return [self.path("admin"), *slots, self.path("reader")]

    def path(self, kind: str) -> Path:
        """The lock file of `kind` ("admin", "reader-N")."""
        return state_file(self.layout.root, f".{kind}.lock")

    @contextmanager
    def _holding(self, kind: str, wait: bool) -> Iterator[bool]:
        """Hold the `kind` lock (waiting for it, or not); yields whether it is held.
        On leaving, a lock whose pin dir is gone is removed: nobody needs it, and
        whoever waits on the removed file notices and takes the new one (_take)."""
        fd = _take(self.path(kind), wait)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                self._release(kind, fd)

    def _release(self, kind: str, fd: int) -> None:
        try:
            if not self.layout.root.exists():
                self.path(kind).unlink(missing_ok=True)
        finally:
            os.close(fd)

    @contextmanager
    def admin(self) -> Iterator[None]:
        """Held while pins are made or removed and reader slots taken or freed, so
        two shells never interleave."""
        with self._holding("admin", wait=True):
            yield

    def hold_slot(self, slot: int) -> SlotHold | None:
        """The lock of reader slot `slot`, held until the SlotHold is closed (or its
        process ends, however it ends); None when another process holds it."""
        kind = f"reader-{slot}"
        fd = _take(self.path(kind), wait=False)
        return None if fd is None else SlotHold(self, kind, fd)

    def slot_in_use(self, slot: int) -> bool:
        """Whether a process holds the lock of reader slot `slot`.  Asked under the
        admin lock, under which alone slots are taken: a slot with no lock file has
        no reader, and looking makes no file that unload would leave behind."""
        if not self.path(f"reader-{slot}").exists():
            return False
        with self._holding(f"reader-{slot}", wait=False) as free:
            return not free

    def remove_slot_files(self) -> None:
        """Once the pin dir is gone: the lock files of the slots nobody holds (taking
        one removes it, _release); a reader still holding one removes it as it ends."""
        for slot in range(READERS_MAX):
            self.slot_in_use(slot)

    def slot_holder(self, slot: int) -> int | None:
        """The process that holds reader slot `slot`'s lock, from /proc/locks."""
        try:
            inode = os.stat(self.path(f"reader-{slot}")).st_ino
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


@dataclass
class SlotHold:
    """A reader slot's lock, held: close() lets it go."""

    locks: PinLocks
    kind: str
    fd: int | None

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            self.locks._release(self.kind, fd)


READERS_MAX = ReaderLimits.READERS_MAX.value


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
