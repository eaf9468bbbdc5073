"""Text for people: the seed's table, --wide and --raw lines, stats.  Every name a
process chose is passed through printable() so it cannot drive the terminal.

Names, filenames and arguments arrive as decode.text() made them (a byte that is
not UTF-8 as \\xNN, a backslash as \\\\); printable() escapes what a terminal would
act on, in a way that cannot be mistaken for text()'s escapes, so what a table
shows still maps back to the exact bytes."""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal as signal_names
import time as time_module
import unicodedata
from collections.abc import Callable, Sequence

from ..errors import Command, Setting, Words
from ..kernel.abi import EXEC, EXEC_FAILED, EXIT, EventType
from ..process import clock, decode
from ..process.decode import Event, Usage, errno_name
from ..process.rows import Row


def _escape(ch: str) -> str:
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x80:
        return f"\\x{code:02x}"  # the same byte as text()'s \xNN would stand for
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """Text safe for a terminal: every character Python's str.isprintable() rejects
    is shown as an escape: \\xNN below U+0080 (control characters: ESC, newline,
    DEL), \\uNNNN or \\UNNNNNNNN above (C1 codes such as \\u009b, the bidi controls
    U+202A-U+202E, U+2066-U+2069 and the marks U+200E, U+200F, U+061C, other
    invisible format characters, separators other than the space).  So a process
    name cannot move the cursor, retitle the terminal or reorder how the rest of its
    line is displayed.

    A backslash is left as it is: `text` comes from decode.text(), which already
    doubles it, so \\\\ is a backslash, \\xNN one byte (text()'s escape of a byte
    that is not UTF-8, or here a control character: the same byte) and \\u or \\U a
    character (text() never writes those): what is shown reads back to the exact
    bytes the process had."""
    # Nearly every name passes this test, which costs no copy and no per-character call.
    if text.isprintable():
        return text
    return "".join(map(_escape, text))


# The mark of a command line cut short: its last argument was cut, or arguments
# are missing (argv_truncated).  An argument that is literally "..." is quoted.
TRUNCATED = "..."
# The mark of a line cut to the terminal's width.
CUT = "\u2026"


def quote_arg(arg: str) -> str:
    """One argument as a word of a shell command line, after printable(): as it
    is when it needs no quoting, else in single quotes (so an empty argument shows
    as '' and one with spaces stays one word); shlex.split() gives it back."""
    shown = printable(arg)
    if shown == TRUNCATED:
        return "'...'"
    return shlex.quote(shown)


def given(arg: str) -> str:
    """A word the user gave on the command line (os.fsdecode()d by Python: a byte
    that is not UTF-8 is a lone surrogate) for a message: its bytes named as a
    process's arguments are (decode.text()), quoted as quote_arg() does."""
    return quote_arg(decode.text(os.fsencode(arg)))


# What shlex.quote() leaves unquoted, and the space between arguments.
_NEEDS_QUOTES = re.compile(r"[^\w@%+=:,./ -]", re.ASCII).search


def cmdline(argv: Sequence[str], truncated: bool = False) -> str:
    """A command line for a table: its arguments as quote_arg() shows them, joined
    by spaces, then ... when it was cut (argv_truncated)."""
    text = " ".join(argv)
    # Most command lines need no quoting nor escaping at all: one test for them all.
    if (
        _NEEDS_QUOTES(text) is not None
        or text.count(" ") != len(argv) - 1
        or "" in argv
        or TRUNCATED in argv
    ):
        text = " ".join(map(quote_arg, argv))
    if truncated:
        return f"{text} {TRUNCATED}" if text else TRUNCATED
    return text


def _char_width(ch: str) -> int:
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 2
    return 0 if unicodedata.category(ch) in ("Mn", "Me") else 1


def columns(text: str) -> int:
    """How many terminal columns printable text takes."""
    if text.isascii():
        return len(text)
    return sum(map(_char_width, text))


def fit(text: str, width: int) -> str:
    """`text` (printable) cut to `width` columns, ending in CUT when it was cut."""
    if text.isascii():
        return text if len(text) <= width else text[: max(width - 1, 0)] + CUT
    if columns(text) <= width:
        return text
    room, used = width - 1, 0
    for i, ch in enumerate(text):
        used += _char_width(ch)
        if used > room:
            return text[:i] + CUT
    return text  # not reached


