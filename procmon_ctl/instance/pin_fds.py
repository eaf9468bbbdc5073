"""An fd of what is pinned in a pin dir, checked to be of the kind it should be,
and what to tell the user when it is not (or when nothing says what it should be)."""

from __future__ import annotations

import os
import shlex

from ..errors import Command, StateError, Words
from .pins import PinLayout

_KIND_NAME = {"prog": "program", "map": "map", "link": "link"}


def open_pinned(layout: PinLayout, name: str, kind: str) -> int:
    """An fd of the object pinned at `name`, checked to be a `kind`."""
    from ..kernel import libbpf

    path = layout.root / name
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
        raise StateError(replaced_message(layout, name, kind, f"it is not a {_KIND_NAME[kind]}"))
    return fd


def id_of(layout: PinLayout, name: str, kind: str) -> int:
    from ..kernel import libbpf

    fd = open_pinned(layout, name, kind)
    try:
        return libbpf.object_id(fd)[1]
    finally:
        os.close(fd)


def replaced_message(layout: PinLayout, name: str, kind: str, detail: str) -> Words:
    path = layout.root / name
    return (
        f"{path} is not the {_KIND_NAME[kind]} procmon-ctl pinned there ({detail}): "
        f"someone replaced it; remove it (rm {shlex.quote(str(path))}), then ",
        Command("unload"),
        " and load again",
    )


def unrecorded_message(layout: PinLayout) -> Words:
    return (
        f"no record of what procmon-ctl pinned at {layout.root} (loaded by an older "
        "procmon-ctl, or its load was interrupted): run ",
        Command("unload"),
        " and load again",
    )
