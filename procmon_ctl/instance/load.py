"""Load: `bpftool prog loadall` pins the programs and maps; unload removes every pin."""

from __future__ import annotations

import os
from pathlib import Path

from .. import DATA_DIR
from ..errors import Command, MissingError, PermissionDenied, Setting, StateError, UsageError
from ..kernel import features, signals
from ..kernel.system import ensure_tracefs, require_root
from .pins import MAPS, PROGRAMS, RING_STAGING, PinLayout
from .settings import DEFAULT_ARGV_BYTES, check_argv_bytes, default_wakeup_bytes, write_settings

OBJECT_ENV = "PROCMON_OBJECT"
PACKAGED_OBJECT = DATA_DIR / "process_monitor.bpf.o"
DEFAULT_RING_SIZE = 4 * 1024 * 1024
EM_BPF = 247


def find_object(explicit: str | os.PathLike | None = None) -> Path:
    if explicit is not None and not os.fspath(explicit):
        # `--object "$UNSET"`: loading the default object instead would hide it.
        raise UsageError(
            (
                Setting("object"),
                " is empty: give the path of a .bpf.o file, or leave the option out "
                "for the one `make` builds",
            )
        )
    path = Path(explicit or os.environ.get(OBJECT_ENV) or PACKAGED_OBJECT)
    check_object(path)
    return path


