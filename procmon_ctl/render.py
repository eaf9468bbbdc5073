"""Text for people: the seed's table, --wide and --raw lines, stats.  Every name a
process chose is passed through printable() so it cannot drive the terminal.

Names, filenames and arguments arrive as decode.text() made them (a byte that is
not UTF-8 as \\xNN, a backslash as \\\\); printable() escapes what a terminal would
act on, in a way that cannot be mistaken for text()'s escapes, so what a table
shows still maps back to the exact bytes."""

from __future__ import annotations

import os
import re
import shlex
import time
import unicodedata
from collections.abc import Callable, Sequence

from .decode import Event
from .rows import Row


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


_TABLE = f"{'PID':<8} {'PPID':<8} {'COMM':<16} CMDLINE\n{'-' * 8} {'-' * 8} {'-' * 16} {'-' * 7}\n"
_WIDE = (
    f"{'PID':<8} {'PPID':<8} {'UID':<6} {'COMM':<16} {'EXIT':<6} {'DURATION':>10}  "
    "FILENAME  CMDLINE\n"
    f"{'-' * 8} {'-' * 8} {'-' * 6} {'-' * 16} {'-' * 6} {'-' * 10}  {'-' * 8}  {'-' * 7}\n"
)
_RAW = f"{'TYPE':<5} {'PID':<8} {'TGID':<8} {'PPID':<8} {'UID':<6} {'COMM':<16} DETAIL\n"


def header(mode: str) -> str:
    return {"table": _TABLE, "wide": _WIDE, "raw": _RAW}.get(mode, "")


def row_line(r: Row, width: int | None = None) -> str:
    """A row of the default table; with `width` (a terminal's), its command line
    is cut so that the line fits (PID, PPID and COMM are always whole)."""
    name = printable(r.comm)
    if r.thread:
        name += f" (thread of {r.tgid})"
    line = f"{r.pid:<8} {r.ppid:<8} {name}"
    if not r.argv and not r.argv_truncated:
        return line
    line = f"{line:<34} "  # COMM's 16 columns (a longer name pushes the command line on)
    cmd = cmdline(r.argv, r.argv_truncated)
    if width is not None:
        cmd = fit(cmd, max(width - columns(line), 1))
    return line + cmd


def table_line(fd: int | None) -> Callable[[Row], str]:
    """row_line() for the table written to `fd`: cut to the terminal's width when
    `fd` is a terminal (read again every second: the window may be resized), whole
    when it is not (a pipe, a file)."""
    width = tty_width(fd)
    if width is None:
        return row_line
    checked = time.monotonic()

    def line(r: Row) -> str:
        nonlocal width, checked
        now = time.monotonic()
        if now - checked >= 1.0:
            width, checked = tty_width(fd), now
        return row_line(r, width)

    return line


def _exit_text(code: int | None, signal: int | None) -> str:
    if code is None:
        return ""
    return f"sig{signal}" if signal else str(code)


def duration_text(ns: int | None) -> str:
    if ns is None:
        return ""
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.2f}s"


def _program(filename: str | None, argv: Sequence[str] | None, truncated: bool | None) -> str:
    """FILENAME  CMDLINE, as --wide and --raw show them."""
    if not filename and not argv and not truncated:
        return ""
    return f"{quote_arg(filename or '')}  {cmdline(argv or (), bool(truncated))}".rstrip()


def wide_line(r: Row) -> str:
    name = printable(r.comm) + (" (thread)" if r.thread else "")
    if r.exited:
        name = f"{name} exited"
    return (
        f"{r.pid:<8} {r.ppid:<8} {r.uid:<6} {name:<16} "
        f"{_exit_text(r.exit_code, r.exit_signal):<6} {duration_text(r.duration_ns):>10}  "
        f"{_program(r.filename, r.argv, r.argv_truncated)}"
    ).rstrip()


def raw_line(e: Event) -> str:
    detail = ""
    if e.type == "exec":
        detail = _program(e.filename, e.argv, e.argv_truncated)
    elif e.type == "exit":
        code = _exit_text(e.exit_code, e.exit_signal)
        detail = f"exit={code} after {duration_text(e.duration_ns)}"
    elif e.thread:
        detail = "thread"
    return (
        f"{e.type:<5} {e.pid:<8} {e.tgid:<8} {e.ppid:<8} {e.uid:<6} {printable(e.comm):<16} "
        f"{detail}"
    ).rstrip()


def gap_line(dropped: int) -> str:
    return f"-- {dropped} event(s) lost here: the ring buffer was full (see `stats`) --"
