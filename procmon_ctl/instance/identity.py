"""Whether what is pinned in a pin dir is what procmon-ctl pinned there: each pin
opened, checked to be of its kind and to have the kernel id the record says
(record.py); a reader's maps opened only so, and its ring checked to be still the
one pinned."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import StateError
from .pin_fds import open_pinned, replaced_message, unrecorded_message
from .pins import PROGRAMS, PinLayout, pin_names
from .record import PinRecord

# What each directory below the pin dir holds, by its name there.
_KIND_OF_DIR = {"progs": "prog", "maps": "map", "links": "link", "readers": "map"}


@dataclass(frozen=True)
class PinIdentity:
    layout: PinLayout
    record: PinRecord

    def check_pins(self, names: list[str] | None = None) -> None:
        """Refuse pins that are not what procmon-ctl made here: each program, map and
        link pinned below the root (or those of `names`) must be the object whose id
        `load`/`attach` recorded, each map still one the programs use (unless none
        did at load), each link one of the program of its event."""
        if not self.layout.is_loaded():
            return
        data = self.record.data()
        if data is None:
            raise StateError(unrecorded_message(self.layout))
        self._check_against(data["pins"], data["unused_maps"], names)

    def _check_against(
        self, record: dict[str, int], unused_maps: list[str], names: list[str] | None
    ) -> None:
        from ..kernel import libbpf

        layout = self.layout
        wanted = names or sorted(pin_names(record))
        present = [n for n in wanted if (layout.root / n).exists()]
        used: set[int] = set()
        for name in present:
            kind = _KIND_OF_DIR[name.split("/")[0]]
            fd = open_pinned(layout, name, kind)
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
                            replaced_message(layout, name, kind, f"it runs program {info.prog_id}")
                        )
            finally:
                os.close(fd)
        if names is None and all(f"progs/{p}" in present for p in PROGRAMS.values()):
            for name in (n for n in present if n.startswith("maps/")):
                if record[name] not in used and name not in unused_maps:
                    raise StateError(
                        replaced_message(layout, name, "map", "its programs do not use it")
                    )

    def _same(self, name: str, kind: str, record: dict[str, int], found: int) -> None:
        expected = record.get(name)
        if expected != found:
            was = f"recorded {expected}" if expected is not None else "none recorded"
            raise StateError(replaced_message(self.layout, name, kind, f"{kind} id {found}, {was}"))

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
        record = self.record.pins()
        if record is None:
            raise StateError(unrecorded_message(self.layout))
        fd = open_pinned(self.layout, rel, kind)
        try:
            self._same(rel, kind, record, id_of(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_reader_ring(self, slot: int) -> int | None:
        """An fd of the ring pinned for named reader slot `slot`, checked as
        open_map() checks a map; None when none is pinned."""
        from ..kernel import libbpf

        path = self.layout.reader_ring(slot)
        if not path.exists():
            return None
        rel = str(path.relative_to(self.layout.root))
        return self._open_recorded(rel, "map", lambda fd: libbpf.map_info(fd).id)

    def same_map(self, name: str, fd: int) -> bool:
        """Whether the pin of map `name` still is the map behind `fd`: False once the
        instance is unloaded, or unloaded and loaded again.  Three system calls."""
        from ..kernel import libbpf

        try:
            pinned = libbpf.obj_get(self.layout.map(name))
        except libbpf.LibbpfError:
            return False
        try:
            return libbpf.map_info(pinned).id == libbpf.map_info(fd).id
        finally:
            os.close(pinned)
