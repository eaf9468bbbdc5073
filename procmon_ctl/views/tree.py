"""The process tree of a `run -- CMD` (process/tree.py) as people and programs read
it: nested RunNode objects for `run --json`, and a pstree-like block for `run --tree`,
one line per process."""

from __future__ import annotations

from ..process import tree as process_tree
from . import render
from .schema import RunNode
from .wrap import wrap


def tree_model(tree: process_tree.ProcessTree) -> RunNode:
    """The tree as models, children in start order; a process with no exit record
    yet is running."""
    built: dict[int, RunNode] = {}
    # Leaves first, without recursion: a chain of processes is as deep as
    # TREE_DEPTH_KEPT.
    for n in reversed(tree.in_start_order()):
        running = n.exit_code is None
        built[id(n)] = RunNode(
            pid=n.pid,
            ppid=n.ppid,
            comm=n.comm,
            argv=None if n.argv is None else list(n.argv),
            argv_truncated=n.argv_truncated,
            inherited=n.inherited,
            parent_unseen=n.parent_unseen,
            started_ns=n.started_ns,
            duration_ns=n.duration_ns,
            exit_code=n.exit_code,
            signal=n.signal,
            running=running,
            cpu_user_ns=n.usage.cpu_user_ns if n.usage else None,
            cpu_system_ns=n.usage.cpu_system_ns if n.usage else None,
            max_rss_kib=n.usage.max_rss_kib if n.usage else None,
            threads=n.threads if tree.count_threads else None,
            children=[built.pop(id(c)) for c in n.children],
        )
    return built[id(tree.root)]


_BRANCH, _LAST = "\u251c\u2500 ", "\u2514\u2500 "  # ├─ └─
_STEM, _SPACE = "\u2502  ", "   "  # │


def status_text(n: RunNode) -> str:
    if n.running:
        return "running"
    if n.signal:
        return f"killed by {render.signal_text(n.signal)}"
    return f"exit {n.exit_code}"


def _details(n: RunNode) -> str:
    parts = [f"pid {n.pid}"]
    if n.inherited:
        parts.append("no exec")
    if n.parent_unseen:
        parts.append(f"parent {n.ppid} not seen")
    if n.threads:
        parts.append(f"{n.threads} thread(s)")
    if n.duration_ns is not None:
        parts.append(render.duration_text(n.duration_ns))
    if n.cpu_user_ns is not None and n.cpu_system_ns is not None and n.max_rss_kib is not None:
        cpu = render.duration_text(n.cpu_user_ns + n.cpu_system_ns)
        parts.append(f"cpu {cpu} peak {render.memory_text(n.max_rss_kib)}")
    parts.append(status_text(n))
    return "  (" + ", ".join(parts) + ")"


def _command(n: RunNode) -> str:
    if n.argv:
        return render.cmdline(n.argv, n.argv_truncated)
    return render.printable(n.comm)


# A command line is never cut shorter than this, however deep its node.
_MIN_COMMAND = 12


def _line(prefix: str, n: RunNode, width: int | None) -> str:
    """prefix, command line, details: on a terminal the command line is what is cut,
    and a prefix too deep to leave it room keeps only its last levels, after CUT
    (the details are whole but for a terminal too narrow for them alone)."""
    command, details = _command(n), _details(n)
    if width is None:
        return prefix + command + details
    room = width - render.columns(details) - _MIN_COMMAND
    if len(prefix) > room:
        # Each level of the prefix is 3 columns (_STEM, _SPACE, _BRANCH, _LAST).
        levels = max((room - 1) // 3, 1)
        prefix = render.CUT + prefix[-3 * levels :]
    command = render.fit(command, max(width - len(prefix) - render.columns(details), _MIN_COMMAND))
    return render.fit(prefix + command + details, width)


def tree_text(tree: RunNode, left_out: int = 0, width: int | None = None) -> str:
    """The tree, one line per process, pstree-like; with `width` (a terminal's), each
    line fits it (see _line)."""
    lines = [_line("", tree, width)]
    stack = [(c, "", i == len(tree.children) - 1) for i, c in enumerate(tree.children)]
    stack.reverse()
    while stack:
        n, indent, last = stack.pop()
        lines.append(_line(indent + (_LAST if last else _BRANCH), n, width))
        below = indent + (_SPACE if last else _STEM)
        stack.extend(
            (c, below, i == len(n.children) - 1) for i, c in reversed(list(enumerate(n.children)))
        )
    if left_out:
        # The bounds as the tree was built with them: read when the text is made, as
        # ProcessTree reads them when it is made (a wrapper may have set them).
        lines += wrap(
            f"... and {left_out} more process(es) not in the tree (it keeps the first "
            f"{process_tree.TREE_NODES_KEPT} processes, {process_tree.TREE_DEPTH_KEPT} "
            "levels deep)",
            width,
            "",
            "    ",
        )
    return "\n".join(lines)
