"""Text for people: the seed's table, --wide and --raw lines, stats.  Every name a
process chose is passed through printable() so it cannot drive the terminal."""

from __future__ import annotations

from .decode import Event
from .rows import Row


def _escape(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """Text safe for a terminal: every character Python's str.isprintable() rejects
    is shown as a Python escape, and a backslash as two, so the text can be read back
    exactly.  That covers control characters (ESC, newline, C1 codes: \\x1b), so a
    process name cannot move the cursor or retitle the terminal, and the bidi
    controls (U+202A-U+202E, U+2066-U+2069, the marks U+200E, U+200F, U+061C:
    \\u202e), so it cannot reorder how the rest of its line is displayed; likewise
    other invisible format characters and separators other than the space."""
    # Nearly every name passes this test, which costs no copy and no per-character call.
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(map(_escape, text))


_TABLE = f"{'PID':<8} {'PPID':<8} COMM\n{'-' * 8} {'-' * 8} {'-' * 16}\n"
_WIDE = (
    f"{'PID':<8} {'PPID':<8} {'UID':<6} {'COMM':<16} {'EXIT':<6} {'DURATION':>10}  FILENAME\n"
    f"{'-' * 8} {'-' * 8} {'-' * 6} {'-' * 16} {'-' * 6} {'-' * 10}  {'-' * 8}\n"
)
_RAW = f"{'TYPE':<5} {'PID':<8} {'TGID':<8} {'PPID':<8} {'UID':<6} {'COMM':<16} DETAIL\n"


def header(mode: str) -> str:
    return {"table": _TABLE, "wide": _WIDE, "raw": _RAW}.get(mode, "")


def row_line(r: Row) -> str:
    name = printable(r.comm)
    if r.thread:
        name += f" (thread of {r.tgid})"
    return f"{r.pid:<8} {r.ppid:<8} {name}"


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


def wide_line(r: Row) -> str:
    name = printable(r.comm) + (" (thread)" if r.thread else "")
    if r.exited:
        name = f"{name} exited"
    return (
        f"{r.pid:<8} {r.ppid:<8} {r.uid:<6} {name:<16} "
        f"{_exit_text(r.exit_code, r.exit_signal):<6} {duration_text(r.duration_ns):>10}  "
        f"{printable(r.filename)}"
    ).rstrip()


def raw_line(e: Event) -> str:
    detail = ""
    if e.type == "exec":
        detail = printable(e.filename or "")
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
