"""Text that must not be cut (a fix, a warning's advice) folded onto indented
continuation lines to fit a terminal; kept as one whole line when not on one, so
that what is piped or logged stays one line per item."""

from __future__ import annotations

import re
import textwrap

from . import render

# A command quoted in backticks (`events --failed`) is not broken at its spaces: it
# stays one piece to read and to copy.  NBSP stands for its spaces while wrapping.
_QUOTED = re.compile(r"`[^`]*`")
_KEEP = "\u00a0"


def _glued(m: re.Match[str]) -> str:
    return m.group().replace(" ", _KEEP)


# A continuation indent leaves at least this many columns for text; on a terminal
# too narrow for that, the indents shrink.
_MIN_TEXT = 20


def wrap(text: str, width: int | None, first: str = "", rest: str | None = None) -> list[str]:
    """`first` + `text` as lines of at most `width` columns, broken at spaces, each
    continuation starting with `rest` (by default as many spaces as `first` is
    wide); a word longer than a line is split rather than cut, so nothing is lost.
    With `width` None: the one whole line."""
    if width is None:
        return [first + text]
    if rest is None:
        rest = " " * render.columns(first)
    room = max(width - _MIN_TEXT, 0)
    if render.columns(rest) > room:
        rest = rest[:room]
    if render.columns(first) > room:
        # The first line's own words (a status, a name) then wrap like the text.
        text, first = first + text, ""
    # A real NBSP in the text would come back as a space: then wrap it as it is.
    quoted = text if _KEEP in text else _QUOTED.sub(_glued, text)
    lines = textwrap.TextWrapper(
        width=width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=True,
        break_on_hyphens=False,
    ).wrap(quoted)
    if quoted is not text:
        lines = [line.replace(_KEEP, " ") for line in lines]
    # textwrap counts characters, not columns: a wide character may still overflow.
    return [render.fit(line, width) for line in lines] or [first.rstrip()]
