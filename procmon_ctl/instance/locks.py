"""The locks of a pin dir, files in /run/procmon-ctl (state_dir.py): `admin`, held
while pins are made or removed and while readers take or leave their slots, and
one per reader slot, held by the process reading it for as long as it reads, so
that a slot whose lock nobody holds has no reader, however its reader ended.
Each is removed by whoever holds it when it finds no pin dir left (_take)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import StateError
from ..kernel.abi import ReaderLimits
from ..kernel.procfs import is_stopped
from ..kernel.signals import job_stops_held
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
        fd = _take(self.path(kind), self._refuse_stopped_holder(kind) if wait else None)
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
        two shells never interleave.  Every command waits for it, so its holder
        takes a Ctrl-Z only once it lets go; a holder stopped anyway (SIGSTOP) is
        named by whoever waits, instead of waiting until it is resumed."""
        with job_stops_held(), self._holding("admin", wait=True):
            yield

    def _refuse_stopped_holder(self, kind: str) -> Callable[[], None]:
        """What a waiter for the `kind` lock does while it is held: raise once its
        holder has been stopped for STOPPED_FOR."""
        stopped_since: float | None = None

        def check() -> None:
            nonlocal stopped_since
            pid = self.holder(kind)
            if pid is None or not is_stopped(pid):
                stopped_since = None
                return
            now = time.monotonic()
            if stopped_since is None:
                stopped_since = now
            elif now - stopped_since >= STOPPED_FOR:
                raise StateError(
                    f"the instance at {self.layout.root} is held by process {pid}, "
                    "which is stopped (SIGSTOP or Ctrl-Z): resume it "
                    f"(kill -CONT {pid}) or end it, then try again"
                )

        return check

    def hold_slot(self, slot: int) -> SlotHold | None:
        """The lock of reader slot `slot`, held until the SlotHold is closed (or its
        process ends, however it ends); None when another process holds it."""
        kind = f"reader-{slot}"
        fd = _take(self.path(kind), None)
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
        """The process that holds reader slot `slot`'s lock."""
        return self.holder(f"reader-{slot}")

    def holder(self, kind: str) -> int | None:
        """The process that holds the `kind` lock, from /proc/locks."""
        try:
            st = os.stat(self.path(kind))
        except OSError:
            return None
        return holder_of(st)

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


# A waiter for a held lock looks again after WAIT_FIRST, then twice as long each
# time, up to WAIT_MOST; a holder stopped for STOPPED_FOR is given up on.
WAIT_FIRST = 0.001
WAIT_MOST = 0.05
STOPPED_FOR = 1.0


def holder_of(st: os.stat_result) -> int | None:
    """The process that holds the flock of the file `st` is of, from /proc/locks."""
    try:
        with open("/proc/locks") as f:
            return flock_holder(f, st.st_dev, st.st_ino)
    except OSError:
        return None


def flock_holder(proc_locks: Iterable[str], dev: int, ino: int) -> int | None:
    """The pid /proc/locks gives for the flock of the file (`dev`, `ino`): that
    file names it MAJOR:MINOR:INODE, the device in hex; the inode number alone may
    be another file system's file.  None when no line is the file's: nobody holds
    it, or its holder is in a pid namespace this one cannot see."""
    file = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    for line in proc_locks:
        fields = line.split()
        if len(fields) >= 4 and "FLOCK" in fields and fields[-3] == file:
            try:
                return int(fields[-4])
            except ValueError:
                return None
    return None


def _take(path: Path, waiting: Callable[[], None] | None) -> int | None:
    """An fd holding the flock of the file at `path`.  While another holds it: None
    at once without `waiting`, else `waiting` is called between tries (it raises to
    give up)."""
    own_state_dir()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            if not _try_flock(fd, waiting):
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


def _try_flock(fd: int, waiting: Callable[[], None] | None) -> bool:
    """Polled, not a blocking flock: a waiter can see that the holder is stopped."""
    pause = WAIT_FIRST
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if waiting is None:
                return False
        waiting()
        time.sleep(pause)
        pause = min(pause * 2, WAIT_MOST)


def _is_file_at(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)
