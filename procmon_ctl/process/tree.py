"""The process tree of a `run -- CMD`: built from the same records as the summary,
one node per process (views/tree.py shows it as a pstree-like block for `run --tree`
and as nested objects for `run --json`).

A node is made at its process's fork record and finished by its exit record, so
the tree is by parentage at fork time: a child whose parent exits first stays under
that parent, where pstree would show it under init.  Memory is bounded: the tree
keeps the first TREE_NODES_KEPT processes in start order, down to TREE_DEPTH_KEPT
levels, and counts the rest as left out.  Keeping a prefix in start order means a
kept process's parent is always kept too, so what is kept is a tree, not pieces."""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

from ..kernel.abi import EXEC, EXIT, FORK
from .decode import Event, Usage

# A big build starts 100,000 processes and more: enough to read, little to hold.
TREE_NODES_KEPT = 10_000
# Below pydantic's serialisation depth (255 nested models) and json.loads' default
# recursion limit, so that the JSON summary can be written and read back.
TREE_DEPTH_KEPT = 200


@dataclass(slots=True, eq=False)
class TreeNode:
    pid: int
    ppid: int | None
    comm: str
    argv: tuple[str, ...] | None
    argv_truncated: bool
    inherited: bool  # exec'd nothing seen: comm and argv are its parent's program
    started_ns: int | None
    seen_ns: int  # when it was first seen: its place among its siblings
    depth: int
    parent_unseen: bool = False
    exit_code: int | None = None
    signal: int | None = None
    duration_ns: int | None = None
    usage: Usage | None = None  # what it cost, from its exit record
    threads: int = 0
    children: list[TreeNode] = field(default_factory=list)


class ProcessTree:
    """Every record of the followed tree in, its nodes out (in_start_order())."""

    def __init__(
        self,
        root_pid: int,
        root_argv: list[str],
        *,
        count_threads: bool = False,
        max_nodes: int | None = None,
        max_depth: int | None = None,
        root_by_ns_pid: bool = False,
    ) -> None:
        """`root_pid`: CMD's pid as run knows it; with `root_by_ns_pid` that is its
        pid in the PID namespace run lives in (ns_pid), not the host's the records
        carry, which the root takes from CMD's fork record."""
        # CMD as given, until its own exec record says what it runs.
        self.root = TreeNode(
            pid=root_pid,
            ppid=None,
            comm=root_argv[0] if root_argv else "?",
            argv=tuple(root_argv),
            argv_truncated=False,
            inherited=False,
            started_ns=None,
            seen_ns=0,
            depth=0,
        )
        self.count_threads = count_threads
        self._root_by_ns_pid = root_by_ns_pid
        # Read here, not as defaults: a test (or a user's wrapper) may set them.
        self.max_nodes = TREE_NODES_KEPT if max_nodes is None else max_nodes
        self.max_depth = TREE_DEPTH_KEPT if max_depth is None else max_depth
        self.kept = 1
        self.left_out = 0
        # By pid, only while the process lives: a pid reused later is a new process.
        self._live: dict[int, TreeNode] = {root_pid: self.root}
        self._left_out_live: set[int] = set()

    def feed(self, e: Event) -> None:
        kind, tgid = e.type, e.tgid
        if kind == EXEC:
            node = self._live.get(tgid)
            if node is None:
                if tgid in self._left_out_live:
                    return
                node = self._unseen(e)
                if node is None:
                    return
            node.comm = e.comm
            node.argv = e.argv or ()
            node.argv_truncated = bool(e.argv_truncated)
            node.inherited = False
        elif kind == EXIT:
            node = self._live.pop(tgid, None)
            if node is None:
                if tgid in self._left_out_live:
                    self._left_out_live.remove(tgid)
                    return
                node = self._unseen(e)
                if node is None:
                    self._left_out_live.discard(tgid)
                    return
                del self._live[tgid]
            node.exit_code = e.exit_code or 0
            node.signal = e.exit_signal or 0
            node.duration_ns = e.duration_ns or 0
            node.usage = e.usage
            if node.started_ns is None:
                # The kernel's duration is from the process's start: its fork.
                node.started_ns = node.seen_ns = e.ts_ns - node.duration_ns
        elif kind == FORK:
            if not e.thread:
                self._fork(e)
            elif (node := self._live.get(tgid)) is not None:
                node.threads += 1

    def _fork(self, e: Event) -> None:
        root = self.root
        known_as = e.ns_pid if self._root_by_ns_pid else e.tgid
        if known_as == root.pid and root.started_ns is None:
            # CMD's own fork by run: run is not part of the tree.
            root.ppid, root.started_ns, root.seen_ns = e.ppid, e.ts_ns, e.ts_ns
            if e.tgid != root.pid:
                del self._live[root.pid]
                root.pid = e.tgid
                self._live[e.tgid] = root
            return
        parent = self._live.get(e.ppid)
        if parent is None:
            if e.ppid in self._left_out_live:
                self._leave_out(e.tgid)
            elif (node := self._unseen(e)) is not None:
                node.started_ns = e.ts_ns
            return
        if self.kept >= self.max_nodes or parent.depth >= self.max_depth:
            self._leave_out(e.tgid)
            return
        # Until it execs it runs its parent's program, as ps shows it.
        node = TreeNode(
            pid=e.tgid,
            ppid=e.ppid,
            comm=parent.comm,
            argv=parent.argv,
            argv_truncated=parent.argv_truncated,
            inherited=True,
            started_ns=e.ts_ns,
            seen_ns=e.ts_ns,
            depth=parent.depth + 1,
        )
        parent.children.append(node)
        self.kept += 1
        self._live[e.tgid] = node

    def _unseen(self, e: Event) -> TreeNode | None:
        """A process whose parent is not in the tree (its records were lost): put
        under the root, marked; None when the tree is full."""
        if self.kept >= self.max_nodes:
            self._leave_out(e.tgid)
            return None
        node = TreeNode(
            pid=e.tgid,
            ppid=e.ppid,
            comm=e.comm,
            argv=None,
            argv_truncated=False,
            inherited=True,
            started_ns=None,
            seen_ns=e.ts_ns,
            depth=1,
            parent_unseen=True,
        )
        self.root.children.append(node)
        self.kept += 1
        self._live[e.tgid] = node
        return node

    def _leave_out(self, pid: int) -> None:
        if pid not in self._left_out_live:
            self.left_out += 1
            self._left_out_live.add(pid)

    def in_start_order(self) -> list[TreeNode]:
        """Every node kept, each after its parent (preorder), children in start
        order: built without recursion, as a chain of processes is as deep as
        TREE_DEPTH_KEPT."""
        order = [self.root]
        for n in order:
            n.children.sort(key=attrgetter("seen_ns"))
            order.extend(n.children)
        return order