def stream_width(stream) -> int | None:
    """tty_width of a Python stream; None when it has no descriptor (a test's capture):
    then it is not a terminal."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return None
    return tty_width(fd)


def tty_width(fd: int | None) -> int | None:
    """The width to cut table lines to: the terminal's (COLUMNS when set, as for
    ls and ps) when `fd` is a terminal; None (keep lines whole) when it is not."""
    if fd is None:
        return None
    try:
        if not os.isatty(fd):
            return None
    except OSError:
        return None
    try:
        width = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        width = 0
    if width <= 0:
        try:
            width = os.get_terminal_size(fd).columns
        except OSError:
            width = 0
    return width if width > 0 else 80  # a terminal that says 0: what shutil assumes


def fresh_line(fd: int) -> str:
    """What to write before a line to the terminal on `fd`, which another program
    also writes to, so that the line starts a line of its own and never continues
    one the other left unfinished (a progress line without its newline), without
    erasing it: as many spaces as the terminal is wide, then a carriage return.
    From the first column the spaces fill the line and the cursor waits at its end
    (terminals wrap only when the next character comes), and the carriage return
    brings it back to the start of that line; from any other they wrap, and the
    carriage return brings the cursor to the start of the next line.  zsh does the
    same before each prompt.  The terminal's own width, not COLUMNS: a wrong width
    would break it.  "" when `fd` is no terminal or does not say its width."""
    try:
        columns = os.get_terminal_size(fd).columns if os.isatty(fd) else 0
    except OSError:
        columns = 0
    return " " * columns + "\r" if columns > 0 else ""


# Column widths.  Fixed, not fitted to what was seen, so that every row of a stream
# lines up with the header and a table reads the same on any host.
TIME_WIDTH = 12  # "22:15:01.123"
PID_WIDTH = 7  # pid_max is at most 4194304 (PID_MAX_LIMIT)
UID_WIDTH = 6  # rootless containers' subordinate ids have 6 digits
USER_WIDTH = 8  # as ps: a longer name is cut and ends in +
COMM_WIDTH = 15  # the kernel keeps 15 bytes of a name (TASK_COMM_LEN - 1)
EVENT_WIDTH = 8  # "exit 255", "SIGKILL"
TYPE_WIDTH = 5  # --raw: fork, exec, exit, exec!
CONTAINER_WIDTH = 12  # as podman ps and docker ps show ids; a longer name is cut
# The CONTAINER cell of a process outside containers (as ps shows a missing TTY).
NO_CONTAINER = "-"

# (title, width) of each column before the last, which takes the rest of the line.
_COLUMNS = {
    "table": ((("PID", PID_WIDTH), ("PPID", PID_WIDTH), ("COMM", COMM_WIDTH)), "CMDLINE"),
    "wide": (
        (("PID", PID_WIDTH), ("PPID", PID_WIDTH), ("USER", USER_WIDTH), ("EVENT", EVENT_WIDTH)),
        "COMMAND",
    ),
    "raw": (
        (
            ("TYPE", TYPE_WIDTH),
            ("PID", PID_WIDTH),
            ("TGID", PID_WIDTH),
            ("PPID", PID_WIDTH),
            ("UID", UID_WIDTH),
            ("COMM", COMM_WIDTH),
        ),
        "DETAIL",
    ),
}

# Where each mode shows the TIME column unless --time/--no-time says otherwise: --wide
# is the view with everything; the narrow table gives its columns to the command line.
TIME_BY_DEFAULT = {"table": False, "wide": True, "raw": False}

# After what came while a named reader was down (what waited in its ring), in the tables.
BACKLOG: Words = (
    "-- above: while this reader was down (",
    Setting("from_now"),
    " skips it) --",
)


def _cells(cells: Sequence[tuple[str, int]], last: str, width: int | None) -> str:
    """Cells padded to their widths, then `last`.  On a terminal (`width`) a cell is
    cut to its column and `last` to what is left of the line; piped, all is whole
    (a cell longer than its column, a name full of escapes, pushes the rest on)."""
    parts = []
    for text, size in cells:
        if width is not None:
            text = fit(text, size)
        parts.append(text + " " * (size - columns(text)))
    head = " ".join(parts)
    if not last:
        return head.rstrip()
    head += " "
    if width is None:
        return head + last
    used = columns(head)
    if used >= width:
        return fit(head + last, width)
    return head + fit(last, width - used)


def header(mode: str, time: bool | None = None, container: bool = False) -> str:
    """The title line and the dashed rule of `mode`'s table ("" for JSON), with the
    TIME column first when `time` (None: the mode's default), and the CONTAINER
    column before the last when `container`."""
    if mode not in _COLUMNS:
        return ""
    cells, last = _COLUMNS[mode]
    if time if time is not None else TIME_BY_DEFAULT[mode]:
        cells = (("TIME", TIME_WIDTH), *cells)
    if container:
        cells = (*cells, ("CONTAINER", CONTAINER_WIDTH))
    titles = _cells(cells, last, None)
    rule = _cells([("-" * size, size) for _, size in cells], "-" * len(last), None)
    return f"{titles}\n{rule}\n"


def _time_cell(ts_ns: int) -> tuple[str, int]:
    return (clock.time_of_day(ts_ns), TIME_WIDTH)


def container_cell(name: str | None, container_id: str | None) -> str:
    """A process's CONTAINER cell: its container's name as the runtime has it, else
    its id as podman ps and docker ps show one (12 hex digits; nspawn's machine
    name whole), NO_CONTAINER outside containers."""
    if name:
        return printable(name)
    if container_id:
        return container_id[:12] if _HEX_ID(container_id) else printable(container_id)
    return NO_CONTAINER


_HEX_ID = re.compile(r"[0-9a-f]{64}").fullmatch


def _with_container(cells: list[tuple[str, int]], container: str | None) -> None:
    if container is not None:
        cells.append((container, CONTAINER_WIDTH))


def row_line(
    r: Row, width: int | None = None, time: bool = False, container: str | None = None
) -> str:
    """A row of the default table: [TIME] PID PPID COMM [CONTAINER] CMDLINE (the
    CONTAINER cell when `container` is given).  With `width` (a terminal's) every
    column is cut to fit, the command line to the rest of the line; without, the
    line is whole."""
    if r.thread:
        last = f"[thread of {r.tgid}]"
    elif r.argv or r.argv_truncated:
        last = cmdline(r.argv, r.argv_truncated)
    else:
        last = ""
    cells = [(str(r.pid), PID_WIDTH), (str(r.ppid), PID_WIDTH), (printable(r.comm), COMM_WIDTH)]
    if time:
        cells.insert(0, _time_cell(r.ts_ns))
    _with_container(cells, container)
    return _cells(cells, last, width)


def signal_text(number: int) -> str:
    """A signal as every view writes it: its name as kill -l gives it with the SIG
    prefix (SIGKILL, SIGRTMIN+3), SIG and the number for one Linux has no name for.
    JSON keeps the number."""
    try:
        return signal_names.Signals(number).name
    except ValueError:
        pass
    low, high = signal_names.SIGRTMIN, signal_names.SIGRTMAX
    if low < number < high:
        return f"SIGRTMIN+{number - low}"
    return f"SIG{number}"


def _signal_cell(signal: int) -> str:
    name = signal_text(signal)
    return name if len(name) <= EVENT_WIDTH else f"SIG{signal}"


def _event_text(r: Row) -> str:
    if r.failed:
        return "failed"
    if r.exited:
        if r.exit_signal:
            return _signal_cell(r.exit_signal)
        return "exit" if r.exit_code is None else f"exit {r.exit_code}"
    if r.thread:
        return "thread"
    return "exec" if r.filename or r.argv or r.argv_truncated else "fork"


def _resolves_to(argv0: str, filename: str) -> bool:
    """Whether a shell would find `filename` for `argv0` (the same path, or a name
    looked up in PATH that ends the path): then FILENAME says nothing more."""
    if argv0 == filename:
        return True
    return "/" not in argv0 and filename.endswith("/" + argv0)


def program(filename: str, argv: Sequence[str], truncated: bool) -> str:
    """The command line, after the file exec'd in parentheses when argv[0] does not
    name it (`exec -a`, a login shell's -bash, a wrapper's argv[0]): `(/bin/bash) -bash`.
    Parentheses: no word of a command line shows unquoted with one (quote_arg)."""
    line = cmdline(argv, truncated)
    if not filename or (argv and _resolves_to(argv[0], filename)):
        return line
    shown = f"({quote_arg(filename)})"
    return f"{shown} {line}" if line else shown


def _command_text(r: Row) -> str:
    """--wide's COMMAND: the program and its arguments; a name in brackets (as ps shows
    a process without a command line) for a process that has exec'd nothing, a
    thread, and the process whose exec failed (before what it tried)."""
    if r.failed:  # the caller, by name (its command line is elsewhere), then the attempt
        return f"[{printable(r.comm)}] {cmdline(r.argv, r.argv_truncated)}"
    if r.thread:
        return f"[{printable(r.comm)}, thread of {r.tgid}]"
    if r.filename or r.argv or r.argv_truncated:
        return program(r.filename, r.argv, r.argv_truncated)
    return f"[{printable(r.comm)}]"


def user_cell(name: str) -> str:
    """A user's name in the USER column: cut as ps cuts it, ending in +."""
    name = printable(name)
    return name if len(name) <= USER_WIDTH else name[: USER_WIDTH - 1] + "+"


def wide_line(
    r: Row,
    width: int | None = None,
    time: bool = True,
    container: str | None = None,
    user: Callable[[int], str] = str,
) -> str:
    """A row of --wide: [TIME] PID PPID USER EVENT [CONTAINER] COMMAND.  USER is `user`(the uid):
    its name (process.users.UserNames), the number where no user has it.  EVENT says what the row
    is (exec, fork: a process that exec'd nothing, thread, failed: an exec that
    failed, or how the process ended: exit N or the signal); an exit row's COMMAND
    starts with how long the process ran."""
    last = _command_text(r)
    if r.exited and not r.failed:
        cost = f" {usage_text(r.usage)}" if r.usage is not None else ""
        last = f"after {duration_text(r.duration_ns) or '?'}{cost}: {last}"
    cells = [
        (str(r.pid), PID_WIDTH),
        (str(r.ppid), PID_WIDTH),
        (user_cell(user(r.uid)), USER_WIDTH),
        (_event_text(r), EVENT_WIDTH),
    ]
    if time:
        cells.insert(0, _time_cell(r.ts_ns))
    _with_container(cells, container)
    return _cells(cells, last, width)


def table_line(
    fd: int | None,
    mode: str = "table",
    time: bool | None = None,
    container: Callable[[int], str] | None = None,
) -> Callable[[Row], str]:
    """The row function of `mode`'s table ("table" or "wide") written to `fd`: cut to
    the terminal's width when `fd` is a terminal (read again every second: the window
    may be resized), whole when it is not (a pipe, a file).  `container`: a row's
    cgroup id to its CONTAINER cell (None: no such column)."""
    if mode == "wide":
        from ..process.users import UserNames

        render_row = functools.partial(wide_line, user=UserNames().name)
    else:
        render_row = row_line
    with_time = time if time is not None else TIME_BY_DEFAULT[mode]
    if container is None:
        return _at_width(fd, lambda r, width: render_row(r, width, with_time))
    return _at_width(fd, lambda r, width: render_row(r, width, with_time, container(r.cgroup_id)))


def _at_width(fd: int | None, render_one: Callable) -> Callable:
    width = tty_width(fd)
    if width is None:
        return lambda item: render_one(item, None)
    checked = time_module.monotonic()

    def line(item) -> str:
        nonlocal width, checked
        now = time_module.monotonic()
        if now - checked >= 1.0:
            width, checked = tty_width(fd), now
        return render_one(item, width)

    return line


def line_at_width(fd: int | None) -> Callable[[str], str]:
    """A line that is not a row (the gap and backlog lines): cut to the terminal's
    width, whole when piped."""
    return _at_width(fd, lambda text, width: text if width is None else fit(text, width))


def _exit_text(code: int | None, signal: int | None) -> str:
    if code is None:
        return ""
    return signal_text(signal) if signal else str(code)


def duration_text(ns: int | None) -> str:
    if ns is None:
        return ""
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.2f}s"