def check_object(path: Path) -> None:
    """Refuse what is not an eBPF ELF object before bpftool sees it."""
    if path.is_dir():
        raise UsageError(f"BPF object {path} is a directory: give the .bpf.o file")
    if not path.exists():
        hint = "run `make` to build it" if path == PACKAGED_OBJECT else "check the path"
        raise MissingError(f"BPF object {path} not found: {hint}")
    if not path.is_file():
        raise UsageError(
            f"BPF object {path} is not a regular file (a device or pipe?): give the .bpf.o file"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except PermissionError:
        if os.geteuid() != 0:
            raise PermissionDenied(f"reading {path}") from None
        raise MissingError(f"cannot read BPF object {path}: permission denied") from None
    except OSError as err:
        raise MissingError(f"cannot read BPF object {path}: {err.strerror}") from None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise UsageError(f"{path} is not an ELF file: give the .bpf.o that `make` builds")
    byteorder = "little" if head[5] == 1 else "big"
    if int.from_bytes(head[18:20], byteorder) != EM_BPF:
        raise UsageError(f"{path} is an ELF file but not an eBPF object (e_machine is not BPF)")


def check_ring_size(size: int) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    if size < page or size & (size - 1) or size % page or size > 1 << 30:
        raise UsageError(
            (
                Setting("ring_size"),
                f" {size} is not allowed: use a power of two from {page} "
                f"(one page) to {1 << 30} bytes, e.g. {DEFAULT_RING_SIZE}",
            )
        )


def require_kernel_features() -> None:
    lacking = features.missing()
    if lacking:
        raise MissingError(lacking[0].missing())


def load(
    layout: PinLayout,
    obj: Path,
    ring_size: int | None = None,
    argv_bytes: int = DEFAULT_ARGV_BYTES,
) -> None:
    require_root("loading BPF programs")
    if ring_size is not None:
        check_ring_size(ring_size)
    check_argv_bytes(argv_bytes)
    require_kernel_features()
    with layout.admin_lock():
        if layout.is_loaded():
            if not layout.is_complete():
                raise StateError(layout.incomplete_message())
            raise StateError(
                (
                    f"already loaded at {layout.root}: run ",
                    Command("unload"),
                    " first, or choose another ",
                    Setting("pin_dir"),
                )
            )
        ensure_tracefs()
        layout.check_owned()
        if layout.root.exists():
            check_ours(layout)  # a failed load removes every pin below the root
        layout.forget()  # the record of an instance removed by hand
        created_root = not layout.root.exists()
        made_parents = [d for d in layout.root.parents if not d.exists()]  # deepest first
        try:
            # In the try: a stop right after mkdir must not leave an empty pin dir.
            # One level at a time, shallowest first: Path.mkdir(parents=True) recurses
            # once per missing level (a RecursionError for a pin dir ~1,000 deep).
            for d in reversed(made_parents):
                d.mkdir(exist_ok=True)
            layout.root.mkdir(mode=0o700, exist_ok=True)
            layout.check_owned()
            os.chmod(layout.root, 0o700)
            _loadall(layout, obj, ring_size)
            write_settings(layout, default_wakeup_bytes(ring_size or DEFAULT_RING_SIZE), argv_bytes)
            layout.remember_loaded()
        except BaseException:
            remove_pins(layout, keep_root=not created_root)
            layout.forget()
            for d in made_parents:
                try:
                    d.rmdir()
                except OSError:
                    break
            raise


def _loadall(layout: PinLayout, obj: Path, ring_size: int | None) -> None:
    from ..kernel import bpftool  # here: sh and pydantic are most of `unload`'s start-up

    args: list[str] = []
    if ring_size is not None and ring_size != DEFAULT_RING_SIZE:
        # bpftool cannot resize a map at load, but it can reuse one we made.
        # No dot in the name: bpffs refuses pins with dots (EPERM, "reserved").
        staging = layout.root / RING_STAGING
        bpftool.run(
            "map",
            "create",
            str(staging),
            "type",
            "ringbuf",
            "key",
            "0",
            "value",
            "0",
            "entries",
            str(ring_size),
            "name",
            "events",
            what="creating the ring buffer",
            as_json=False,
        )
        args = ["map", "name", "events", "pinned", str(staging)]
    try:
        bpftool.prog_loadall(obj, layout.progs_dir, layout.maps_dir, *args)
    finally:
        if args:
            staging.unlink(missing_ok=True)
    missing = [p for p in PROGRAMS if not layout.prog(p).exists()]
    missing += [m for m in MAPS if not layout.map(m).exists()]
    if missing:
        raise UsageError(
            f"{obj} does not define {', '.join(missing)}: give the object `make` builds"
        )
    for d in (layout.progs_dir, layout.maps_dir):
        os.chmod(d, 0o700)


def remove_pins(layout: PinLayout, keep_root: bool = False) -> list[Path]:
    """Remove every pin (links first, so the programs stop before their maps go)."""
    removed = []
    links = [layout.link(e) for e in PROGRAMS]
    for pin in [*links, *layout.all_pins()]:
        if pin in removed:
            continue
        try:
            if pin.is_dir():
                pin.rmdir()
            else:
                pin.unlink()
        except FileNotFoundError:
            continue
        removed.append(pin)
    if not keep_root and layout.root.exists():
        layout.root.rmdir()
        removed.append(layout.root)
    return removed


def unload(layout: PinLayout, force: bool = False) -> list[Path]:
    """Remove every pin of the instance, having checked that each is what procmon-ctl
    made there; with a reader active only when forced."""
    require_root("removing BPF pins")
    with layout.admin_lock():
        if not layout.root.exists():
            raise StateError(f"nothing loaded at {layout.root}: nothing to unload")
        check_ours(layout)
        with layout.reader_free() as no_reader:
            if not no_reader and not force:
                pid = layout.reader_pid()
                who = f"a reader (pid {pid})" if pid else "a reader"
                raise StateError(
                    (
                        f"{who} is reading {layout.map('events')}: stop it first, or unload "
                        "anyway with ",
                        Command("unload", ("force",)),
                    )
                )
            with signals.deferred():  # all pins or none: a stop waits for the last
                removed = remove_pins(layout)
                layout.forget()
        layout.remove_legacy_locks()
        return removed


# What `load` and `attach` make directly below the pin dir.
OWN_ENTRIES = ("progs", "maps", "links", RING_STAGING)


def check_ours(layout: PinLayout) -> None:
    """Unload removes every pin below the pin dir: refuse a --pin-dir that holds,
    at any depth, anything procmon-ctl did not make there (another tool's pins, a
    pin itself), or a pin of ours that now holds another object."""
    if not layout.root.is_dir() or layout.root.is_symlink():
        raise StateError((f"{layout.root} is not a pin directory: check ", Setting("pin_dir")))
    foreign = layout.foreign_names()
    if foreign:
        raise StateError(
            (
                f"{layout.root} holds {', '.join(foreign[:5])}, which procmon-ctl did not "
                "make: not touching it; check ",
                Setting("pin_dir"),
            )
        )
    if layout.read_record() is not None:
        layout.check_pins()
