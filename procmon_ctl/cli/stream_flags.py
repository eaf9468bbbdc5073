"""The flags of `events` and `run` that say what to read and how to show it, read
and checked in one place: StreamFlags.stream() gives what the reading loop takes
(StreamOptions) and the view that shows it."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import (
    UID_MAX,
    Given,
    Setting,
    UsageError,
    Words,
    plain,
    require_pid,
    require_positive,
    require_uid,
)
from ..process.decode import text
from ..process.rows import CgroupScope, Filters, descendants
from ..process.users import uid_named, written_as_number
from ..stream.follow import StreamOptions, View
from ..views.events import ContainerColumn, Mode, view_for

if TYPE_CHECKING:
    from ..process.cgroups import CgroupNames, ContainerNotRunning


@dataclass
class Stream:
    """What a command reads, and the view it shows it with."""

    options: StreamOptions
    view: View
    # What the user should know about how the flags were taken (one line each).
    notes: list[Words] = field(default_factory=list)
    # --container of a container not running: the line that says the reader waits
    # for it (once the reader is sure to start).
    waiting: Words | None = None


@dataclass
class StreamFlags:
    """The flags as given (each command has those it takes; the rest keep these
    defaults)."""

    json_out: bool = False
    raw: bool = False
    wide: bool = False
    threads: bool = False
    count: int | None = None
    duration: float | None = None
    from_now: bool = False
    # A filter given again ORs: any of its values matches.
    comm: Sequence[str] = ()
    pid: Sequence[int] = ()
    ppid: Sequence[int] = ()
    uid: Sequence[str | int] = ()  # names or ids
    tree: Sequence[int] = ()  # --tree-of
    failed: bool = False
    cgroup: Sequence[str] = ()  # one at most: a reader's ring follows one cgroup
    container: Sequence[str] = ()
    lineage: bool = False
    with_time: bool | None = None
    name: str | None = None  # a reader that keeps its place
    ring_size: int | None = None  # its ring's (None: the instance's)
    argv_bytes: int | None = None  # of each command line at most (None: the instance's)
    # The tables' CONTAINER column from the start when a container runs as the reader
    # starts (events, which watches the machine); else only with --container, or
    # once a row from a container comes (run: CMD's own processes, seldom any).
    container_column_if_running: bool = False

    def stream(self, words: Callable[[Words], str] = plain) -> Stream:
        """The flags, checked.  A filter no process can pass is refused: it would
        print nothing, silently.  `words`: the CLI's for the lines that name a
        command or an option (where events were lost, where the backlog ends)."""
        if sum((self.json_out, self.raw, self.wide)) > 1:
            raise UsageError(
                ("choose one of ", Setting("json"), ", ", Setting("raw"), " and ", Setting("wide"))
            )
        if self.json_out and self.with_time is not None:
            raise UsageError(
                (
                    Setting("time"),
                    " and ",
                    Setting("no_time"),
                    " are for the tables: every JSON line has its `time`",
                )
            )
        for setting, given in (("pid", self.pid), ("ppid", self.ppid)):
            for pid in given:
                require_pid(setting, pid)
        for root in self.tree:
            require_pid("tree_of", root)
        uids = {user_id(u) for u in self.uid}
        notes = []
        comms = set()
        for comm in self.comm:
            comm, note = kernel_name(comm, "comm")
            if note:
                notes.append(note)
            # Names are matched as decode.text() shows them (a backslash doubled, a
            # byte that is not UTF-8 as \xNN): the name typed is the bytes meant.
            comms.add(text(os.fsencode(comm)))
        for setting, given in (("cgroup", self.cgroup), ("container", self.container)):
            if len(given) > 1:
                raise UsageError(
                    (
                        Setting(setting),
                        " is given more than once: a reader follows one cgroup in the "
                        "kernel (start one reader for each)",
                    )
                )
        cgroup = self.cgroup[0] if self.cgroup else None
        container = self.container[0] if self.container else None
        if cgroup is not None and container is not None:
            raise UsageError(
                (
                    "choose one of ",
                    Setting("cgroup"),
                    " and ",
                    Setting("container"),
                    " (a container is a cgroup: ",
                    Setting("container"),
                    " picks it by id)",
                )
            )
        if self.count is not None and self.count <= 0:
            raise UsageError(
                (Setting("count"), f" must be a positive number of events (got {self.count})")
            )
        require_positive("duration", self.duration)
        mode = (
            Mode.JSON
            if self.json_out
            else Mode.RAW
            if self.raw
            else Mode.WIDE
            if self.wide
            else Mode.TABLE
        )
        since = time.monotonic_ns()  # the tree is read from /proc after this
        tree = None
        if self.tree:
            tree = set().union(*(descendants(root) for root in self.tree))
        filters = Filters(
            comm=frozenset(comms) or None,
            pid=frozenset(self.pid) or None,
            ppid=frozenset(self.ppid) or None,
            uid=frozenset(uids) or None,
            tree=tree,
            tree_since_ns=since,
        )
        if self.name is not None:
            from ..instance.readers import check_name

            check_name(self.name)
        if self.ring_size is not None:
            from ..instance.startup import check_ring_size

            check_ring_size(self.ring_size)
        if self.argv_bytes is not None:
            from ..instance.settings import check_argv_bytes

            check_argv_bytes(self.argv_bytes)
        target = again = waiting = None
        if cgroup is not None or container is not None:
            from ..process.cgroups import ContainerNotRunning

            again = functools.partial(_cgroup_target, cgroup, container)
            try:
                target = again()
            except ContainerNotRunning as stopped:
                waiting = self._wait_for(stopped)
        cgroups = _cgroup_names()
        if target is not None or waiting is not None:
            path = None if target is None else target.path
            filters.cgroup = CgroupScope(path, lambda i: cgroups().lookup(i).path)
        options = StreamOptions(
            threads=self.threads,
            count=self.count,
            duration=self.duration,
            from_now=self.from_now,
            failed=self.failed,
            # With --lineage the kernel filters by cgroup nothing: a process's ancestors
            # (`podman exec`'s, a service's manager) may be outside it.
            cgroup=None if self.lineage else target,
            cgroup_again=None if self.lineage else _quietly(again),
            cgroup_pending=waiting is not None,
            name=self.name,
            ring_size=self.ring_size,
            argv_bytes=self.argv_bytes,
        )

        def cgroup_json(cgroup_id: int) -> str:
            """What a JSON line gets for its cgroup (json_lines.CgroupJson)."""
            return "," + cgroups().json_fragment(cgroup_id)

        column = None
        if mode != Mode.JSON:
            shown = container is not None or (
                self.container_column_if_running and _containers_running()
            )
            column = ContainerColumn(lambda i: cgroups().lookup(i), shown)
        view = view_for(
            mode, self.with_time, filters, self.failed, self.lineage, cgroup_json, words, column
        )
        return Stream(options, view, notes, waiting)

    def _wait_for(self, stopped: ContainerNotRunning) -> Words:
        """The line that says the reader waits for a container that does not run."""
        if self.lineage:
            # --lineage filters in user space, by a path that a container not yet
            # running does not have.
            raise UsageError(
                (
                    *stopped.words,
                    " (",
                    Setting("lineage"),
                    " needs it running; without it the reader waits for it)",
                )
            )
        name = Given(stopped.name)
        if stopped.stopped_id is None:
            return (
                "no container named ",
                name,
                " or with an id starting so runs now: waiting for it to start",
            )
        return (
            "the container ",
            name,
            f" ({stopped.stopped_id[:12]}) is not running: waiting for it to start",
        )


def _containers_running() -> bool:
    from ..process.cgroups import any_container_running

    return any_container_running()


def _cgroup_target(cgroup: str | None, container: str | None):
    from ..process.cgroups import cgroup_target, container_target

    if cgroup is not None:
        return cgroup_target(cgroup)
    return container_target(container)


def _quietly(find):
    """`find` (a cgroup lookup) giving None where it would refuse: the cgroup is
    gone for now (a container between a stop and its start again)."""
    if find is None:
        return None

    def again():
        from ..errors import ProcmonError

        try:
            return find()
        except ProcmonError:
            return None

    return again


def _cgroup_names() -> Callable[[], CgroupNames]:
    """The cgroup ids' paths and containers, made when first asked for (JSON lines,
    the tables' CONTAINER column, --cgroup's and --container's backlog)."""
    made: list[CgroupNames] = []

    def cgroups() -> CgroupNames:
        if not made:
            from ..errors import MissingError
            from ..process.cgroups import CgroupNames

            try:
                made.append(CgroupNames())
            except MissingError:  # no cgroup2 mount: records keep their cgroup ids
                made.append(CgroupNames(path_of=lambda cgroup_id: None))
        return made[0]

    return cgroups


