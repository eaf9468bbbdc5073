"""Where a reader's lines go: written with os.write, whole, never half.

Not through sys.stdout's buffered writer: when a signal interrupts a large write to
a pipe part way, CPython's BufferedWriter (3.11 here) returns as if everything had
been written and silently drops the rest (measured: 64 KiB of a 2 MB write arrived,
and the next line began mid-record).  A reader commits a batch to the ring once it
is written, so output that vanished after the commit would be lost for good."""

from __future__ import annotations

import io
import os
from typing import Protocol


class Sink(Protocol):
    def write(self, text: str) -> object: ...

    def flush(self) -> None: ...


def write_all(fd: int, data: bytes) -> None:
    """Every byte of `data` to `fd`: a write cut short (by a signal, or a pipe that
    takes part of it) goes on from where it stopped."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FdSink:
    """Text to a file descriptor (stdout, stderr), unbuffered."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, text: str) -> int:
        write_all(self.fd, text.encode("utf-8", "backslashreplace"))
        return len(text)

    def flush(self) -> None:
        pass


def sink_for(out: Sink) -> Sink:
    """`out` itself, unless it is a text file on a descriptor (sys.stdout): then
    what it holds is flushed and its descriptor is written directly."""
    if isinstance(out, io.TextIOBase):
        try:
            fd = out.fileno()
        except (OSError, io.UnsupportedOperation):
            return out
        out.flush()
        return FdSink(fd)
    return out
