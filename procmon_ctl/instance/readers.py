"""Reader slots: each reader of an instance has a ring of its own.

The programs copy every record into the ring of each active reader whose settings
want it (bpf/process_monitor.h: enum reader_limits), so readers never take records
from each other, and what one filters out costs its ring nothing.  A slot is:
its ring in `rings`, its settings in `readers` (struct reader), its counts in
`reader_counts`, its losses in `reader_losses`, its bit in settings.readers, and,
for a pinned instance, a lock file held by the process reading it.

- An unnamed reader gets a fresh ring: it starts at "now", and its slot goes when
  it ends: by itself on the way out, or, when it died without that, by the exit
  program at once (owner_tgid 0: nothing more for it) and by the next procmon-ctl
  that takes or lists slots (its lock is free), which frees the slot.
- A named reader's slot stays when its process ends: its ring keeps filling, under
  its own settings, and the next reader of that name takes the slot and resumes
  where the last one stopped.  `readers rm NAME` frees it.

Slots are taken and freed under the instance's slots lock (the admin lock of a
pinned instance), which also serialises every write of the settings map's masks."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import Command, Given, StateError, UsageError
from ..kernel import libbpf
from ..kernel.abi import (
    LOSS_VALUE,
    Reader,
    ReaderCount,
    ReaderFlag,
    ReaderLimits,
    ReaderLoss,
    Settings,
)
from .base import Instance, SlotHold

READERS_MAX = ReaderLimits.READERS_MAX.value
NAME_MAX = ReaderLimits.READER_NAME_LEN.value - 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
_SETTINGS_KEY = bytes(4)


def _key(n: int) -> bytes:
    return n.to_bytes(4, "little")


def check_name(name: str) -> None:
    if len(name) > NAME_MAX or not _NAME.fullmatch(name):
        raise UsageError(
            (
                Given(name),
                f" is not a reader name: use 1 to {NAME_MAX} letters, digits and _.@- "
                "(not starting with a punctuation mark), e.g. journal",
            )
        )


def name_for_output(path: str) -> str:
    """The name `--output FILE` gives its reader when none is given: the file's
    absolute path, its slashes made dashes (/var/log/procmon/events.jsonl is
    var-log-procmon-events.jsonl), so a log writer that restarts resumes, and two
    files never share a place.  A path too long for a name keeps its end, after 8
    hex digits of its hash."""
    full = os.path.abspath(path)
    name = re.sub(r"[^A-Za-z0-9_.@-]", "_", full.strip("/").replace("/", "-"))
    name = name.lstrip("_.@-") or "output"
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(os.fsencode(full)).hexdigest()[:8]
    return f"{digest}-{name[-(NAME_MAX - 9) :]}"


class CgroupFilter(NamedTuple):
    """A reader's cgroup filter: the cgroup `id` at `level` and below; and, for the
    kernel to follow it when it is made anew (struct reader), the id of the cgroup
    it is made in and its name (0 and b"": not followed)."""

    id: int
    level: int
    parent_id: int = 0
    name: bytes = b""


@dataclass(frozen=True)
class ReaderWants:
    """What a reader asks the programs for, besides every process's fork, exec and
    exit records."""

    threads: bool = False
    failed: bool = False
    cgroup: CgroupFilter | None = None  # that cgroup and below only
    argv_bytes: int | None = None  # of each command line at most; None: load's
    # A cgroup filter whose cgroup is not there yet (--container NAME of a container
    # that has not started): the slot is held but kept out of settings.readers, so
    # no program looks at it (it gets nothing, and other readers' records cost
    # nothing more, a lone reader's stay built in place) until set_cgroup() gives
    # it its cgroup.  Its filter meanwhile matches nothing (id 0 at level 0).
    cgroup_pending: bool = False

    @property
    def flags(self) -> int:
        return (
            (ReaderFlag.THREADS if self.threads else 0)
            | (ReaderFlag.FAILED if self.failed else 0)
            | (ReaderFlag.CGROUP if self.cgroup is not None or self.cgroup_pending else 0)
        )


@dataclass(frozen=True)
class ReaderState:
    """One reader slot as `status` and `readers` show it."""

    slot: int
    name: str | None
    pid: int | None  # the process reading it now; None: a named reader that is down
    threads: bool
    failed: bool
    cgroup_id: int | None
    argv_bytes: int  # of each command line it keeps
    ring_size: int
    waiting: int  # bytes in its ring not read yet
    produced: int  # records the programs put (or tried to put) in its ring
    dropped: int  # ... that its full ring refused
    filtered: int  # records its cgroup filter kept out
    marked: int  # losses its gap lines reported

    @property
    def delivered(self) -> int:
        return self.produced - self.dropped


class ReaderSlots:
    """The reader slots of one instance.  Opens the maps it needs per call."""

    def __init__(self, instance: Instance):
        self.instance = instance

    # -- what is there --

    def states(self) -> list[ReaderState]:
        """Every active slot, freeing those whose reader has ended first."""
        with self.instance.slots_lock():
            self._reclaim()
            return [self._state(n) for n in self._active()]

    def new_ring_size(self) -> int:
        """The size of the ring a new reader gets (`load`'s ring size)."""
        return self._settings().ring_size

    def load_settings(self) -> Settings:
        """The settings as `load` left them: ring_size and argv_bytes are what the
        instance was loaded with (the rest is the readers')."""
        return self._settings()

    def failed_readers(self) -> set[int]:
        """The slots whose readers asked for failed execs."""
        value = self._settings()
        mask = value.readers & value.failed_readers
        return {n for n in range(READERS_MAX) if mask >> n & 1}

    def slot_of(self, pid: int) -> int | None:
        """The active slot process `pid` reads (as its slot says), without the lock
        or the look at its ring that states() takes: for polling."""
        for slot in self._active():
            if self._reader(slot).owner_tgid == pid:
                return slot
        return None

    def waiting(self, slot: int) -> int:
        """Bytes in the ring of `slot` not read yet (0: none, or no ring)."""
        from ..kernel.ringbuf import RingBufferReader

        ring_fd = self._ring_fd(slot)
        if ring_fd is None:
            return 0
        try:
            with RingBufferReader(ring_fd) as ring:
                return ring.pending_bytes()
        finally:
            os.close(ring_fd)

    def _active(self) -> list[int]:
        mask = self._settings().readers
        return [n for n in range(READERS_MAX) if mask >> n & 1]

    def _settings(self) -> Settings:
        with _MapFd(self.instance, "settings") as fd:
            return Settings.from_buffer_copy(
                libbpf.map_lookup(fd, _SETTINGS_KEY, ctypes.sizeof(Settings))
            )

    def _write_settings(self, value: Settings) -> None:
        with _MapFd(self.instance, "settings") as fd:
            libbpf.map_update(fd, _SETTINGS_KEY, bytes(value))

    def _reader(self, slot: int) -> Reader:
        with _MapFd(self.instance, "readers") as fd:
            return Reader.from_buffer_copy(libbpf.map_lookup(fd, _key(slot), ctypes.sizeof(Reader)))

    def _write_reader(self, slot: int, value: Reader) -> None:
        with _MapFd(self.instance, "readers") as fd:
            libbpf.map_update(fd, _key(slot), bytes(value))

    def _argv_read(self, settings: Settings) -> int:
        """The most argv bytes any active reader keeps: all the exec programs read."""
        return max(
            (self._reader(n).argv_bytes for n in range(READERS_MAX) if settings.readers >> n & 1),
            default=0,
        )

    def _loss(self, slot: int, kind: ReaderLoss) -> int:
        with _MapFd(self.instance, "reader_losses") as fd:
            key = _key(slot * ReaderLoss.KINDS + kind)
            return LOSS_VALUE.unpack(libbpf.map_lookup(fd, key, LOSS_VALUE.size))[0]

    def _counts(self, slot: int) -> tuple[int, int]:
        ncpu = libbpf.possible_cpus()
        with _MapFd(self.instance, "reader_counts") as fd:
            raw = libbpf.map_lookup(fd, _key(slot), ctypes.sizeof(ReaderCount) * ncpu)
        counts = (ReaderCount * ncpu).from_buffer_copy(raw)
        return sum(c.produced for c in counts), sum(c.filtered for c in counts)

    def _rings_id(self) -> int:
        with _MapFd(self.instance, "rings") as fd:
            return libbpf.map_info(fd).id

    def _ring_fd(self, slot: int) -> int | None:
        with _MapFd(self.instance, "rings") as fd:
            try:
                raw = libbpf.map_lookup(fd, _key(slot), 4)
            except libbpf.LibbpfError as err:
                if libbpf.is_not_found(err):
                    return None
                raise
        ring_id = int.from_bytes(raw, "little")
        kept = self.instance.kept_ring(slot, ring_id)
        # By id (CAP_SYS_ADMIN) only for a ring nothing keeps: an unnamed reader's,
        # which only `status` and `readers` (run by root) open.
        return kept if kept is not None else libbpf.map_fd_by_id(ring_id)

    def _state(self, slot: int) -> ReaderState:
        from ..kernel.ringbuf import RingBufferReader

        reader = self._reader(slot)
        flags, owner, cgroup_id, name = (
            reader.flags,
            reader.owner_tgid,
            reader.cgroup_id,
            reader.name,
        )
        produced, filtered = self._counts(slot)
        ring_size = waiting = 0
        ring_fd = self._ring_fd(slot)
        if ring_fd is not None:
            try:
                with RingBufferReader(ring_fd) as ring:
                    ring_size, waiting = ring.size, ring.pending_bytes()
            finally:
                os.close(ring_fd)
        named = bool(flags & ReaderFlag.NAMED)
        holder = self.instance.slot_holder(slot)
        return ReaderState(
            slot=slot,
            name=name.rstrip(b"\0").decode(errors="replace") if named else None,
            pid=holder if holder is not None else (owner or None) if not named else None,
            threads=bool(flags & ReaderFlag.THREADS),
            failed=bool(flags & ReaderFlag.FAILED),
            cgroup_id=cgroup_id if flags & ReaderFlag.CGROUP else None,
            argv_bytes=reader.argv_bytes,
            ring_size=ring_size,
            waiting=waiting,
            produced=produced,
            dropped=self._loss(slot, ReaderLoss.DROPPED),
            filtered=filtered,
            marked=self._loss(slot, ReaderLoss.MARKED),
        )

    def _named(self, name: str) -> int | None:
        for slot in self._active():
            reader = self._reader(slot)
            if reader.flags & ReaderFlag.NAMED and reader.name.decode(errors="replace") == name:
                return slot
        return None

    # -- taking, leaving, removing --

    def _reclaim(self) -> None:
        """Free the slots of unnamed readers that have ended (however they ended)."""
        for slot in self._active():
            reader = self._reader(slot)
            if reader.flags & ReaderFlag.NAMED:
                continue
            if reader.owner_tgid == 0 or not self.instance.slot_in_use(slot):
                self._free(slot)

    def _free(self, slot: int) -> None:
        """Out of the masks first: no program puts anything in it from then on."""
        value = self._settings()
        bit = ~(1 << slot) & 0xFFFFFFFF
        value.readers &= bit
        value.thread_readers &= bit
        value.failed_readers &= bit
        value.cgroup_readers &= bit
        value.argv_read = self._argv_read(value)
        self._write_settings(value)
        with _MapFd(self.instance, "rings") as fd:
            libbpf.map_delete(fd, _key(slot))
        self.instance.forget_ring(slot)
        self._write_reader(slot, Reader())

    def _reset_counts(self, slot: int) -> None:
        ncpu = libbpf.possible_cpus()
        with _MapFd(self.instance, "reader_counts") as fd:
            libbpf.map_update(fd, _key(slot), bytes(ctypes.sizeof(ReaderCount) * ncpu))
        with _MapFd(self.instance, "reader_losses") as fd:
            for kind in (ReaderLoss.DROPPED, ReaderLoss.MARKED):
                libbpf.map_update(fd, _key(slot * ReaderLoss.KINDS + kind), LOSS_VALUE.pack(0))

    @contextmanager
    def taken(
        self, wants: ReaderWants, name: str | None = None, ring_size: int | None = None
    ) -> Iterator[HeldSlot]:
        """A slot for this process for the with block: a named reader's own slot if
        it has one (its filters then become `wants`), else a free one with a fresh
        ring of `ring_size` bytes (None: the instance's)."""
        held = self._take(wants, name, ring_size)
        try:
            yield held
        finally:
            self._leave(held)

    def _take(self, wants: ReaderWants, name: str | None, ring_size: int | None) -> HeldSlot:
        # Here, not at the top: `stats` lists the slots without loading what a reader
        # needs to take one (tests/test_startup.py).
        from .settings import default_wakeup_bytes

        flags = wants.flags | (ReaderFlag.NAMED if name else 0)
        with self.instance.slots_lock():
            self._reclaim()
            settings = self._settings()
            slot = self._named(name) if name else None
            resumed = slot is not None
            hold: SlotHold | None = None
            ring_fd: int | None = None
            try:
                if slot is not None:
                    hold = self._hold_named(
                        slot, name, "is already reading", ", or choose another name"
                    )
                    ring_fd = self._ring_fd(slot)
                if slot is None:
                    slot, hold = self._free_slot()
                if ring_fd is None:  # a new slot, or a named one whose ring was lost
                    size = ring_size or settings.ring_size
                    ring_fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_RINGBUF, "reader", 0, 0, size)
                    made = size
                    self._reset_counts(slot)
                    with _MapFd(self.instance, "rings") as fd:
                        libbpf.map_update(fd, _key(slot), ring_fd.to_bytes(4, "little"))
                    if name:
                        self.instance.keep_ring(slot, ring_fd)
                    resumed = False
                else:
                    made = libbpf.map_info(ring_fd).max_entries
                wakeup = default_wakeup_bytes(made)
                argv_bytes = settings.argv_bytes if wants.argv_bytes is None else wants.argv_bytes
                reader = Reader(
                    flags=flags,
                    owner_tgid=os.getpid(),
                    wakeup_bytes=wakeup,
                    name=(name or "").encode(),
                    argv_bytes=argv_bytes,
                )
                _put_cgroup(reader, wants.cgroup)
                self._write_reader(slot, reader)
                bit = 1 << slot
                # The filter's bit before the slot's: a program that sees the slot
                # always filters it (a named reader resuming is already in readers).
                cgroup = bool(flags & ReaderFlag.CGROUP)
                if cgroup and not settings.cgroup_readers & bit:
                    settings.cgroup_readers |= bit
                    self._write_settings(settings)
                settings.cgroup_readers = _set(settings.cgroup_readers, bit, cgroup)
                settings.readers = _set(settings.readers, bit, not wants.cgroup_pending)
                settings.thread_readers = _set(settings.thread_readers, bit, wants.threads)
                settings.failed_readers = _set(settings.failed_readers, bit, wants.failed)
                settings.argv_read = self._argv_read(settings)
                self._write_settings(settings)
                return HeldSlot(self, slot, ring_fd, hold, name, resumed, self._rings_id())
            except BaseException:
                if ring_fd is not None:
                    os.close(ring_fd)
                if hold is not None:
                    hold.close()
                raise

    def _hold_named(self, slot: int, name: str, busy: str, other_fix: str) -> SlotHold:
        """The named reader's slot, held; refused, naming its reader's pid, while a
        process reads it."""
        hold = self.instance.hold_slot(slot)
        if hold is None:
            pid = self.instance.slot_holder(slot)
            who = f" (pid {pid})" if pid else ""
            raise StateError(
                f"the reader {name} of {self.instance.description} {busy}{who}: "
                f"stop it first{other_fix}"
            )
        return hold

    def _free_slot(self) -> tuple[int, SlotHold]:
        active = self._active()
        for slot in range(READERS_MAX):
            if slot in active:
                continue
            hold = self.instance.hold_slot(slot)
            if hold is not None:
                return slot, hold
        holders = ", ".join(self._holder_text(slot) for slot in active)
        raise StateError(
            (
                f"all {READERS_MAX} reader slots of {self.instance.description} are in use "
                f"({holders}): stop one of those readers, or remove a named one that is "
                "down (see ",
                Command("readers"),
                ")",
            )
        )

    def _holder_text(self, slot: int) -> str:
        """Who holds a slot, for a message: "pid 4242", "journal (pid 4242)" or
        "journal (down)"."""
        reader = self._reader(slot)
        named = reader.flags & ReaderFlag.NAMED
        pid = self.instance.slot_holder(slot) or (None if named else reader.owner_tgid)
        if not named:
            return f"pid {pid}" if pid else "a reader ending now"
        name = reader.name.decode(errors="replace")
        return f"{name} (pid {pid})" if pid else f"{name} (down)"

    def _leave(self, held: HeldSlot) -> None:
        try:
            with self.instance.slots_lock():
                if self._rings_id() != held.rings_id:
                    return  # unloaded, and loaded again: that slot is not ours
                active = self._settings().readers >> held.slot & 1
                if held.name is None or (not active and not held.resumed):
                    # A reader that waited for its cgroup to the end: nothing to keep.
                    self._free(held.slot)
                else:
                    reader = self._reader(held.slot)
                    reader.owner_tgid = 0
                    self._write_reader(held.slot, reader)
                    if not active:  # a named reader's place, as it was before it waited
                        self._join(held.slot)
        except StateError:
            # The instance was unloaded under the reader (unload --force): its slot
            # went with it, and what the reader says about that is the message.
            pass
        finally:
            held.close()

    def remove(self, name: str) -> ReaderState:
        """Free a named reader's slot: its place and what waits in its ring.  What it
        was just before."""
        check_name(name)
        with self.instance.slots_lock():
            slot = self._named(name)
            if slot is None:
                raise StateError(
                    (
                        f"{self.instance.description} has no reader named {name} "
                        "(the named readers are listed by ",
                        Command("readers"),
                        ")",
                    )
                )
            hold = self._hold_named(slot, name, "is reading now", "")
            try:
                state = self._state(slot)
                self._free(slot)
            finally:
                hold.close()
            return state

    def set_cgroup(self, held: HeldSlot, wants: ReaderWants) -> None:
        """The reader's cgroup filter now stands for another cgroup (the one it
        follows was made anew, or the one it waited for is there): a slot kept out
        of the programs' sight (cgroup_pending) joins them, filter first."""
        with self.instance.slots_lock():
            reader = self._reader(held.slot)
            _put_cgroup(reader, wants.cgroup)
            self._write_reader(held.slot, reader)
            if not wants.cgroup_pending:
                self._join(held.slot)

    def _join(self, slot: int) -> None:
        """The slot in settings.readers: the programs put records in its ring."""
        settings = self._settings()
        if settings.readers >> slot & 1:
            return
        settings.readers |= 1 << slot
        settings.argv_read = self._argv_read(settings)
        self._write_settings(settings)