def memory_text(kib: int) -> str:
    """A size given in KiB, in binary units as `free -h` writes them: 912K, 12.3M, 1.5G."""
    if kib < 1024:
        return f"{kib}K"
    if kib < 1024 * 1024:
        return f"{kib / 1024:.1f}M"
    return f"{kib / (1024 * 1024):.1f}G"


def usage_text(u: Usage) -> str:
    """What a process cost, in an exit row: its CPU time (user and system) and its
    peak resident memory, `cpu 1.20s 12.3M`: short enough that, with the longest
    lifetime, CPU time and size, a row of 80 columns still shows it whole."""
    return f"cpu {duration_text(u.cpu_user_ns + u.cpu_system_ns)} {memory_text(u.max_rss_kib)}"


def attempt_words(e: Event) -> tuple[str, ...]:
    """What a failed exec tried, as the words of a command line: `ENOENT:`, the path,
    then the arguments (cmdline() quotes and escapes them, and adds ... when cut)."""
    return (f"{errno_name(e.errno)}:", e.filename or "", *(e.argv or ()))


# --raw's TYPE: the record type's name, "exec!" for a failed exec.
_RAW_TYPES = {t: t.name.lower() for t in EventType} | {EXEC_FAILED: "exec!"}


def raw_line(
    e: Event, width: int | None = None, time: bool = False, container: str | None = None
) -> str:
    """A line of --raw: [TIME] TYPE PID TGID PPID UID COMM [CONTAINER] DETAIL, one
    per record."""
    kind = _RAW_TYPES.get(e.type) or str(e.type)
    if e.type == EXEC:
        detail = program(e.filename or "", e.argv or (), bool(e.argv_truncated))
    elif e.type == EXIT:
        code = _exit_text(e.exit_code, e.exit_signal)
        detail = f"exit={code} after {duration_text(e.duration_ns)}"
    elif e.type == EXEC_FAILED:
        detail = cmdline(attempt_words(e), bool(e.argv_truncated))
    else:
        detail = "thread" if e.thread else ""
    cells = [
        (kind, TYPE_WIDTH),
        (str(e.pid), PID_WIDTH),
        (str(e.tgid), PID_WIDTH),
        (str(e.ppid), PID_WIDTH),
        (str(e.uid), UID_WIDTH),
        (printable(e.comm), COMM_WIDTH),
    ]
    if time:
        cells.insert(0, _time_cell(e.ts_ns))
    _with_container(cells, container)
    return _cells(cells, detail, width)


