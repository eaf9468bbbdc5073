"""What /proc/PID says of a process: what it is called, its parent, its command
line and when it started, from the files kernel/procfs.py reads.  A few lines of
our own rather than psutil: two small files per process, and no extra dependency.

`root` is where /proc is mounted (a test gives a directory of its own)."""

from __future__ import annotations

import os
from typing import NamedTuple

from ..kernel.procfs import StatLine, read, split_stat, stat_line
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


def _stat(pid: int, line: StatLine) -> ProcStat:
    return ProcStat(pid, int(line.fields[1]), text(line.comm), int(line.fields[19]))


def read_stat(pid: int, root: str = "/proc") -> ProcStat | None:
    """The process `pid` as its stat file shows it, or None once it has gone."""
    line = stat_line(pid, root)
    return None if line is None else _stat(pid, line)


def read_process(pid: int, root: str = "/proc") -> ProcInfo | None:
    """The process `pid` with its command line, or None once it has gone."""
    try:
        stat = read(pid, "stat", root)
        cmdline = read(pid, "cmdline", root)
    except (FileNotFoundError, ProcessLookupError):
        return None
    pid, ppid, comm, start_ticks = _stat(pid, split_stat(stat))
    return ProcInfo(pid, ppid, comm, split_argv(cmdline), start_ticks)


def pids(root: str = "/proc") -> list[int]:
    """Every process /proc shows now (some may be gone by the time they are read)."""
    return [int(e.name) for e in os.scandir(root) if e.name.isdigit()]


def processes(root: str = "/proc") -> list[ProcInfo]:
    """Every process /proc shows now that is still there once read, oldest first."""
    found = [info for pid in pids(root) if (info := read_process(pid, root)) is not None]
    found.sort(key=lambda i: (i.start_ticks, i.pid))
    return found
