"""The `settings` map: what user space tells the loaded programs (struct settings).

Written through bpftool after `load` and by each reader as it starts and stops."""

from __future__ import annotations

from . import bpftool
from .abi import SETTINGS
from .pins import PinLayout


def write_settings(layout: PinLayout, stream_threads: bool, wakeup_bytes: int) -> None:
    bpftool.map_update(
        layout.map("settings"),
        key=(0).to_bytes(4, "little"),
        value=SETTINGS.pack(int(stream_threads), wakeup_bytes),
    )


def default_wakeup_bytes(ring_size: int) -> int:
    """Wake a sleeping reader once an eighth of the ring waits: batches stay large,
    and a reader that polls on its timer still has room before anything is lost."""
    return ring_size // 8
