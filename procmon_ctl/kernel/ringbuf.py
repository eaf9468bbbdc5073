"""RingBufferReader: consume a BPF ring buffer (a reader's own, instance/readers.py).

The ring is mapped directly (consumer page read-write at offset 0; producer
page plus the data area twice, read-only, after it), the way libbpf's
ring_buffer does, but records are handed over in batches instead of through a
ctypes callback per record.  The consumer position lives in the map, so a
reader that stops (even by SIGKILL) leaves the rest for the next one.

Memory ordering, as libbpf's reader (src/ringbuf.c) and native/json_lines.c obey
it, so the reader is correct on arm64 and not only on x86 (TSO).  The kernel
(kernel/bpf/ringbuf.c) writes a record's header (length | BUSY) and then moves
producer_pos with smp_store_release; at submit it clears BUSY with xchg (fully
ordered: the record's data is visible first); a reservation reads consumer_pos
with smp_load_acquire before it reuses space.  So here:

- producer_pos is read with an acquire load: the headers up to it are then seen;
- a record's header must be read with acquire, so that its data, read after the
  header said "submitted", is the submitted data.  A ctypes call per record
  (~0.4 µs) would more than double scan()'s own cost (~0.25 µs a record), so it
  reads the headers with plain loads and ends with one acquire fence: every load
  before the fence (the headers) is ordered before every load after it (the
  caller decoding the records), which is what an acquire load of each header gives;
- consumer_pos is stored with a release store: our reads of the records are
  done before the kernel may see their space free and write over it.

The loads, stores and fence are libatomic's (atomics.py)."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import select
from pathlib import Path

from ..errors import BpfError, Command, StateError
from . import atomics, libbpf
from .abi import RECORD_LENGTH, RingbufRecord, record_footprint

_BUSY = RingbufRecord.BUSY_BIT.value
_DISCARD = RingbufRecord.DISCARD_BIT.value
_HEADER = RingbufRecord.HDR_SZ.value


class RingBufferReader:
    def __init__(self, pin: Path | int):
        """`pin`: the ring's pin in bpffs, or an fd of it (a private instance's,
        which pins nothing); the reader keeps a duplicate of that fd."""
        try:
            self._fd = os.dup(pin) if isinstance(pin, int) else libbpf.obj_get(pin)
        except libbpf.LibbpfError as err:
            if libbpf.is_not_found(err):
                raise StateError(
                    (f"no ring buffer pinned at {pin}: run ", Command("load"), " first")
                ) from None
            raise BpfError(f"cannot open the ring buffer {pin}: {err}") from None
        self._consumer = self._consumer_word = self._data = self._epoll = None
        self._read_pos = self._batch_start = self._scanned = 0
        try:
            info = libbpf.map_info(self._fd)
            if info.type != libbpf.BPF_MAP_TYPE_RINGBUF:
                raise BpfError(f"{pin} is not a ring buffer map (type {info.type})")
            page = mmap.PAGESIZE
            self.size = info.max_entries
            self._mask = self.size - 1
            self._consumer = mmap.mmap(
                self._fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0
            )
            # The kernel reads this word while we write it, so it must change in one
            # store: struct.pack_into zeroes the bytes first and then writes them one
            # by one, and a reservation that saw the passing 0 found the ring "full"
            # and dropped its record (measured: the drops of the thread storms).
            # _store_consumer() writes it with one atomic store; this object holds
            # the mapping and gives its address.
            self._consumer_word = ctypes.c_uint64.from_buffer(self._consumer)
            # The data area is mapped twice in a row so a record that wraps reads straight.
            self._data = mmap.mmap(
                self._fd, page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
            )
            self._view = memoryview(self._data)
            self._page = page
            # Addresses for the atomic accesses.  They stay valid while _view (an
            # export of _data, so _data cannot be unmapped) and _consumer_word live.
            self._producer_addr = atomics.buffer_address(self._view)
            self._consumer_addr = ctypes.addressof(self._consumer_word)
            self._epoll = select.epoll()
            # Edge-triggered: wake on the kernel's forced wakeups only, not merely
            # because data waits (it always does under load); the timeout polls.
            self._epoll.register(self._fd, select.EPOLLIN | select.EPOLLET)
            self._read_pos = self._batch_start = self.consumer_pos
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RingBufferReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        # A late atomic access raises ValueError instead of reading unmapped memory.
        self._producer_addr = self._consumer_addr = 0
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._data is not None:
            self._view.release()
            # A caller still holding a record view keeps the mapping until it lets go.
            with contextlib.suppress(BufferError):
                self._data.close()
            self._data = None
        if self._consumer is not None:
            self._consumer_word = None  # releases its hold on the mapping
            self._consumer.close()
            self._consumer = None
        if self._fd is not None and self._fd >= 0:
            os.close(self._fd)
            self._fd = None

    @property
    def consumer_pos(self) -> int:
        # A plain load: only this reader writes the word (each ring has one reader,
        # instance/readers.py), and a thread reads its own stores in order.
        return self._consumer_word.value

    @property
    def read_pos(self) -> int:
        """Where the next scan() starts: the consumer position, or past it when the
        caller holds records it took but has not committed (commit_to)."""
        return self._read_pos

    @read_pos.setter
    def read_pos(self, pos: int) -> None:
        self._read_pos, self._scanned = pos, 0

    @property
    def producer_pos(self) -> int:
        """Acquire: pairs with the kernel's smp_store_release of producer_pos, which
        it makes after writing the header of the record it reserved."""
        return atomics.load_u64(self._producer_addr, atomics.ACQUIRE)

    @property
    def fd(self) -> int:
        return self._fd

    def record_at(self, pos: int) -> tuple[int, int]:
        """The submitted record at ring position `pos`: where its data starts in
        `view`, and the ring position just after it."""
        hdr = self._page + (pos & self._mask)
        # Acquire, as scan()'s fence: the caller reads the record's data next.  One
        # record at a time (the C formatter's leftovers), so one call is cheap.
        length = atomics.load_u32(self._producer_addr + hdr, atomics.ACQUIRE)
        length &= ~(_BUSY | _DISCARD)
        return hdr + _HEADER, pos + record_footprint(length)

    def _store_consumer(self, pos: int) -> None:
        """Release: every read of the records before `pos` is done before the kernel
        (its smp_load_acquire of consumer_pos at reserve) may reuse their space.
        One 8-byte store, too: the kernel reads the word while it changes."""
        atomics.store_u64(self._consumer_addr, pos, atomics.RELEASE)

    def commit_to(self, pos: int) -> None:
        """Hand back the space up to ring position `pos`, and no further: the records
        after it that were taken are read on from read_pos, but stay in the ring for
        the next reader until they are committed too."""
        self._store_consumer(pos)

    def position_of(self, offset: int) -> int:
        """The ring position of the record whose data starts at `offset` of `view`,
        one of the last scan()'s."""
        start = self._batch_start
        return start + ((offset - self._page - _HEADER - start) & self._mask)

    def pending_bytes(self) -> int:
        return self.producer_pos - self.consumer_pos

    def wait(self, timeout: float) -> None:
        """Sleep until the kernel wakes us or `timeout` seconds pass.  The programs
        wake readers only when enough data waits, so the timeout is the poll period."""
        with contextlib.suppress(InterruptedError):
            self._epoll.poll(timeout)

    @property
    def view(self) -> memoryview:
        """The mapped ring (producer page first): scan() offsets index into it."""
        return self._view

    def scan(self, limit: int = 4096) -> list[int]:
        """Up to `limit` submitted records, oldest first, as the offsets into `view`
        where each record's data starts: they are read in place, and stay valid (the
        kernel cannot reuse their space) until `commit()`.  Commit after the output
        is written, so a reader killed in between repeats at most that batch and
        loses nothing.  The hot loop of `events`: no per-record end positions
        (commit(count) finds its end itself)."""
        view, data_off, mask = self._view, self._page, self._mask
        # A positive mask: & with a negative int (~_DISCARD) is slower in CPython.
        unpack, busy, discard, size_of = RECORD_LENGTH.unpack_from, _BUSY, _DISCARD, _DISCARD - 1
        header, footprint = _HEADER, record_footprint
        cons = self._batch_start = self._read_pos
        prod = self.producer_pos
        offsets: list[int] = []
        add = offsets.append
        left = limit
        while cons < prod and left:
            hdr = data_off + (cons & mask)
            length = unpack(view, hdr)[0]
            if length & busy:
                break  # reserved but not yet submitted: everything after it waits too
            cons += footprint(length & size_of)
            if not length & discard:
                add(hdr + header)
                left -= 1
            if cons >= prod:
                prod = self.producer_pos  # acquire, as every read of it
        self._read_pos = cons
        self._scanned = len(offsets)
        # The headers above were plain loads; this acquire fence orders them before
        # the caller's reads of the records' data (see the module's docstring).
        atomics.fence(atomics.ACQUIRE)
        return offsets

    def _end_of(self, count: int) -> int:
        """The ring position just after the first `count` records of the last scan().
        Plain loads: scan() already saw these headers submitted (and fenced), and
        their lengths do not change while we hold the space."""
        view, data_off, mask = self._view, self._page, self._mask
        cons = self._batch_start
        while count:
            length = RECORD_LENGTH.unpack_from(view, data_off + (cons & mask))[0]
            cons += record_footprint(length & ~_DISCARD)
            if not length & _DISCARD:
                count -= 1
        return cons

    def commit(self, count: int | None = None) -> None:
        """Hand back the space of the last batch, or of its first `count` records;
        the rest of the batch is then read again by the next scan()."""
        if count is None or count >= self._scanned:
            pos = self._read_pos
        elif count <= 0:
            pos = self._batch_start
        else:
            pos = self._end_of(count)
        self._read_pos = pos
        self._store_consumer(pos)

    def skip_backlog(self) -> int:
        """Drop everything already waiting (a named reader's `--from-now`); returns
        bytes skipped."""
        skipped = self.pending_bytes()
        self.read_pos = self.producer_pos
        self.commit()
        return skipped
