"""The pin layout: where every program, map and link of one instance lives in bpffs,
and how procmon-ctl knows that what it finds there is what it made.

<pin dir>/progs/handle_fork   programs, pinned by `bpftool prog loadall`
<pin dir>/maps/events         maps, pinned by `pinmaps`
<pin dir>/links/fork          links, pinned by `procmon-ctl attach`

Beside bpffs, in /run/procmon-ctl (root's, mode 0700), each pin dir has files named
by the SHA-256 of its path: two locks (admin, reader) and the record of the kernel
ids of what procmon-ctl pinned there.  /run and bpffs both start empty at boot.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import Command, Given, Setting, StateError, UsageError, Words
from ..kernel.system import BPFFS_ROOT, ensure_bpffs, fs_type_of

DEFAULT_PIN_DIR = BPFFS_ROOT / "procmon"
PIN_DIR_ENV = "PROCMON_PIN_DIR"
LOCK_DIR = Path("/run/procmon-ctl")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

# The tracepoint each program attaches to, by the name users give it.
PROGRAMS = {
    "fork": "handle_fork",
    "exec": "handle_exec",
    "exit": "handle_exit",
}
MAPS = ("events", "process_count", "counters", "settings", "exited", "followed", "losses")
# The failed-exec programs (`events --failed`): loaded and pinned by `load` with
# the others, but attached only by such a reader, by fds it holds for as long as
# it runs (exec_failures.py): never by `attach`, never as a pinned link.  In the
# order they are attached in: those that forget execs in progress, then the
# syscalls' entries, then their exits.
FAILED_EXEC_PROGRAMS = (
    "forget_on_exec",
    "forget_on_exit",
    "handle_execve_enter",
    "handle_execveat_enter",
    "handle_execve_exit",
    "handle_execveat_exit",
)
# Maps `load` pins besides MAPS (which `status` lists): where exec records are
# built, and the failed-exec programs' execs in progress.
EXEC_MAPS = ("exec_scratch", "exec_attempts")
# The longest path the kernel takes (PATH_MAX, with its NUL), and the room a pin
# dir leaves in it for the pins below: the longest is progs/handle_execveat_enter,
# 28 bytes with its slash; the rest is for names a later object may bring.
PATH_MAX = 4096
MAX_PIN_DIR_BYTES = PATH_MAX - 1 - 64
# Made by `load` below the pin dir while it sizes the ring, and removed again.
RING_STAGING = "ring_staging"
# How bpftool names the pins of the maps libbpf makes of an object's sections: the
# first 8 characters of the object's name, then the section (.rodata, .bss, ...),
# every dot as "_" (process__rodata).
_INTERNAL_MAP = re.compile(r"[^/]{1,8}__(rodata|data|bss|kconfig)(_\w*)?$")
# What each directory below the pin dir holds, by its name there.
_KIND_OF_DIR = {"progs": "prog", "maps": "map", "links": "link"}
_KIND_NAME = {"prog": "program", "map": "map", "link": "link"}
PIN_DIR = Setting("pin_dir")
LOAD_FIRST = ("run ", Command("load"), " first")


@dataclass(frozen=True)
class PinLayout:
    root: Path

    @classmethod
    def resolve(cls, pin_dir: str | os.PathLike | None = None) -> PinLayout:
        """The layout for --pin-dir / $PROCMON_PIN_DIR / the default: inside a bpffs
        mount, and every directory of it below the mount a real directory of root's
        (checked before any command reads or changes anything)."""
        if pin_dir is not None and not os.fspath(pin_dir):
            # `--pin-dir "$UNSET"`: acting on the default instance instead would be a
            # surprise (an unload of the wrong instance).
            raise UsageError(
                (
                    PIN_DIR,
                    " is empty: give a directory inside a bpffs mount, e.g. "
                    f"{DEFAULT_PIN_DIR}, or leave the option out for that default",
                )
            )
        raw = pin_dir if pin_dir is not None else os.environ.get(PIN_DIR_ENV) or None
        text = os.fspath(raw) if raw else str(DEFAULT_PIN_DIR)
        try:
            text.encode()
        except UnicodeEncodeError:
            raise UsageError(
                (
                    PIN_DIR,
                    " ",
                    Given(text),
                    " is not valid UTF-8: use a name of letters, "
                    f"digits, '-' and '_', e.g. {DEFAULT_PIN_DIR}",
                )
            ) from None
        if len(text.encode()) > MAX_PIN_DIR_BYTES:
            # Refused here rather than half loaded: bpftool would pin some of the
            # programs and fail on the rest, in lines of its own.
            raise UsageError(
                (
                    PIN_DIR,
                    f" is {len(text.encode())} bytes long: use at most "
                    f"{MAX_PIN_DIR_BYTES} (the kernel's PATH_MAX, {PATH_MAX}, less room for "
                    f"the pins below it), e.g. {DEFAULT_PIN_DIR}",
                )
            )
        if raw and not os.path.isabs(text):
            raise UsageError(
                (
                    PIN_DIR,
                    f" {text!r} is relative: give an absolute path inside a bpffs mount, "
                    f"e.g. {DEFAULT_PIN_DIR}",
                )
            )
        if ".." in Path(text).parts:
            raise UsageError((PIN_DIR, f" {text} contains '..': give the directory's own path"))
        # Not resolved: a symlink on the way is refused below, never followed.
        path = Path(os.path.normpath(text))
        if path == BPFFS_ROOT or path.is_relative_to(BPFFS_ROOT):
            ensure_bpffs()
        mount_point, fstype = fs_type_of(path)
        if fstype != "bpf" or str(path) == mount_point:
            raise UsageError(
                (
                    PIN_DIR,
                    f" {path} is not inside a bpffs mount: use a directory below "
                    f"{BPFFS_ROOT}, e.g. {DEFAULT_PIN_DIR}",
                )
            )
        if "." in mount_point:
            # libbpf writes every '.' of a map's pin path as '_' (meant for names
            # like .rodata), so the maps would be pinned to a directory that is not.
            raise UsageError(
                (
                    PIN_DIR,
                    f" {path} is in the bpffs mounted at {mount_point}, and libbpf "
                    "cannot pin maps below a path with a '.': mount bpffs at a path without "
                    f"one, or use a directory below {BPFFS_ROOT}, e.g. {DEFAULT_PIN_DIR}",
                )
            )
        below = path.relative_to(mount_point).parts
        if any("." in part for part in below):
            # bpffs answers EPERM to any name with a dot ("reserved for extensions").
            raise UsageError(
                (
                    PIN_DIR,
                    f" {path}: bpffs does not allow '.' in names: use e.g. "
                    f"{path.parent / path.name.replace('.', '-')}",
                )
            )
        layout = cls(path)
        layout.check_owned()
        return layout

    def check_owned(self) -> None:
        """Refuse a pin dir, or a directory on the way to it below the bpffs mount,
        that is a symlink, not a directory, or not root's: whoever owns a directory
        there can swap or remove what is in it, and a symlink planted in a
        world-writable bpffs root would redirect root's commands.  Components that do
        not exist yet pass (`load` makes them, then calls this again)."""
        mount_point = Path(fs_type_of(self.root)[0])
        below = self.root.relative_to(mount_point).parts
        path = mount_point
        for part in below:
            path = path / part
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return
            if stat.S_ISLNK(st.st_mode):
                inside = fs_type_of(Path(os.path.realpath(path)))[1] == "bpf"
                where = (
                    "to another place in bpffs"
                    if inside
                    else "to a place that is not inside a bpffs mount"
                )
                raise UsageError(
                    f"{path} is a symbolic link {where}: procmon-ctl follows no symbolic "
                    f"links below {mount_point} (anyone who could write there could have "
                    f"planted it); give a real directory, e.g. {DEFAULT_PIN_DIR}"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise UsageError(
                    (
                        f"{path} is not a directory (a pin?): give ",
                        PIN_DIR,
                        f" a directory of its own, e.g. {DEFAULT_PIN_DIR}",
                    )
                )
            if st.st_uid != 0:
                raise UsageError(
                    (
                        f"{path} belongs to uid {st.st_uid}, not root: someone else made it; "
                        f"remove it (rm -r {path}) or choose another ",
                        PIN_DIR,
                    )
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

    def program(self, name: str) -> Path:
        """The pin of a program by its own name (prog() takes an event's)."""
        return self.progs_dir / name

    def map(self, name: str) -> Path:
        return self.maps_dir / name

    def link(self, event: str) -> Path:
        return self.links_dir / event

    def is_loaded(self) -> bool:
        return self.progs_dir.exists() or self.maps_dir.exists()

    def require_loaded(self, fix: Words = LOAD_FIRST) -> None:
        """Refuse to go on unless a whole instance is pinned here, and it is the one
        procmon-ctl loaded (check_pins).  fix: what to do instead of loading first."""
        if not self.is_loaded():
            raise StateError((f"nothing loaded at {self.root}: ", *fix))
        if not self.is_complete():
            raise StateError(self.incomplete_message())
        self.check_pins()

    def incomplete_message(self) -> Words:
        return (
            f"an incomplete pin set is at {self.root} (an interrupted load?): run ",
            Command("unload"),
            " to remove it, then load again",
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

    # -- what procmon-ctl made here: names, and the kernel ids of the record --

    def _pin_names(self, record: dict[str, int] | None) -> set[str]:
        """The pins (relative names) a load and an attach make, and what the record
        says this one made (the object's internal maps, e.g. process__rodata)."""
        names = {f"progs/{p}" for p in (*PROGRAMS.values(), *FAILED_EXEC_PROGRAMS)}
        names |= {f"maps/{m}" for m in (*MAPS, *EXEC_MAPS)}
        names |= {f"links/{e}" for e in PROGRAMS}
        return names | set(record or ())

    def own_names(self) -> set[str]:
        """Every name (relative to the root) procmon-ctl made or may make here."""
        record = self.read_record()
        names = {"progs", "maps", "links"} | self._pin_names(record)
        if record is None:
            # No record (an older procmon-ctl, or a load killed before it wrote
            # one): known by name alone, with what such a load leaves.
            names.add(RING_STAGING)
            if self.maps_dir.is_dir():
                names |= {
                    f"maps/{p.name}" for p in self.maps_dir.iterdir() if _INTERNAL_MAP.match(p.name)
                }
        return names

    def foreign_names(self) -> list[str]:
        """What lies below the root, at any depth, that procmon-ctl does not make."""
        own = self.own_names()
        below = (str(p.relative_to(self.root)) for p in self.all_pins())
        return sorted(name for name in below if name not in own)

    @property
    def _key(self) -> str:
        # Fixed length whatever the path (a 4096-byte path still names a short
        # file), and distinct for distinct paths, unlike an escaped path.
        return hashlib.sha256(os.fsencode(self.root)).hexdigest()

    @property
    def record_path(self) -> Path:
        return LOCK_DIR / f"{self._key}.pins.json"

    def read_record(self) -> dict[str, int] | None:
        """relative pin name -> kernel id, as `load` and `attach` recorded them this
        boot; None when there is no usable record."""
        data = self._record_data()
        return None if data is None else data["pins"]

    def _record_data(self) -> dict | None:
        try:
            data = json.loads(self.record_path.read_text())
            if data["pin_dir"] != str(self.root) or data["boot_id"] != _boot_id():
                return None
            data["pins"] = {str(k): int(v) for k, v in data["pins"].items()}
            data["unused_maps"] = [str(n) for n in data.get("unused_maps", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return data

    def _write_record(self, pins: dict[str, int], unused_maps: list[str] | None = None) -> None:
        own_state_dir()
        if unused_maps is None:
            unused_maps = (self._record_data() or {}).get("unused_maps", [])
        data = {
            "pin_dir": str(self.root),
            "boot_id": _boot_id(),
            "pins": pins,
            "unused_maps": unused_maps,
        }
        tmp = self.record_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.record_path)

    def remember_loaded(self) -> None:
        """After `load` pinned everything: record the ids of the object's programs
        and maps, and which maps no program uses (an object may define one it does
        not use; every other map must stay one the programs use)."""
        from ..kernel import libbpf

        pins = {}
        used: set[int] = set()
        for path in sorted(self.progs_dir.iterdir()):  # an object may have more than ours
            name = f"progs/{path.name}"
            fd = self._open(name, "prog")
            try:
                pins[name], map_ids = libbpf.prog_info(fd)
            finally:
                os.close(fd)
            used.update(map_ids)
        unused = []
        for path in sorted(self.maps_dir.iterdir()):
            name = f"maps/{path.name}"
            pins[name] = self._id_of(name, "map")
            if pins[name] not in used:
                unused.append(name)
        self._write_record(pins, unused)

    def remember_link(self, event: str, link_id: int) -> None:
        """Before `attach` pins a link: its id, so the pin is known as ours."""
        pins = self.read_record()
        if pins is None:
            raise StateError(self._unrecorded_message())
        pins[f"links/{event}"] = link_id
        self._write_record(pins)

    def forget_links(self, events: list[str]) -> None:
        pins = self.read_record()
        if pins is not None:
            for event in events:
                pins.pop(f"links/{event}", None)
            self._write_record(pins)

    def forget(self) -> None:
        """The instance is gone: its record goes too."""
        self.record_path.unlink(missing_ok=True)
        self.record_path.with_suffix(".tmp").unlink(missing_ok=True)

    def check_pins(self, names: list[str] | None = None) -> None:
        """Refuse pins that are not what procmon-ctl made here: each program, map and
        link pinned below the root (or those of `names`) must be the object whose id
        `load`/`attach` recorded, each map still one the programs use (unless none
        did at load), each link one of the program of its event."""
        if not self.is_loaded():
            return
        data = self._record_data()
        if data is None:
            raise StateError(self._unrecorded_message())
        self._check_against(data["pins"], data["unused_maps"], names)

    def _check_against(
        self, record: dict[str, int], unused_maps: list[str], names: list[str] | None
    ) -> None:
        from ..kernel import libbpf

        wanted = names or sorted(self._pin_names(record))
        present = [n for n in wanted if (self.root / n).exists()]
        used: set[int] = set()
        for name in present:
            kind = _KIND_OF_DIR[name.split("/")[0]]
            fd = self._open(name, kind)
            try:
                if kind == "prog":
                    found, map_ids = libbpf.prog_info(fd)
                    used.update(map_ids)
                    self._same(name, kind, record, found)
                elif kind == "map":
                    self._same(name, kind, record, libbpf.map_info(fd).id)
                else:
                    info = libbpf.link_info(fd)
                    self._same(name, kind, record, info.id)
                    prog = f"progs/{PROGRAMS[name.split('/')[1]]}"
                    if info.prog_id != record.get(prog):
                        raise StateError(
                            self._replaced(name, kind, f"it runs program {info.prog_id}")
                        )
            finally:
                os.close(fd)
        if names is None and all(f"progs/{p}" in present for p in PROGRAMS.values()):
            for name in (n for n in present if n.startswith("maps/")):
                if record[name] not in used and name not in unused_maps:
                    raise StateError(self._replaced(name, "map", "its programs do not use it"))

    def _same(self, name: str, kind: str, record: dict[str, int], found: int) -> None:
        expected = record.get(name)
        if expected != found:
            was = f"recorded {expected}" if expected is not None else "none recorded"
            raise StateError(self._replaced(name, kind, f"{kind} id {found}, {was}"))

    def _open(self, name: str, kind: str) -> int:
        """An fd of the object pinned at `name`, checked to be a `kind`."""
        from ..kernel import libbpf

        path = self.root / name
        try:
            fd = libbpf.obj_get(path)
        except libbpf.LibbpfError as err:
            if libbpf.is_not_found(err):
                raise StateError(
                    (f"{path} is gone: run ", Command("unload"), " and load again")
                ) from None
            raise
        if libbpf.fd_kind(fd) != kind:
            os.close(fd)
            raise StateError(self._replaced(name, kind, f"it is not a {_KIND_NAME[kind]}"))
        return fd

    def _id_of(self, name: str, kind: str) -> int:
        from ..kernel import libbpf

        fd = self._open(name, kind)
        try:
            return libbpf.object_id(fd)[1]
        finally:
            os.close(fd)

    def _replaced(self, name: str, kind: str, detail: str) -> Words:
        path = self.root / name
        return (
            f"{path} is not the {_KIND_NAME[kind]} procmon-ctl pinned there ({detail}): "
            f"someone replaced it; remove it (rm {shlex.quote(str(path))}), then ",
            Command("unload"),
            " and load again",
        )

    def _unrecorded_message(self) -> Words:
        return (
            f"no record of what procmon-ctl pinned at {self.root} (loaded by an older "
            "procmon-ctl, or its load was interrupted): run ",
            Command("unload"),
            " and load again",
        )

    # -- for readers: the ring (or another map), checked, and still the same? --

    def open_map(self, name: str) -> int:
        """An fd of the pinned map `name` (the caller closes it), after checking that
        it is the map `load` recorded there; StateError (one line) if it is not,
        is gone, or nothing was recorded."""
        from ..kernel import libbpf

        return self._open_recorded(f"maps/{name}", "map", lambda fd: libbpf.map_info(fd).id)

    def open_program(self, name: str) -> int:
        """An fd of the pinned program `name` (the caller closes it), checked as
        open_map() checks a map."""
        from ..kernel import libbpf

        return self._open_recorded(f"progs/{name}", "prog", lambda fd: libbpf.prog_info(fd)[0])

    def _open_recorded(self, rel: str, kind: str, id_of: Callable[[int], int]) -> int:
        record = self.read_record()
        if record is None:
            raise StateError(self._unrecorded_message())
        fd = self._open(rel, kind)
        try:
            self._same(rel, kind, record, id_of(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def same_map(self, name: str, fd: int) -> bool:
        """Whether the pin of map `name` still is the map behind `fd`: False once the
        instance is unloaded, or unloaded and loaded again.  Three system calls."""
        from ..kernel import libbpf

        try:
            pinned = libbpf.obj_get(self.map(name))
        except libbpf.LibbpfError:
            return False
        try:
            return libbpf.map_info(pinned).id == libbpf.map_info(fd).id
        finally:
            os.close(pinned)

    # -- locks --

    def lock_paths(self) -> list[Path]:
        """The lock files of this pin dir: admin, reader.  Each is removed by whoever
        holds it when it finds no pin dir left (see _take)."""
        return [self._lock_path(kind) for kind in ("admin", "reader")]

    def state_paths(self) -> list[Path]:
        """Every file of this pin dir in /run/procmon-ctl."""
        return [*self.lock_paths(), self.record_path, self.record_path.with_suffix(".tmp")]

    def _lock_path(self, kind: str) -> Path:
        return LOCK_DIR / f"{self._key}.{kind}.lock"

    @contextmanager
    def _holding(self, kind: str, wait: bool) -> Iterator[bool]:
        """Hold the `kind` lock (waiting for it, or not); yields whether it is held.
        On leaving, a lock whose pin dir is gone is removed: nobody needs it, and
        whoever waits on the removed file notices and takes the new one (_take)."""
        path = self._lock_path(kind)
        fd = _take(path, wait)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                try:
                    if not self.root.exists():
                        path.unlink(missing_ok=True)
                finally:
                    os.close(fd)

    @contextmanager
    def _lock(self, kind: str, busy_message: Words | None) -> Iterator[None]:
        with self._holding(kind, wait=busy_message is None) as held:
            if not held:
                raise StateError(busy_message)
            yield

    def admin_lock(self):
        """Held while pins are made or removed, so two shells never interleave."""
        return self._lock("admin", None)

    def reader_lock(self):
        """Held by the one reader of the ring buffer: its consumer position is shared,
        so two readers would each silently get part of the stream."""
        return self._lock(
            "reader",
            (
                f"another reader is already reading {self.map('events')}: stop it first, or "
                "get a stream of your own from a private instance with ",
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
            inode = os.stat(self._lock_path("reader")).st_ino
            with open("/proc/locks") as f:
                for line in f:
                    fields = line.split()
                    if "FLOCK" in fields and fields[-3].endswith(f":{inode}"):
                        return int(fields[-4])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def remove_legacy_locks(self) -> None:
        """Lock files of this pin dir under the names older procmon-ctl versions gave
        them (the escaped path); removed when nobody holds them."""
        name = str(self.root).strip("/").replace("%", "%25").replace("_", "%5F")
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


def own_state_dir() -> Path:
    """/run/procmon-ctl, root's alone (0700): what is in it decides what procmon-ctl
    trusts.  Whoever made it (the CLI, the service, `make bench`), a directory of
    root's that others may only read is put back to 0700; one that others could
    write, or that is not root's, may hold planted files and is refused."""
    with contextlib.suppress(FileExistsError):  # checked below, a symlink or a file included
        LOCK_DIR.mkdir(mode=0o700, parents=True)
    try:
        fd = os.open(LOCK_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        fd = None  # a symlink, or something else that is not a directory
    try:
        st = os.fstat(fd) if fd is not None else None
        if st is None or st.st_uid != 0 or st.st_mode & 0o022:
            raise StateError(
                f"{LOCK_DIR} is not a directory of root's that only root may write: "
                f"remove it (rm -r {LOCK_DIR}); procmon-ctl makes it again"
            )
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        if fd is not None:
            os.close(fd)
    return LOCK_DIR


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""
