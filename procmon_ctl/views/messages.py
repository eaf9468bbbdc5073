"""The lines of a message procmon-ctl says beside its output (an error, a warning, a
note): "procmon-ctl: KIND: text", the text one line whatever it holds.

Folded at spaces to a terminal's width, continuation lines indented and a command in
backticks never broken; without a width (piped, redirected) one whole line, so that a
log keeps one line per message and `grep` finds it."""

from __future__ import annotations

# Continuation lines start here: indented, so that each message reads as one.
_CONTINUED = "  "


def message_lines(kind: str, text: str, width: int | None = None) -> list[str]:
    first = f"procmon-ctl: {kind}: "
    line = one_line(text)
    if width is None:
        return [first + line]
    from .wrap import wrap  # only for a terminal: a quick command piped loads no more

    return wrap(line, width, first, _CONTINUED)


def one_line(message: str) -> str:
    """The message with what would break its line (a newline in a path the user
    gave, other control characters) written as escapes: an error is one line.  A
    byte of the command line that is not UTF-8 (a lone surrogate, as Python decodes
    it) is written \\xNN, as names and arguments are everywhere."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else _escaped(c) for c in message)


def _escaped(c: str) -> str:
    if "\udc80" <= c <= "\udcff":
        return f"\\x{ord(c) - 0xDC00:02x}"
    return repr(c)[1:-1]
