"""Every error, warning and note procmon-ctl prints goes through say(): on stderr,
as views.messages words it, folded to the terminal's width when the stream is a
terminal and one whole line when it is not."""

from __future__ import annotations

import os
import sys
from typing import TextIO


def error(text: str) -> None:
    say("error", text)


def warning(text: str) -> None:
    say("warning", text)


def note(text: str) -> None:
    say("note", text)


def say(kind: str, text: str, stream: TextIO | None = None) -> None:
    """`text` as a message of `kind` on `stream` (stderr by default)."""
    from ..views.messages import message_lines

    stream = sys.stderr if stream is None else stream
    print("\n".join(message_lines(kind, text, _terminal_width(stream))), file=stream, flush=True)


def _terminal_width(stream: TextIO) -> int | None:
    try:
        fd = stream.fileno()
        if not os.isatty(fd):
            return None
    except (OSError, ValueError):
        return None  # closed, or a test's capture: not a terminal
    from ..views.render import tty_width  # only on a terminal: piped, quick commands skip it

    return tty_width(fd)
