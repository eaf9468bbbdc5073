"""`events --output FILE`: JSON lines appended to a file that is reopened on SIGHUP,
the way logrotate expects (rename the file, send SIGHUP, the writer starts anew).

The sink is handed to stream.follow() in place of stdout; follow() only calls
write() and flush(), once per batch, and commits a batch to the ring only after
writing it: a reopen that fails leaves the batch in the ring for the next reader."""

from __future__ import annotations

import os
import signal
import stat
from contextlib import suppress
from pathlib import Path

from .errors import ProcmonError, StateError, UsageError
from .sink import write_all

MODE = 0o640


class ReopeningFile:
    """Appends text to `path`; after reopen_soon() (the SIGHUP handler) the next
    write goes to a freshly opened `path`, so a renamed file stops growing.

    A batch is written whole or not at all: a write that fails (a full disk) is
    cut back to where the batch began, so the file never ends in half a line, and
    the error names the file.  Unbuffered: flush() has nothing to do."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._reopen = False
        self._fd = self._open(first=True)

    def _open(self, first: bool) -> int:
        what = "open" if first else "reopen"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, MODE)
        except OSError as err:
            cls = UsageError if first else StateError
            raise cls(f"cannot {what} --output {self.path}: {err.strerror}") from None
        try:
            self._start_on_a_fresh_line(fd)
        except OSError as err:
            os.close(fd)
            raise StateError(f"cannot {what} --output {self.path}: {err.strerror}") from None
        return fd

    def _start_on_a_fresh_line(self, fd: int) -> None:
        """A file that ends in part of a line (written by something else, or by a
        reader killed in the middle of a write) gets its newline first, so the next
        line is whole.  The records of a cut line were never committed: they come
        again, whole."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not st.st_size:
            return
        with open(self.path, "rb") as f:
            f.seek(st.st_size - 1)
            if f.read(1) != b"\n":
                write_all(fd, b"\n")

    def reopen_soon(self, signum=None, frame=None) -> None:
        # Only a flag: a signal handler must not swap the file under a write.
        self._reopen = True

    def write(self, text: str) -> int:
        if self._reopen:
            self._reopen = False
            old, self._fd = self._fd, self._open(first=False)
            os.close(old)
        data = text.encode("utf-8", "backslashreplace")
        fd = self._fd
        start = os.fstat(fd).st_size
        try:
            write_all(fd, data)
        except OSError as err:
            # O_APPEND and one writer: the batch began at `start`.
            with suppress(OSError):
                os.ftruncate(fd, start)
            raise ProcmonError(
                f"cannot write --output {self.path}: {err.strerror}; nothing of this batch "
                "was kept, and its events stay in the ring buffer for the next reader"
            ) from None
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ReopeningFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def reopen_on_sighup(sink: ReopeningFile) -> None:
    signal.signal(signal.SIGHUP, sink.reopen_soon)
