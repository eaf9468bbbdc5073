"""`events --output FILE`: JSON lines appended to a file that is reopened on SIGHUP,
the way logrotate expects (rename the file, send SIGHUP, the writer starts anew).

The sink is handed to stream.follow() in place of stdout; follow() only calls
write() and flush(), once per batch, and commits a batch to the ring only after
writing it: a reopen that fails leaves the batch in the ring for the next reader.

Root writes this file, so it opens only what root means to write, by the rule
logrotate and systemd keep for files root writes (README, "Nobody in"): a final
symlink is never followed; only a regular file is written; in a directory someone
else can write, an existing file must be root's own with one link (a name planted
there may be a link to root's script), and a new one is made with O_EXCL.  Every
check is made on what was opened (fstat), never on the path again, so nothing
can be swapped in between; the same rule holds on every reopen.

One reader writes a file at a time: it holds the file's flock for as long as it
writes it, and a second reader is refused, naming the first.  Two streams
interleaved in one file could not be told apart, and a reader that finds the
file ending in a cut line must know that no other writer is in the middle of a
write."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
from contextlib import suppress
from pathlib import Path

from ..errors import ProcmonError, Setting, StateError, UsageError, Words
from ..instance.locks import holder_of
from .sink import Text, encoded, write_all

MODE = 0o640
OUTPUT = Setting("output")


class ReopeningFile:
    """Appends text to `path`; after reopen_soon() (the SIGHUP handler) the next
    write goes to a freshly opened `path`, so a renamed file stops growing.

    A batch is written whole or not at all: a write that fails (a full disk) is
    cut back to where the batch began, so the file never ends in half a line, and
    the error names the file.  `line_start` is how each of the writer's lines
    begins: a file found ending in part of such a line was cut by a writer killed
    in the middle of a write.  Unbuffered: flush() has nothing to do."""

    def __init__(self, path: str | os.PathLike, line_start: bytes):
        self.path = Path(path)
        self._line_start = line_start
        self._reopen = False
        self._fd = self._open(first=True)

    def _open(self, first: bool) -> int:
        what = "open" if first else "reopen"
        cls = UsageError if first else StateError
        cannot = (f"cannot {what} ", OUTPUT, f" {self.path}: ")
        try:
            fd = open_for_writing(str(self.path), instead=JSON_INSTEAD)
        except OSError as err:
            raise cls((*cannot, f"{err.strerror}")) from None
        except Refused as err:
            raise cls((*cannot, *err.words)) from None
        except ValueError as err:  # an embedded NUL
            raise cls((*cannot, str(err))) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = holder_of(os.fstat(fd))
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise StateError(
                (*cannot, f"another reader is writing it{who}: stop that reader first, "
                 "or give each reader a file of its own")
            ) from None  # fmt: skip
        try:
            self._start_on_a_fresh_line(fd)
        except OSError as err:
            os.close(fd)
            raise StateError((*cannot, f"{err.strerror}")) from None
        return fd

    def _start_on_a_fresh_line(self, fd: int) -> None:
        """A file that ends in part of a line is made to end in a whole one before
        the first write.  Part of one of our lines (a reader killed in the middle
        of a write; SIGKILL stops a large write between pages) is cut off: its
        records were never committed, so they come again, whole, and nothing
        that reads whole lines (a shipper) had taken it.  Part of anything else
        is not ours to remove: it gets its newline."""
        size = os.fstat(fd).st_size
        if not size or os.pread(fd, 1, size - 1) == b"\n":
            return
        begins = _last_line_start(fd, size)
        if self._line_start.startswith(os.pread(fd, len(self._line_start), begins)):
            os.ftruncate(fd, begins)
        else:
            write_all(fd, b"\n")

    def reopen_soon(self, signum=None, frame=None) -> None:
        # Only a flag: a signal handler must not swap the file under a write.
        self._reopen = True

    def write(self, text: Text) -> int:
        if self._reopen:
            self._reopen = False
            old, self._fd = self._fd, self._open(first=False)
            os.close(old)
        data = encoded(text)
        fd = self._fd
        start = os.fstat(fd).st_size
        try:
            write_all(fd, data)
        except OSError as err:
            # O_APPEND and one writer: the batch began at `start`.
            with suppress(OSError):
                os.ftruncate(fd, start)
            raise ProcmonError(
                (
                    "cannot write ",
                    OUTPUT,
                    f" {self.path}: {err.strerror}; nothing of this batch "
                    "was kept, and its events stay in the ring buffer for the next reader",
                )
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


def _last_line_start(fd: int, size: int) -> int:
    """Where the last line of the file (`size` bytes) begins: just after its last
    newline, or 0.  Read backwards a chunk at a time: a line can be long (a whole
    argv), the file far longer."""
    end = size
    while end:
        start = max(0, end - LINE_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


LINE_CHUNK = 64 * 1024


class Refused(Exception):
    """Why a path is not opened: the end of the one line the user sees."""

    def __init__(self, *words: str | Setting):
        super().__init__("".join(w if isinstance(w, str) else w.name for w in words))
        self.words: Words = words


# What a name that is not a regular file is, for the error line.
KINDS = {
    stat.S_IFLNK: "a symlink",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}

# A name that is replaced again each time it is looked at: give up after this many.
ATTEMPTS = 5

# Where events go when they are not for a regular file: the end of a Refused line.
JSON_INSTEAD: Words = ("for a pipe or the terminal use ", Setting("json"), ")")


def open_for_writing(
    path: str, instead: Words, truncate: bool = False, mode: int | None = MODE
) -> int:
    """`path` opened for appending (and reading its last byte) by the rule in the
    module's docstring; emptied first with `truncate`.  A new file is `mode`
    whatever the umask (None: as the umask makes it, 0666 less its bits, as for a
    shell's redirection); an existing one keeps its mode and owner.  `instead`
    ends the line that refuses what is not a regular file: what to use for a pipe
    or the terminal.  Raises Refused (or OSError)."""
    head, name = os.path.split(path)
    if name in ("", ".", ".."):
        raise Refused("it is a directory: give the name of a file in it")
    # The directory is opened once and every look-up below is made in it: what is
    # checked is what is written to, whatever is renamed meanwhile.
    dir_fd = os.open(head or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        shared = _others_can_write(os.fstat(dir_fd))
        for _ in range(ATTEMPTS):
            try:
                # O_PATH: looks at the name without opening what it is (a FIFO would
                # block, a device might act on open); O_NOFOLLOW: a symlink is
                # looked at, not followed.
                found = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                fd = _create(name, dir_fd, mode)
                if fd is not None:
                    return fd
                continue  # made by someone else in between: look at what it is
            try:
                _check(os.fstat(found), shared, instead)
                # The very inode checked, now for writing.
                flags = os.O_RDWR | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC
                return os.open(f"/proc/self/fd/{found}", flags | (os.O_TRUNC if truncate else 0))
            finally:
                os.close(found)
        raise Refused(
            f"it appeared and vanished {ATTEMPTS} times while it was being opened: someone "
            "else writes in its directory; choose a directory only root can write"
        )
    finally:
        os.close(dir_fd)


def _create(name: str, dir_fd: int, mode: int | None) -> int | None:
    """A new file, or None if the name exists by now.  O_EXCL: the file is the one
    made here, never one planted under the name, nor a symlink's target."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o666 if mode is None else mode, dir_fd=dir_fd)
    except FileExistsError:
        return None
    if mode is None:
        return fd
    try:
        os.fchmod(fd, mode)  # the umask took bits away: never readable by others, always 0640
    except OSError:
        os.close(fd)
        raise
    return fd


def _others_can_write(dir_st: os.stat_result) -> bool:
    """A directory where someone other than us can add, remove or rename names:
    writable by group or others (sticky or not), or someone else's."""
    return dir_st.st_uid != os.geteuid() or bool(dir_st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _check(st: os.stat_result, shared: bool, instead: Words) -> None:
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        what = KINDS.get(kind, "not a regular file")
        if kind == stat.S_IFLNK:
            raise Refused(
                f"it is {what}, and no symlink is followed for a file root writes: "
                "give the path of the file itself (",
                *instead,
            )
        raise Refused(
            f"it is {what}, not a regular file: output is written to regular files only (",
            *instead,
        )
    if not shared:
        return  # only root could have put it there: root's choice stands
    me = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    if st.st_uid != os.geteuid():
        raise Refused(
            f"it belongs to uid {st.st_uid}, in a directory others can write, where only a "
            f"file of {me}'s own is appended to; remove it, or choose a directory only "
            f"{me} can write"
        )
    if st.st_nlink > 1:
        raise Refused(
            f"it has {st.st_nlink} hard links, in a directory others can write, where a link "
            f"may be to any file of {me}'s; remove it, or choose a directory only {me} can write"
        )


def reopen_on_sighup(sink: ReopeningFile) -> None:
    signal.signal(signal.SIGHUP, sink.reopen_soon)
