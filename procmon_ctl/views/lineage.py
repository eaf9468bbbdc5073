"""`events --lineage` as readers see it: a record's ancestors (process/lineage.py's
ProcessTable) as a JSON array in its line, a short chain after a --raw line, or a
line under a table row; and `procmon-ctl lineage PID`'s answer."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

from ..kernel.abi import EXEC, FORK
from ..process.decode import Event, json_string
from ..process.lineage import DEPTH, Process
from .render import cmdline, fit, printable, tty_width

_JSON = '{"pid":%d,"comm":%s,"argv":[%s]}'
_JSON_EXITED = '{"pid":%d,"comm":%s,"argv":[%s],"exited":true}'

# Rows waiting to be written with their lineage at most (far more than are held).
ROW_LINEAGES_KEPT = 65_536


def process_json(p: Process) -> str:
    """A process as a JSON object: pid, comm, argv and, once it has exited,
    "exited": true (kept in p.shown until the entry changes)."""
    if p.shown is None:
        args = ",".join(map(json_string, p.argv))
        form = _JSON_EXITED if p.exited else _JSON
        p.shown = form % (p.pid, json_string(p.comm), args)
    return p.shown


def lineage_json(process: Process | None) -> str:
    """The process's lineage as a JSON array: `[{"pid":N,"comm":"…","argv":[…]},…]`,
    parent first, with `"exited":true` in the object of an ancestor that has exited
    and `"cut":true` in the last one's when the lineage is cut (Process.lineage);
    `[]` for a process the table does not know."""
    if process is None:
        return "[]"
    parts = []
    p = process.parent
    while p is not None and len(parts) < DEPTH:
        parts.append(p.shown or process_json(p))
        p = p.parent
    if p is not None:
        parts[-1] = parts[-1][:-1] + ',"cut":true}'
    return "[" + ",".join(parts) + "]"


def chain_text(process: Process | None) -> str:
    """The lineage in a few words, e.g. `bash(812) < sshd(700) < systemd(1)`, an
    ancestor that has exited marked so (`sh(810 exited)`: its children were handed
    to a reaper), ending in ` < …` when it is cut ("" for a process the table does
    not know).
    Names are as in records: pass the text through render.printable() before it
    reaches a terminal."""
    if process is None:
        return ""
    lineage = process.lineage()
    words = [f"{a.comm}({a.pid} exited)" if a.exited else f"{a.comm}({a.pid})" for a in lineage]
    if lineage and lineage[-1].cut:
        words.append("…")
    return " < ".join(words)


def with_lineage(line: str, process: Process | None, as_json: bool) -> str:
    """An `events --json` or `--raw` line with its record's lineage: the JSON
    array last in the object, or the short chain after the raw line."""
    if as_json:
        return f'{line[:-1]},"lineage":{lineage_json(process)}}}'
    chain = chain_text(process)
    return f"{line}  < {printable(chain)}" if chain else line


class RowLineages:
    """The table and --wide: each row's process as the reader met it, until the
    row is written (a row is held for its exec, and its process may have exited
    and left the table by then), shown on a line below the row."""

    def __init__(self) -> None:
        self._of: dict[int, Process] = {}

    def note(self, e: Event, process: Process | None) -> None:
        """Call with each record and what ProcessTable.feed() returned for it."""
        if process is not None and e.type in (FORK, EXEC) and not e.thread:
            if len(self._of) >= ROW_LINEAGES_KEPT:
                self._of.clear()
            self._of[e.tgid] = process

    def below(self, line: Callable[..., str], tty: int | None) -> Callable[..., str]:
        """The table's line function, with a line under each process row saying who
        started it (cut to the terminal's width, as the row's command line is)."""
        width = tty_width(tty)

        def with_chain(r, *args) -> str:
            text = line(r, *args)
            if r.exited or r.thread:
                return text
            chain = chain_text(self._of.pop(r.tgid, None))
            if not chain:
                return text
            under = f"{'':8} < {printable(chain)}"
            return f"{text}\n{under if width is None else fit(under, width)}"

        return with_chain


def found_lines(process: Process, width: int | None) -> list[str]:
    """`procmon-ctl lineage PID`: the process, then who started it, then who
    started that, up to pid 1 (or as far as is known), one line each: pid, whether
    it has exited, its command line (its name in brackets where none is known, as
    ps shows kernel threads); cut to `width` when it is a terminal's."""
    lines = [f"{'PID':>7}  {'STATE':<6}  COMMAND"]
    chain = [process, *islice(process.ancestors(), DEPTH)]
    for p in chain:
        command = cmdline(p.argv) if p.argv else f"[{p.comm}]"
        state = "exited" if p.exited else ""
        lines.append(f"{p.pid:>7}  {state:<6}  {printable(command)}")
    if chain[-1].parent is not None:
        lines.append(f"{'…':>7}  {'':<6}  ({DEPTH} ancestors shown)")
    return lines if width is None else [fit(line, width) for line in lines]


def found_json(process: Process, sources: list[str]) -> str:
    """`lineage PID --json`: the process as in a lineage (pid, comm, argv, "exited"
    once it has), with its own "lineage" (as `events --lineage` has it) and the
    "sources" the answer came from ("log", "proc")."""
    own = process_json(process)[:-1]
    listed = ",".join(json_string(s) for s in sources)
    return f'{own},"lineage":{lineage_json(process)},"sources":[{listed}]}}'