def _put_cgroup(reader: Reader, cgroup: CgroupFilter | None) -> None:
    """The filter in the reader's slot; followed by the kernel when its name fits."""
    cgroup = cgroup or CgroupFilter(0, 0)
    followed = 0 < len(cgroup.name) < ReaderLimits.READER_CGROUP_NAME_LEN
    reader.cgroup_id, reader.cgroup_level = cgroup.id, cgroup.level
    reader.cgroup_parent_id = cgroup.parent_id if followed else 0
    reader.cgroup_name = cgroup.name if followed else b""


def _set(mask: int, bit: int, on: bool) -> int:
    return mask | bit if on else mask & ~bit


class HeldSlot:
    """A slot this process reads: its ring's fd, the slot's lock, its losses."""

    def __init__(
        self,
        slots: ReaderSlots,
        slot: int,
        ring_fd: int,
        hold: SlotHold | None,
        name: str | None,
        resumed: bool,
        rings_id: int,
    ):
        self.slots, self.slot, self.ring_fd, self._hold = slots, slot, ring_fd, hold
        self.rings_id = rings_id  # the instance's `rings` map: which instance it is
        self.name = name
        self.resumed = resumed  # a named reader's ring, with what came while it was down
        self._losses_fd: int | None = slots.instance.open_map("reader_losses")
        self._dropped_key = _key(slot * ReaderLoss.KINDS + ReaderLoss.DROPPED)
        self._marked_key = _key(slot * ReaderLoss.KINDS + ReaderLoss.MARKED)

    def dropped(self) -> int:
        raw = libbpf.map_lookup(self._losses_fd, self._dropped_key, LOSS_VALUE.size)
        return LOSS_VALUE.unpack(raw)[0]

    def marked(self) -> int:
        raw = libbpf.map_lookup(self._losses_fd, self._marked_key, LOSS_VALUE.size)
        return LOSS_VALUE.unpack(raw)[0]

    def save_marked(self, marked: int) -> None:
        libbpf.map_update(self._losses_fd, self._marked_key, LOSS_VALUE.pack(marked))

    def close(self) -> None:
        for fd in (self.ring_fd, self._losses_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.ring_fd = self._losses_fd = -1
        if self._hold is not None:
            self._hold.close()
            self._hold = None


class _MapFd:
    """A map's fd for a with block."""

    def __init__(self, instance: Instance, name: str):
        self._fd = instance.open_map(name)

    def __enter__(self) -> int:
        return self._fd

    def __exit__(self, *exc) -> None:
        os.close(self._fd)