# The kernel keeps this many bytes of a process's name (TASK_COMM_LEN - 1).
COMM_BYTES = 15


def user_id(user: str | int) -> int:
    """--uid's value: a user id, or the name of a user this system knows."""
    if isinstance(user, str) and not written_as_number(user):
        found = uid_named(user)
        if found is None:
            raise UsageError(
                (
                    Setting("uid"),
                    f" {text(os.fsencode(user))}: no user of that name on this system "
                    f"(give a user name from getent passwd, or a user id, 0 to {UID_MAX})",
                )
            )
        return found
    if isinstance(user, str) and len(user) > len(str(UID_MAX)) + 1:
        # Not even parsed: Python refuses to convert a string of thousands of digits.
        raise UsageError((Setting("uid"), f" {user[:16]}... is not a user id: use 0 to {UID_MAX}"))
    require_uid("uid", int(user))
    return int(user)


def kernel_name(name: str, setting: str) -> tuple[str, Words | None]:
    """A name as the kernel keeps it: its first COMM_BYTES bytes, and a note saying
    so when that cut it (a longer name would match nothing).  An empty one is
    refused: every program exec'd has a name (`--comm "$UNSET"` is a mistake)."""
    raw = os.fsencode(name)
    # A path: what exec keeps of it is the base name.  Not every slash: kernel
    # threads are named so (kworker/0:1), and a process may name itself anything.
    if raw.startswith((b"/", b"./", b"../")):
        base = raw.rstrip(b"/").rsplit(b"/", 1)[-1][:COMM_BYTES]
        raise UsageError(
            (
                Setting(setting),
                f" {text(raw)} is a path: a process's name is its file's base name, as "
                f"the kernel keeps it (use {text(base) or 'the name'})",
            )
        )
    if not raw:
        raise UsageError(
            (
                Setting(setting),
                f" is empty: give a process name, 1 to {COMM_BYTES} bytes "
                f"(the kernel keeps the first {COMM_BYTES} of a longer one)",
            )
        )
    if len(raw) <= COMM_BYTES:
        return name, None
    return os.fsdecode(raw[:COMM_BYTES]), (
        Setting(setting),
        f" {text(raw)}: the kernel keeps {COMM_BYTES} characters of a name; "
        f"matching {text(raw[:COMM_BYTES])}",
    )
