"""Where a reader's lines go: written with os.write, whole, never half.

Not through sys.stdout's buffered writer: when a signal interrupts a large write to
a pipe part way, CPython's BufferedWriter (3.11 here) returns as if everything had
been written and silently drops the rest (measured: 64 KiB of a 2 MB write arrived,
and the next line began mid-record).  A reader commits a batch to the ring once it
is written, so output that vanished after the commit would be lost for good."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
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


class UntilItFails:
    """`out` until a write to it fails (a closed pipe, a terminal gone, a full disk);
    from then on what is written is dropped, and `failed` is told once.  For output
    that is not the point of the command (`run -- CMD`'s rows): CMD runs on without
    it, as under `time` and `timeout`."""

    def __init__(self, out: Sink, failed: Callable[[OSError], None]):
        self._out = sink_for(out)
        self._failed = failed
        self.error: OSError | None = None
        # Rows are cut to a terminal's width: the descriptor, as FdSink has it.
        self.fd = getattr(self._out, "fd", None)

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                self._out.write(text)
            except OSError as err:
                self._give_up(err)
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._out.flush()
            except OSError as err:
                self._give_up(err)

    def _give_up(self, err: OSError) -> None:
        self.error = err
        self._failed(err)
