"""The one reader of /proc/PID: what a process is called, its parent, its command
line and when it started.  Read with a few lines of our own rather than psutil: two
small files per process, and no extra dependency.

`root` is where /proc is mounted (a test gives a directory of its own)."""

from __future__ import annotations

import os
from typing import NamedTuple

from .decode import split_argv, text


class ProcStat(NamedTuple):
    """What /proc/PID/stat tells of a process."""

    pid: int
    ppid: int
    comm: str
    start_ticks: int  # since boot, in clock ticks: orders processes by age


class ProcInfo(NamedTuple):
    """/proc/PID/stat and the command line."""

    pid: int
    ppid: int
    comm: str
    argv: tuple[str, ...]
    start_ticks: int


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _parse_stat(pid: int, stat: bytes) -> ProcStat:
    # The name may hold spaces and parentheses: it ends at the last ")".
    open_, close = stat.index(b"("), stat.rindex(b")")
    fields = stat[close + 2 :].split()  # from field 3, state
    return ProcStat(pid, int(fields[1]), text(stat[open_ + 1 : close]), int(fields[19]))


def read_stat(pid: int, root: str = "/proc") -> ProcStat | None:
    """The process `pid` as its stat file shows it, or None once it has gone."""
    try:
        return _parse_stat(pid, _read(f"{root}/{pid}/stat"))
    except (FileNotFoundError, ProcessLookupError):
        return None


def read_process(pid: int, root: str = "/proc") -> ProcInfo | None:
    """The process `pid` with its command line, or None once it has gone."""
    try:
        stat = _read(f"{root}/{pid}/stat")
        cmdline = _read(f"{root}/{pid}/cmdline")
    except (FileNotFoundError, ProcessLookupError):
        return None
    pid, ppid, comm, start_ticks = _parse_stat(pid, stat)
    return ProcInfo(pid, ppid, comm, split_argv(cmdline), start_ticks)


def pids(root: str = "/proc") -> list[int]:
    """Every process /proc shows now (some may be gone by the time they are read)."""
    return [int(e.name) for e in os.scandir(root) if e.name.isdigit()]


def processes(root: str = "/proc") -> list[ProcInfo]:
    """Every process /proc shows now that is still there once read, oldest first."""
    found = [info for pid in pids(root) if (info := read_process(pid, root)) is not None]
    found.sort(key=lambda i: (i.start_ticks, i.pid))
    return found
