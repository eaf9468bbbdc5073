"""`events --output FILE`: JSON lines appended to a file that is reopened on SIGHUP,
the way logrotate expects (rename the file, send SIGHUP, the writer starts anew).

The sink is handed to stream.follow() in place of stdout; follow() only calls
write() and flush(), once per batch, and commits a batch to the ring only after
writing it: a reopen that fails leaves the batch in the ring for the next reader."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TextIO

from .errors import StateError, UsageError

MODE = 0o640


class ReopeningFile:
    """Appends text to `path`; after reopen_soon() (the SIGHUP handler) the next
    write goes to a freshly opened `path`, so a renamed file stops growing."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._reopen = False
        self._file = self._open(first=True)

    def _open(self, first: bool) -> TextIO:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, MODE)
        except OSError as err:
            what = "open" if first else "reopen"
            cls = UsageError if first else StateError
            raise cls(f"cannot {what} --output {self.path}: {err.strerror}") from None
        return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")

    def reopen_soon(self, signum=None, frame=None) -> None:
        # Only a flag: a signal handler must not swap the file under a write.
        self._reopen = True

    def write(self, text: str) -> int:
        if self._reopen:
            self._reopen = False
            old, self._file = self._file, self._open(first=False)
            old.close()  # flushes what the last batch left in its buffer
        return self._file.write(text)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ReopeningFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def reopen_on_sighup(sink: ReopeningFile) -> None:
    signal.signal(signal.SIGHUP, sink.reopen_soon)
