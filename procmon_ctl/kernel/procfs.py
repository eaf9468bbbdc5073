"""The one reader of /proc/PID's files, and of its stat line: the fields as the
kernel writes them.  What they mean to a process table (a name as text, a parent,
an age) is process/procfs.py's; a lock's waiter asks only whether a process is
stopped.

`root` is where /proc is mounted (a test gives a directory of its own)."""

from __future__ import annotations

import os
from typing import NamedTuple


class StatLine(NamedTuple):
    """/proc/PID/stat, split: the name as the kernel wrote it (it may hold spaces
    and parentheses) and the fields after it, from field 3 (state) on."""

    comm: bytes
    fields: list[bytes]

    @property
    def state(self) -> bytes:
        return self.fields[0]


def read(pid: int, name: str, root: str = "/proc") -> bytes:
    """The whole of /proc/PID/`name`; FileNotFoundError or ProcessLookupError once
    the process has gone."""
    fd = os.open(f"{root}/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def split_stat(stat: bytes) -> StatLine:
    # The name ends at the last ")": nothing after it can hold one.
    open_, close = stat.index(b"("), stat.rindex(b")")
    return StatLine(stat[open_ + 1 : close], stat[close + 2 :].split())


def stat_line(pid: int, root: str = "/proc") -> StatLine | None:
    """Process `pid`'s stat line, or None once it has gone."""
    try:
        return split_stat(read(pid, "stat", root))
    except (FileNotFoundError, ProcessLookupError):
        return None


def is_stopped(pid: int, root: str = "/proc") -> bool:
    """Whether process `pid` is stopped by a signal (SIGSTOP, Ctrl-Z): it runs
    again only once sent SIGCONT.  Not one a debugger holds (state t)."""
    line = stat_line(pid, root)
    return line is not None and line.state == b"T"
