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

# What a sink takes: text, or text already encoded as UTF-8 (the C JSON writer's
# batches, written from its buffer with no copy).
Text = str | bytes | memoryview


def encoded(text: Text) -> bytes | memoryview:
    """`text` as the bytes to write (a name that is not UTF-8 keeps its bytes as \\x..)."""
    return text.encode("utf-8", "backslashreplace") if isinstance(text, str) else text


def decoded(text: Text) -> str:
    return text if isinstance(text, str) else str(text, "utf-8")


class Sink(Protocol):
    def write(self, text: Text) -> object: ...

    def flush(self) -> None: ...


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Every byte of `data` to `fd`: a write cut short (by a signal, or a pipe that
    takes part of it) goes on from where it stopped."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FdSink:
    """Text to a file descriptor (stdout, stderr), unbuffered."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, text: Text) -> int:
        write_all(self.fd, encoded(text))
        return len(text)

    def flush(self) -> None:
        pass


class TextOnly:
    """A text stream with no descriptor of its own (io.StringIO, a test runner's
    capture): what comes encoded is decoded for it."""

    def __init__(self, out: io.TextIOBase):
        self._out = out

    def write(self, text: Text) -> int:
        return self._out.write(decoded(text))

    def flush(self) -> None:
        self._out.flush()


def sink_for(out: Sink) -> Sink:
    """`out` itself, unless it is a text file: one on a descriptor (sys.stdout) is
    flushed and its descriptor written directly; one without takes text only."""
    if isinstance(out, io.TextIOBase):
        try:
            fd = out.fileno()
        except (OSError, io.UnsupportedOperation):
            return TextOnly(out)
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

    def write(self, text: Text) -> int:
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
