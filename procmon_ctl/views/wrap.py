"""Text that must not be cut (a fix, a warning's advice) folded onto indented
continuation lines to fit a terminal; kept as one whole line when not on one, so
that what is piped or logged stays one line per item."""

from __future__ import annotations

import re
import textwrap

from . import render

# A command quoted in backticks (`events --failed`) is not broken at its spaces: it
# stays one piece to read and to copy, unless it is longer than a line.  NBSP stands
# for its spaces while wrapping.
_QUOTED = re.compile(r"`[^`]*`")
_KEEP = "\u00a0"

# A continuation indent leaves at least this many columns for text; on a terminal
# too narrow for that, the indents shrink.
_MIN_TEXT = 20


def wrap(text: str, width: int | None, first: str = "", rest: str | None = None) -> list[str]:
    """`first` + `text` as lines of at most `width` columns, broken at spaces, each
    continuation starting with `rest` (by default as many spaces as `first` is
    wide); a word longer than a line is split rather than cut, so nothing is lost
    (a word that fits on a line of its own goes there whole first).  With `width`
    None: the one whole line."""
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
    line_room = width - len(rest)

    def glued(m: re.Match[str]) -> str:
        quoted = m.group()
        return quoted.replace(" ", _KEEP) if len(quoted) <= line_room else quoted

    # A real NBSP in the text would come back as a space: then wrap it as it is.
    quoted = text if _KEEP in text else _QUOTED.sub(glued, text)
    # Long words are not broken here: textwrap would split one that does not fit
    # the rest of the current line even where it fits the next one whole.
    lines = textwrap.TextWrapper(
        width=width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ).wrap(quoted)
    lines = [piece for line in lines for piece in _split(line, width, rest)]
    if quoted is not text:
        lines = [line.replace(_KEEP, " ") for line in lines]
    # textwrap counts characters, not columns: a wide character may still overflow.
    return [render.fit(line, width) for line in lines] or [first.rstrip()]


def _split(line: str, width: int, rest: str) -> list[str]:
    """A line longer than `width` (a word longer than any line) split into pieces
    that fit, each after the first starting with `rest`."""
    pieces = []
    while len(line) > width:
        pieces.append(line[:width])
        line = rest + line[width:]
    return [*pieces, line]
