"""The `settings` map: what user space tells the loaded programs (struct settings).

Written through bpftool after `load`, and by the reader (session.py) while it reads."""

from __future__ import annotations

from ..errors import Setting, UsageError
from ..kernel.abi import SETTINGS, ArgvLimits
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


def write_settings(layout: PinLayout, wakeup_bytes: int, argv_bytes: int) -> None:
    """A fresh load's settings: no thread records (a reader asks for them), and
    never one tree (a pinned instance is shared by every process on the host;
    follow mode is `run`'s, on an instance of its own)."""
    # Here, not at the top: the readers import this module, and bpftool's (sh and
    # pydantic) is most of a command's start-up; only `load` writes through it.
    from ..kernel import bpftool

    bpftool.map_update(
        layout.map("settings"),
        key=(0).to_bytes(4, "little"),
        value=settings_value(0, wakeup_bytes, False, argv_bytes),
    )


def settings_value(
    threads_until_ns: int,
    wakeup_bytes: int,
    follow: bool,
    argv_bytes: int,
    cgroup: tuple[int, int] | None = None,
    cgroup_until_ns: int = 0,
    spawner: tuple[int, int] | None = None,
) -> bytes:
    """struct settings, as the map stores it.  `threads_until_ns`: CLOCK_MONOTONIC
    (bpf_ktime_get_ns) until which thread forks are streamed; 0: never.  `cgroup`:
    (id, level) of the cgroup whose processes alone produce records until
    `cgroup_until_ns`; None: every process.  `spawner` (follow mode): (PID namespace
    inode, pid in it) of the process whose forks start the tree; None: none."""
    cgroup_id, level = cgroup or (0, 0)
    pidns, tgid = spawner or (0, 0)
    return SETTINGS.pack(
        threads_until_ns,
        wakeup_bytes,
        int(follow),
        argv_bytes,
        level,
        cgroup_id,
        cgroup_until_ns if cgroup_id else 0,
        pidns,
        tgid,
    )


def argv_bytes_of(value: bytes) -> int:
    """The argv bound a settings value holds."""
    return SETTINGS.unpack(value)[3]


def default_wakeup_bytes(ring_size: int) -> int:
    """Wake a sleeping reader once an eighth of the ring waits: batches stay large,
    and a reader that polls on its timer still has room before anything is lost."""
    return ring_size // 8
