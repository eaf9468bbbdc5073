"""Load: `bpftool prog loadall` pins the programs and maps; unload removes every pin."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import Command, Setting, StateError, UsageError
from ..kernel import signals
from ..kernel.system import ensure_tracefs, require_root
from .locks import READERS_MAX
from .pin_dir import check_owned
from .pinned import PinnedInstance
from .pins import MAPS, PROGRAMS, RING_STAGING, PinLayout
from .settings import DEFAULT_ARGV_BYTES, write_settings
from .startup import DEFAULT_RING_SIZE, check_start


def load(
    pinned: PinnedInstance,
    obj: Path,
    ring_size: int | None = None,
    argv_bytes: int | None = None,
    if_needed: bool = False,
    object_given: bool = False,
) -> bool:
    """Load `obj` and pin it in the pin dir; whether it did.

    An instance already there, whole and procmon-ctl's own, is left as it is, as
    `attach` leaves what is attached: the state asked for holds.  Unless the load
    asked for what that instance does not have (`object_given`: an object named on
    the command line; a ring size or argv bound unlike its own): that is refused.
    With `if_needed` it is left as it is whatever it was loaded with (a service
    adopts what an admin loaded by hand rather than failing or replacing it, which
    would cut off its readers)."""
    check_start(ring_size, argv_bytes)
    layout = pinned.layout
    with pinned.locks.admin():
        if layout.is_loaded():
            if not layout.is_complete():
                raise StateError(pinned.incomplete_message())
            pinned.require_loaded()  # whole, and the pins are still ours
            if not if_needed:
                _refuse_other(pinned, obj if object_given else None, ring_size, argv_bytes)
            return False
        ensure_tracefs()
        check_owned(layout)
        if layout.root.exists():
            check_ours(pinned)  # a failed load removes every pin below the root
        pinned.record.forget()  # the record of an instance removed by hand
        created_root = not layout.root.exists()
        made_parents = [d for d in layout.root.parents if not d.exists()]  # deepest first
        try:
            # In the try: a stop right after mkdir must not leave an empty pin dir.
            # One level at a time, shallowest first: Path.mkdir(parents=True) recurses
            # once per missing level (a RecursionError for a pin dir ~1,000 deep).
            for d in reversed(made_parents):
                d.mkdir(exist_ok=True)
            layout.root.mkdir(mode=0o700, exist_ok=True)
            check_owned(layout)
            os.chmod(layout.root, 0o700)
            _loadall(layout, obj)
            # Each reader makes its ring (readers.py): of this size unless it asks.
            write_settings(
                layout,
                ring_size or DEFAULT_RING_SIZE,
                DEFAULT_ARGV_BYTES if argv_bytes is None else argv_bytes,
            )
            pinned.record.remember_loaded()
            return True
        except BaseException:
            remove_pins(layout, keep_root=not created_root)
            pinned.record.forget()
            for d in made_parents:
                try:
                    d.rmdir()
                except OSError:
                    break
            raise


def _refuse_other(
    pinned: PinnedInstance, obj: Path | None, ring_size: int | None, argv_bytes: int | None
) -> None:
    """Refuse a load that asked for what the instance loaded here does not have."""
    from .readers import ReaderSlots

    loaded = ReaderSlots(pinned).load_settings()
    if obj is not None:
        # Which object made the pins is not recorded: an object named is taken as
        # another one, since loading it is what was asked.
        asked: tuple = (f"{obj}",)
    elif ring_size is not None and ring_size != loaded.ring_size:
        asked = (Setting("ring_size"), f" {ring_size} (it has {loaded.ring_size})")
    elif argv_bytes is not None and argv_bytes != loaded.argv_bytes:
        asked = (Setting("argv_bytes"), f" {argv_bytes} (it has {loaded.argv_bytes})")
    else:
        return
    raise StateError(
        (
            f"already loaded at {pinned.layout.root}: to load with ",
            *asked,
            ", run ",
            Command("unload"),
            " first, or choose another ",
            Setting("pin_dir"),
        )
    )


def _loadall(layout: PinLayout, obj: Path) -> None:
    from ..kernel import bpftool  # here: sh and pydantic are most of `unload`'s start-up

    bpftool.prog_loadall(obj, layout.progs_dir, layout.maps_dir)
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


def unload(pinned: PinnedInstance, force: bool = False) -> list[Path] | None:
    """Remove every pin of the instance, having checked that each is what procmon-ctl
    made there; with a reader active only when forced.  None: nothing was loaded
    there (already in the state asked for, as `load` of a loaded instance is)."""
    require_root("removing BPF pins")
    layout = pinned.layout
    with pinned.locks.admin():
        if not layout.root.exists():
            return None
        check_ours(pinned)
        reading = [n for n in range(READERS_MAX) if pinned.locks.slot_in_use(n)]
        if reading and not force:
            pids = [str(p) for n in reading if (p := pinned.locks.slot_holder(n))]
            who = f"{len(reading)} reader{'s' if len(reading) > 1 else ''}" + (
                f" (pid {', '.join(pids)})" if pids else ""
            )
            raise StateError(
                (
                    f"{who} {'are' if len(reading) > 1 else 'is'} reading the instance at "
                    f"{layout.root}: stop {'them' if len(reading) > 1 else 'it'} first, or "
                    "unload anyway with ",
                    Command("unload", ("force",)),
                )
            )
        with signals.deferred():  # all pins or none: a stop waits for the last
            removed = remove_pins(layout)
            pinned.record.forget()
        pinned.locks.remove_slot_files()
        pinned.locks.remove_legacy()
        return removed


# What `load` and `attach` make directly below the pin dir.
OWN_ENTRIES = ("progs", "maps", "links", RING_STAGING)


def check_ours(pinned: PinnedInstance) -> None:
    """Unload removes every pin below the pin dir: refuse a --pin-dir that holds,
    at any depth, anything procmon-ctl did not make there (another tool's pins, a
    pin itself), or a pin of ours that now holds another object."""
    root = pinned.root
    if not root.is_dir() or root.is_symlink():
        raise StateError((f"{root} is not a pin directory: check ", Setting("pin_dir")))
    foreign = pinned.record.foreign_names()
    if foreign:
        raise StateError(
            (
                f"{root} holds {', '.join(foreign[:5])}, which procmon-ctl did not "
                "make: not touching it; check ",
                Setting("pin_dir"),
            )
        )
    if pinned.record.pins() is not None:
        pinned.identity.check_pins()
