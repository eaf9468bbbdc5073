"""What a reader has seen, counted for `serve`'s metrics: processes by command, by
container and by user, exits by how they ended, failed execs by errno, and how long
processes lived.

Every count only grows, as a Prometheus counter must.  A label with values without
end (command names, containers, users) keeps at most `limit` values with a count
of their own: a value gets one the first time it is seen while there is room; the
others are counted together under OTHER.  So that a busy newcomer is not hidden
for ever behind values seen once at start, the count of each value is also kept
for the current period (ROTATE_EVERY): at the end of a period the busiest values
counted under OTHER take the places of the values that were less busy in that
period.  A value that loses its place loses its count (its series ends), and one
that gets a place counts from then on, while what it had under OTHER stays there:
every count only grows, and a value's count is what it did since it got its place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..kernel.abi import EXEC, EXEC_FAILED, EXIT, FORK
from .cgroups import CgroupNames
from .decode import Event
from .users import UserNames

# The label value that counts every value without a count of its own.  A real
# value spelled the same (a command named "(other)") is counted with them.
OTHER = "(other)"

# Values with a count of their own, per label, unless serve is told otherwise.
DEFAULT_LIMIT = 50

# How often the busiest values under OTHER may take the places of less busy ones.
ROTATE_EVERY = 300.0  # seconds

# The upper bounds of the lifetime histogram's buckets, in seconds: from a process
# that only execs and exits (about a millisecond) to a day.
LIFETIME_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    60.0,
    300.0,
    3600.0,
    86400.0,
)


class TopValues:
    """The counts of one label with at most `limit` values of their own (see the
    module's docstring).  Not thread-safe: StreamTally locks."""

    def __init__(
        self,
        limit: int,
        rotate_every: float = ROTATE_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.counts: dict[str, int] = {}
        self.other = 0
        self._rotate_every, self._clock = rotate_every, clock
        self._period_end = clock() + rotate_every
        # This period's counts of the values with a place, and of those without
        # (at most 4 * limit of them: the least busy are forgotten first).
        self._recent: dict[str, int] = {}
        self._waiting: dict[str, int] = {}

    def add(self, value: str, n: int = 1) -> None:
        counts = self.counts
        if value in counts:
            counts[value] += n
            self._recent[value] = self._recent.get(value, 0) + n
        elif len(counts) < self.limit and value != OTHER:
            counts[value] = n
            self._recent[value] = n
        else:
            self.other += n
            waiting = self._waiting
            waiting[value] = waiting.get(value, 0) + n
            if len(waiting) > 4 * self.limit:
                busiest = sorted(waiting.items(), key=lambda kv: kv[1], reverse=True)
                self._waiting = dict(busiest[: 2 * self.limit])

    def rotate(self) -> None:
        """At the end of a period: the busiest values waiting under OTHER take the
        places of values that were less busy in it."""
        now = self._clock()
        if now < self._period_end:
            return
        self._period_end = now + self._rotate_every
        waiting = sorted(((n, v) for v, n in self._waiting.items() if v != OTHER), reverse=True)
        holders = sorted((self._recent.get(v, 0), v) for v in self.counts)
        for (busy, newcomer), (idle, holder) in zip(waiting, holders, strict=False):
            if busy <= idle:
                break
            del self.counts[holder]
            self.counts[newcomer] = 0
        self._recent = {}
        self._waiting = {}


@dataclass
class TallySnapshot:
    """The counts at one moment, copied: a scrape reads them while the reader
    goes on counting."""

    commands: dict[str, int]  # execs by the command name the exec gave the process
    commands_other: int
    containers: dict[str, int]  # new processes in containers, by container name
    containers_other: int
    users: dict[str, int]  # new processes by the user (real uid) that made them
    users_other: int
    exits: dict[str, int]  # by STATUS_CLASSES
    exit_signals: dict[int, int]  # processes killed, by signal number
    failed_execs: dict[int, int]  # by errno
    lifetime_buckets: list[int]  # per LIFETIME_BUCKETS bound, not cumulative; then +Inf
    lifetime_sum_ns: int
    records: int  # every record counted
    lost: int  # records this reader's ring had no room for: missing from every count
    limit: int


# How a process ended, as the exits are counted.
STATUS_CLASSES = ("success", "failure", "signal")


@dataclass
class StreamTally:
    """The counts of one reader's records.  `add` is called by the reader with each
    batch, `snapshot` by a scrape in another thread."""

    limit: int = DEFAULT_LIMIT
    rotate_every: float = ROTATE_EVERY
    cgroups: CgroupNames | None = None  # None: made on first use (needs cgroup v2)
    users_db: UserNames = field(default_factory=UserNames)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.commands = TopValues(self.limit, self.rotate_every)
        self.containers = TopValues(self.limit, self.rotate_every)
        self.users = TopValues(self.limit, self.rotate_every)
        self.exits = dict.fromkeys(STATUS_CLASSES, 0)
        self.exit_signals: dict[int, int] = {}
        self.failed_execs: dict[int, int] = {}
        self.lifetime_buckets = [0] * (len(LIFETIME_BUCKETS) + 1)
        self.lifetime_sum_ns = 0
        self.records = 0
        self.lost = 0
        self._bounds_ns = [round(b * 1e9) for b in LIFETIME_BUCKETS]

    def add(self, events: Iterable[Event]) -> None:
        with self._lock:
            for e in events:
                self._count(e)
            for top in (self.commands, self.containers, self.users):
                top.rotate()

    def add_lost(self, n: int) -> None:
        with self._lock:
            self.lost += n

    def _count(self, e: Event) -> None:
        self.records += 1
        if e.thread:
            return
        kind = e.type
        if kind == FORK:
            self.users.add(self.users_db.name(e.uid))
            container = self._container(e.cgroup_id)
            if container is not None:
                self.containers.add(container)
        elif kind == EXEC:
            self.commands.add(e.comm)
        elif kind == EXIT:
            if e.exit_signal:
                self.exits["signal"] += 1
                self.exit_signals[e.exit_signal] = self.exit_signals.get(e.exit_signal, 0) + 1
            else:
                self.exits["success" if e.exit_code == 0 else "failure"] += 1
            if e.duration_ns is not None:
                self._lifetime(e.duration_ns)
        elif kind == EXEC_FAILED and e.errno is not None:
            self.failed_execs[e.errno] = self.failed_execs.get(e.errno, 0) + 1

    def _lifetime(self, ns: int) -> None:
        self.lifetime_sum_ns += ns
        for i, bound in enumerate(self._bounds_ns):
            if ns <= bound:
                self.lifetime_buckets[i] += 1
                return
        self.lifetime_buckets[-1] += 1

    def _container(self, cgroup_id: int) -> str | None:
        if not cgroup_id:
            return None
        if self.cgroups is None:
            self.cgroups = CgroupNames()
        info = self.cgroups.lookup(cgroup_id)
        if info.container_name is not None:
            return info.container_name
        return info.container_id[:12] if info.container_id else None

    def snapshot(self) -> TallySnapshot:
        with self._lock:
            return TallySnapshot(
                dict(self.commands.counts),
                self.commands.other,
                dict(self.containers.counts),
                self.containers.other,
                dict(self.users.counts),
                self.users.other,
                dict(self.exits),
                dict(self.exit_signals),
                dict(self.failed_execs),
                list(self.lifetime_buckets),
                self.lifetime_sum_ns,
                self.records,
                self.lost,
                self.limit,
            )
