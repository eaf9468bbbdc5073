"""The pin layout: where every program, map and link of one instance lives in bpffs.

<pin dir>/progs/handle_fork   programs, pinned by `bpftool prog loadall`
<pin dir>/maps/events         maps, pinned by `pinmaps`
<pin dir>/links/fork          links, pinned by `procmon-ctl attach`
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import StateError, UsageError
from .system import BPFFS_ROOT, ensure_bpffs, fs_type_of

DEFAULT_PIN_DIR = BPFFS_ROOT / "procmon"
PIN_DIR_ENV = "PROCMON_PIN_DIR"
LOCK_DIR = Path("/run/procmon-ctl")

# The tracepoint each program attaches to, by the name users give it.
PROGRAMS = {
    "fork": "handle_fork",
    "exec": "handle_exec",
    "exit": "handle_exit",
}
MAPS = ("events", "process_count", "counters", "settings", "exited", "followed")


@dataclass(frozen=True)
class PinLayout:
    root: Path

    @classmethod
    def resolve(cls, pin_dir: str | os.PathLike | None = None) -> PinLayout:
        """The layout for --pin-dir / $PROCMON_PIN_DIR / the default, checked to lie
        inside a bpffs mount before anything is written."""
        raw = pin_dir if pin_dir not in (None, "") else os.environ.get(PIN_DIR_ENV) or None
        # Symlinks resolved: bpffs's root is world-writable (mode 1777), so anyone can
        # plant /sys/fs/bpf/procmon -> /etc; the real target is what must be in bpffs.
        path = Path(os.path.realpath(raw if raw else DEFAULT_PIN_DIR))
        if raw and not os.path.isabs(raw):
            raise UsageError(
                f"--pin-dir {raw!r} is relative: give an absolute path inside a bpffs mount, "
                f"e.g. {DEFAULT_PIN_DIR}"
            )
        if path == BPFFS_ROOT or path.is_relative_to(BPFFS_ROOT):
            ensure_bpffs()
        mount_point, fstype = fs_type_of(path)
        if fstype != "bpf" or str(path) == mount_point:
            raise UsageError(
                f"--pin-dir {path} is not inside a bpffs mount: use a directory below "
                f"{BPFFS_ROOT}, e.g. {DEFAULT_PIN_DIR}"
            )
        below = path.relative_to(mount_point).parts
        if any("." in part for part in below):
            # bpffs answers EPERM to any name with a dot ("reserved for extensions").
            raise UsageError(
                f"--pin-dir {path}: bpffs does not allow '.' in names: use e.g. "
                f"{path.parent / path.name.replace('.', '-')}"
            )
        return cls(path)

    def check_owned(self) -> None:
        """Refuse a pin dir (or a parent below the bpffs mount) that is a symlink or
        not owned by root: anyone may mkdir in bpffs's root, and whoever owns the
        directory could swap or remove our pins.  Call before writing into it."""
        mount_point = Path(fs_type_of(self.root)[0])
        for path in [self.root, *self.root.parents]:
            if path == mount_point or not path.is_relative_to(mount_point):
                break
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
                raise StateError(
                    f"{path} is not a directory: remove it or choose another --pin-dir"
                )
            if st.st_uid != 0:
                raise StateError(
                    f"{path} belongs to uid {st.st_uid}, not root: someone else made it; "
                    f"remove it (rm -r {path}) or choose another --pin-dir"
                )

    @property
    def progs_dir(self) -> Path:
        return self.root / "progs"

    @property
    def maps_dir(self) -> Path:
        return self.root / "maps"

    @property
    def links_dir(self) -> Path:
        return self.root / "links"

    def prog(self, event: str) -> Path:
        return self.progs_dir / PROGRAMS[event]

    def map(self, name: str) -> Path:
        return self.maps_dir / name

    def link(self, event: str) -> Path:
        return self.links_dir / event

    def is_loaded(self) -> bool:
        return self.progs_dir.exists() or self.maps_dir.exists()

    def require_loaded(self, fix: str = "run `procmon-ctl load` first") -> None:
        """Refuse to go on unless a whole instance is pinned here."""
        if not self.is_loaded():
            raise StateError(f"nothing loaded at {self.root}: {fix}")
        if not self.is_complete():
            raise StateError(self.incomplete_message())

    def incomplete_message(self) -> str:
        return (
            f"an incomplete pin set is at {self.root} (an interrupted load?): "
            "run `procmon-ctl unload` to remove it, then load again"
        )

    def is_complete(self) -> bool:
        """Every program and map pinned: what a finished `load` leaves."""
        return all(self.prog(e).exists() for e in PROGRAMS) and all(
            self.map(m).exists() for m in MAPS
        )

    def attached_events(self) -> list[str]:
        return [event for event in PROGRAMS if self.link(event).exists()]

    def all_pins(self) -> list[Path]:
        """Every pin below the root, deepest first (the order to remove them in)."""
        if not self.root.exists():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root, topdown=False):
            found += [Path(dirpath) / n for n in filenames]
            found += [Path(dirpath) / n for n in dirnames]
        return found

    def lock_paths(self) -> list[Path]:
        """The lock files of this pin dir (left in place: removing a lock file that
        another process waits on would let a third one take a second lock)."""
        return [self._lock_path(kind) for kind in ("admin", "reader")]

    def _lock_path(self, kind: str) -> Path:
        # One name per pin dir: "/" becomes "_", so "_" itself (and the escape
        # character) must be escaped, or /sys/fs/bpf/a_b and /sys/fs/bpf/a/b would
        # share their locks and refuse each other.
        name = str(self.root).strip("/").replace("%", "%25").replace("_", "%5F")
        return LOCK_DIR / (name.replace("/", "_") + f".{kind}.lock")

    @contextmanager
    def _lock(self, kind: str, busy_message: str | None) -> Iterator[None]:
        LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path(kind), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            flags = fcntl.LOCK_EX | (fcntl.LOCK_NB if busy_message else 0)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                raise StateError(busy_message) from None
            yield
        finally:
            os.close(fd)

    def admin_lock(self):
        """Held while pins are made or removed, so two shells never interleave."""
        return self._lock("admin", None)

    def reader_lock(self):
        """Held by the one reader of the ring buffer: its consumer position is shared,
        so two readers would each silently get part of the stream."""
        return self._lock(
            "reader",
            f"another reader is already reading {self.map('events')}: stop it first, or get "
            "a stream of your own from a private instance with `procmon-ctl run` (one "
            "reader at a time consumes a ring buffer)",
        )
