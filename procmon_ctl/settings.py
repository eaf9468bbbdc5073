"""The `settings` map: what user space tells the loaded programs (struct settings).

Written through bpftool after `load` and by each reader as it starts and stops."""

from __future__ import annotations

from . import bpftool
from .abi import SETTINGS
from .pins import PinLayout


def write_settings(layout: PinLayout, stream_threads: bool, wakeup_bytes: int) -> None:
    """A pinned instance is shared by every process on the host: it never follows
    one tree (follow mode is `run`'s, on an instance of its own)."""
    bpftool.map_update(
        layout.map("settings"),
        key=(0).to_bytes(4, "little"),
        value=settings_value(stream_threads, wakeup_bytes, follow=False),
    )


def settings_value(stream_threads: bool, wakeup_bytes: int, follow: bool) -> bytes:
    """struct settings, as the map stores it."""
    return SETTINGS.pack(int(stream_threads), wakeup_bytes, int(follow))


def default_wakeup_bytes(ring_size: int) -> int:
    """Wake a sleeping reader once an eighth of the ring waits: batches stay large,
    and a reader that polls on its timer still has room before anything is lost."""
    return ring_size // 8
