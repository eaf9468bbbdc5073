"""Where `run -- CMD` writes what it writes, its rows and its summary, so that it
stays out of CMD's way: a file of its own (as `strace -o` and `time -o`), and on a
terminal CMD writes to as well, each write on a line of its own.

CMD keeps the terminal (its stdout and stderr are run's, untouched: it still sees a
terminal and behaves as it would without run), so run cannot know where CMD left
the cursor; render.fresh_line() moves to a line of its own from wherever it is."""

from __future__ import annotations

import fcntl
import os
import re

from ..errors import Given, Setting, UsageError
from ..process.users import RunAs, acting_as
from ..stream.logfile import Refused, open_for_writing
from ..stream.sink import FdSink, Sink, Text, decoded, sink_for
from ..views import render

OUTPUT = Setting("output")
# The end of the line that refuses a path that is not a regular file.
STDOUT_INSTEAD = ("for stdout give - as the file)",)


class FreshLines:
    """`out`, a terminal that CMD writes to, with each write starting on a line of
    its own (render.fresh_line).  A write is a whole batch of rows, or the summary:
    lines of run's own stay together."""

    def __init__(self, out: Sink, fd: int):
        self._out = out
        self.fd = fd  # rows are cut to the terminal's width

    def write(self, text: Text) -> int:
        if text:
            self._out.write(render.fresh_line(self.fd) + decoded(text))
        return len(text)

    def flush(self) -> None:
        self._out.flush()


def shared_with_cmd(out: Sink) -> Sink:
    """`out`, one of run's own standard streams (which CMD inherits), as a sink:
    on a terminal, one whose writes start on lines of their own."""
    sink = sink_for(out)
    fd = getattr(sink, "fd", None)
    if fd is not None and os.isatty(fd):
        return FreshLines(sink, fd)
    return sink


# The names of a descriptor run was given: /dev/fd/N (a shell's `>(...)`), its
# /proc spelling, /dev/stdout and /dev/stderr.
FD_NAME = re.compile(r"/(?:dev|proc/self)/fd/([0-9]+)")
STANDARD = {"/dev/stdout": 1, "/dev/stderr": 2}


def inherited_fd(path: str) -> int | None:
    """The descriptor of run's that `path` names, if it names one."""
    if path in STANDARD:
        return STANDARD[path]
    found = FD_NAME.fullmatch(path)
    return int(found[1]) if found else None


class OutputFile(FdSink):
    """The file run writes to instead of CMD's terminal.  Emptied first, as `time -o`
    and `strace -o` do: one run, one file (the summary ends it).

    Root opens it by the rule root keeps for the files it writes (stream.logfile:
    regular files only, no symlink followed, no file of someone else's in a
    directory others can write), unless CMD runs as a user (`user`): then the file
    is the user's, opened with the user's rights, as their shell would open it for
    a redirection (and they own it if it is new).  /dev/fd/N, /dev/stdout and
    /dev/stderr are run's own descriptors (inherited_fd), written as they are."""

    def __init__(self, path: str, user: RunAs | None = None):
        cannot = ("cannot open ", OUTPUT, " ", Given(path), ": ")
        try:
            inherited = inherited_fd(path)
            if inherited is not None:
                # One of run's own descriptors, as a shell's `>(...)` gives: written as
                # it is, as bash does for these names (nothing to empty, no rule: it is
                # what the caller opened).
                fd = fcntl.fcntl(inherited, fcntl.F_DUPFD_CLOEXEC, 3)
            elif user is None:
                fd = open_for_writing(path, STDOUT_INSTEAD, truncate=True, mode=None)
            else:
                with acting_as(user):
                    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOCTTY | os.O_CLOEXEC
                    fd = os.open(path, flags, 0o666)
        except OSError as err:
            raise UsageError((*cannot, f"{err.strerror}")) from None
        except Refused as err:
            raise UsageError((*cannot, *err.words)) from None
        except ValueError as err:  # an embedded NUL
            raise UsageError((*cannot, str(err))) from None
        super().__init__(fd)
        self.path = path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