def raw_lines(
    fd: int | None, time: bool | None = None, container: Callable[[int], str] | None = None
) -> Callable[[Event], str]:
    """raw_line() for --raw written to `fd`, cut to a terminal's width as the tables
    are; `container` as table_line()'s."""
    with_time = time if time is not None else TIME_BY_DEFAULT["raw"]
    if container is None:
        return _at_width(fd, lambda e, width: raw_line(e, width, with_time))
    return _at_width(fd, lambda e, width: raw_line(e, width, with_time, container(e.cgroup_id)))


def gap_line(dropped: int, words: Callable[[Words], str]) -> str:
    """The line where records were lost, pointing at the command that counts them
    (words: the CLI's, which spell it for the instance read)."""
    return words(
        (
            f"-- {dropped} event(s) lost here: the kernel had no room for them (see ",
            Command("stats"),
            ") --",
        )
    )


# A command line gives way to the rest of its line down to its first character and
# the mark; only on a terminal too narrow for even that is the rest cut too.
MIN_COMMAND = 2


def fit_if(line: str, width: int | None) -> str:
    """`line` cut to `width` columns when there is one (a terminal's)."""
    return line if width is None else fit(line, width)


def with_command(head: str, command: str, width: int | None) -> str:
    """`head: command`, the command line cut (at its end) to what room is left."""
    line = f"{head}: {command}"
    if width is None or columns(line) <= width:
        return line
    room = width - columns(head) - 2
    if room < MIN_COMMAND:
        return fit(line, width)
    return f"{head}: {fit(command, room)}"
