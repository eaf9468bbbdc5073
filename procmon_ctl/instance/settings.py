"""The `settings` map: what user space tells the loaded programs (struct settings).

Written through bpftool after `load`; the readers' masks are readers.py's."""

from __future__ import annotations

from ..errors import Setting, UsageError
from ..kernel.abi import ArgvLimits, Settings
from .pins import PinLayout

DEFAULT_ARGV_BYTES = ArgvLimits.ARGV_DEFAULT_BYTES.value


def check_argv_bytes(n: int) -> None:
    if not 0 <= n <= ArgvLimits.ARGV_MAX_BYTES:
        raise UsageError(
            (
                Setting("argv_bytes"),
                f" {n} is not allowed: use 0 (no arguments) to "
                f"{ArgvLimits.ARGV_MAX_BYTES.value}, e.g. {DEFAULT_ARGV_BYTES}",
            )
        )


def write_settings(layout: PinLayout, ring_size: int, argv_bytes: int) -> None:
    """A fresh load's settings: no readers yet (each takes a slot, readers.py), and
    never one tree (a pinned instance is shared by every process on the host;
    follow mode is `run`'s, on an instance of its own)."""
    # Here, not at the top: the readers import this module, and bpftool's (sh and
    # pydantic) is most of a command's start-up; only `load` writes through it.
    from ..kernel import bpftool

    bpftool.map_update(
        layout.map("settings"),
        key=(0).to_bytes(4, "little"),
        value=settings_value(ring_size, False, argv_bytes),
    )


def settings_value(
    ring_size: int,
    follow: bool,
    argv_bytes: int,
    spawner: tuple[int, int] | None = None,
) -> bytes:
    """struct settings with no readers, as the map stores it.  `ring_size`: the size
    of a reader's ring unless it asks for another.  `spawner` (follow mode): (PID
    namespace inode, pid in it) of the process whose forks start the tree; None:
    none."""
    pidns, tgid = spawner or (0, 0)
    return bytes(
        Settings(
            ring_size=ring_size,
            follow=int(follow),
            argv_bytes=argv_bytes,
            spawner_pidns=pidns,
            spawner_tgid=tgid,
        )
    )


def default_wakeup_bytes(ring_size: int) -> int:
    """Wake a sleeping reader once an eighth of the ring waits: batches stay large,
    and a reader that polls on its timer still has room before anything is lost."""
    return ring_size // 8
