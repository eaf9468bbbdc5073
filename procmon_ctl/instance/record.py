"""The record of what procmon-ctl pinned in one pin dir: each pin's kernel id, as
`load` and `attach` made it this boot, and the maps no program of the object uses.
Kept in /run/procmon-ctl (state_dir.py); identity.py checks the pins against it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import StateError
from .pin_fds import id_of, open_pinned, unrecorded_message
from .pins import RING_STAGING, PinLayout, pin_names
from .state_dir import boot_id, own_state_dir, state_file

# How bpftool names the pins of the maps libbpf makes of an object's sections: the
# first 8 characters of the object's name, then the section (.rodata, .bss, ...),
# every dot as "_" (process__rodata).
_INTERNAL_MAP = re.compile(r"[^/]{1,8}__(rodata|data|bss|kconfig)(_\w*)?$")


@dataclass(frozen=True)
class PinRecord:
    layout: PinLayout

    @property
    def path(self) -> Path:
        return state_file(self.layout.root, ".pins.json")

    @property
    def temporary_path(self) -> Path:
        """Where a new record is written before it replaces the old one."""
        return self.path.with_suffix(".tmp")

    def pins(self) -> dict[str, int] | None:
        """relative pin name -> kernel id, as `load` and `attach` recorded them this
        boot; None when there is no usable record."""
        data = self.data()
        return None if data is None else data["pins"]

    def data(self) -> dict | None:
        """The whole record ("pins", "unused_maps"); None when there is no usable one."""
        try:
            data = json.loads(self.path.read_text())
            if data["pin_dir"] != str(self.layout.root) or data["boot_id"] != boot_id():
                return None
            data["pins"] = {str(k): int(v) for k, v in data["pins"].items()}
            data["unused_maps"] = [str(n) for n in data.get("unused_maps", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return data

    def _write(self, pins: dict[str, int], unused_maps: list[str] | None = None) -> None:
        own_state_dir()
        if unused_maps is None:
            unused_maps = (self.data() or {}).get("unused_maps", [])
        data = {
            "pin_dir": str(self.layout.root),
            "boot_id": boot_id(),
            "pins": pins,
            "unused_maps": unused_maps,
        }
        tmp = self.temporary_path
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def remember_loaded(self) -> None:
        """After `load` pinned everything: record the ids of the object's programs
        and maps, and which maps no program uses (an object may define one it does
        not use; every other map must stay one the programs use)."""
        from ..kernel import libbpf

        layout = self.layout
        pins = {}
        used: set[int] = set()
        for path in sorted(layout.progs_dir.iterdir()):  # an object may have more than ours
            name = f"progs/{path.name}"
            fd = open_pinned(layout, name, "prog")
            try:
                pins[name], map_ids = libbpf.prog_info(fd)
            finally:
                os.close(fd)
            used.update(map_ids)
        unused = []
        for path in sorted(layout.maps_dir.iterdir()):
            name = f"maps/{path.name}"
            pins[name] = id_of(layout, name, "map")
            if pins[name] not in used:
                unused.append(name)
        self._write(pins, unused)

    def remember_link(self, event: str, link_id: int) -> None:
        """Before `attach` pins a link: its id, so the pin is known as ours."""
        pins = self.pins()
        if pins is None:
            raise StateError(unrecorded_message(self.layout))
        pins[f"links/{event}"] = link_id
        self._write(pins)

    def forget_links(self, events: list[str]) -> None:
        pins = self.pins()
        if pins is not None:
            for event in events:
                pins.pop(f"links/{event}", None)
            self._write(pins)

    def remember_reader_ring(self, slot: int, ring_id: int) -> None:
        """Before a named reader's ring is pinned: its id, so the pin is known as ours."""
        pins = self.pins()
        if pins is None:
            raise StateError(unrecorded_message(self.layout))
        pins[_relative(self.layout, self.layout.reader_ring(slot))] = ring_id
        self._write(pins)

    def forget_reader_ring(self, slot: int) -> bool:
        """Whether the record had a ring pinned for `slot` (which it now forgets)."""
        pins = self.pins()
        name = _relative(self.layout, self.layout.reader_ring(slot))
        if pins is None or name not in pins:
            return False
        del pins[name]
        self._write(pins)
        return True

    def forget(self) -> None:
        """The instance is gone: its record goes too."""
        self.path.unlink(missing_ok=True)
        self.temporary_path.unlink(missing_ok=True)

    def own_names(self) -> set[str]:
        """Every name (relative to the root) procmon-ctl made or may make here."""
        record = self.pins()
        maps_dir = self.layout.maps_dir
        names = {"progs", "maps", "links", "readers"} | pin_names(record)
        if record is None:
            # No record (an older procmon-ctl, or a load killed before it wrote
            # one): known by name alone, with what such a load leaves.
            names.add(RING_STAGING)
            if maps_dir.is_dir():
                names |= {
                    f"maps/{p.name}" for p in maps_dir.iterdir() if _INTERNAL_MAP.match(p.name)
                }
        return names

    def foreign_names(self) -> list[str]:
        """What lies below the root, at any depth, that procmon-ctl does not make."""
        own = self.own_names()
        root = self.layout.root
        below = (str(p.relative_to(root)) for p in self.layout.all_pins())
        return sorted(name for name in below if name not in own)


def _relative(layout: PinLayout, path: Path) -> str:
    return str(path.relative_to(layout.root))
