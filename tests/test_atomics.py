"""The Python reader's memory ordering (issue 12.8): libatomic's loads, stores and
fence do what they say, and RingBufferReader reads the real ring with acquire and
hands it back with release, as libbpf's reader and native/json_lines.c do.

What these tests can and cannot show: x86 is TSO, so a reordering that acquire
and release forbid cannot happen here, and no test on this machine can observe
one.  They show instead that every access the ordering depends on goes through
an atomic of the right order, at the right address, in the right place (a plain
read or write put back in its place fails them), and that libatomic gives those
orders (its C11 semantics hold on arm64 too: ldar, a dmb ishld fence, stlr)."""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

import pytest
from conftest import fork_processes

from procmon_ctl.commands import doctor
from procmon_ctl.errors import MissingError
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import ReaderSlots, ReaderWants
from procmon_ctl.kernel import atomics, ringbuf
from procmon_ctl.kernel.abi import RingbufRecord
from procmon_ctl.kernel.ringbuf import RingBufferReader
from procmon_ctl.process.decode import decode_at

# The orders C11 allows for each (an acquire store or a release load is undefined).
STORE_ORDERS = (atomics.RELAXED, atomics.RELEASE, atomics.SEQ_CST)
LOAD_ORDERS = (atomics.RELAXED, atomics.ACQUIRE, atomics.SEQ_CST)


def test_atomics_load_and_store_shared_memory():
    """On a shared mapping, across processes: a child's release stores are what the
    parent's acquire loads read, as one word each (no torn value)."""
    mem = mmap.mmap(-1, mmap.PAGESIZE)  # MAP_SHARED: the child writes the same page
    base = atomics.buffer_address(mem)
    assert base == ctypes.addressof(ctypes.c_char.from_buffer(mem))
    assert atomics.buffer_address(memoryview(mem)[64:]) == base + 64
    words = [0x1122334455667788, 0xFFFFFFFFFFFFFFFF, 1 << 63, 0]
    pid = os.fork()
    if pid == 0:
        try:
            for i, value in enumerate(words):
                atomics.store_u64(base + 8 * i, value, atomics.RELEASE)
            atomics.store_u64(base + 64, 1, atomics.RELEASE)  # "done", last
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert atomics.load_u64(base + 64, atomics.ACQUIRE) == 1
    for i, value in enumerate(words):
        assert atomics.load_u64(base + 8 * i, atomics.ACQUIRE) == value
        assert struct.unpack_from("Q", mem, 8 * i)[0] == value
        assert (
            atomics.load_u32(base + 8 * i, atomics.ACQUIRE)
            == struct.unpack_from("I", mem, 8 * i)[0]
        )
    for store_order, load_order in zip(STORE_ORDERS, LOAD_ORDERS, strict=True):
        atomics.store_u64(base, 1000 + store_order, store_order)
        assert atomics.load_u64(base, load_order) == 1000 + store_order
    for order in (*LOAD_ORDERS, *STORE_ORDERS):
        atomics.fence(order)


def test_atomics_read_a_read_only_mapping_and_refuse_null():
    """The ring's producer page is mapped read-only, which ctypes' from_buffer
    refuses: buffer_address still finds it.  NULL is an exception, not a crash."""
    fd = os.memfd_create("atomics-test")
    try:
        os.ftruncate(fd, mmap.PAGESIZE)
        os.pwrite(fd, struct.pack("QI", 0xDEADBEEFCAFE, 0xC0FFEE), 0)
        ro = mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        with pytest.raises(TypeError):
            ctypes.c_uint64.from_buffer(ro)
        addr = atomics.buffer_address(ro)
        assert atomics.load_u64(addr) == 0xDEADBEEFCAFE
        assert atomics.load_u32(addr + 8) == 0xC0FFEE
        ro.close()
    finally:
        os.close(fd)
    for call in (lambda: atomics.load_u64(0), lambda: atomics.store_u64(0, 1)):
        with pytest.raises(ValueError, match="NULL"):
            call()


def test_without_libatomic_the_error_says_what_to_install(monkeypatch):
    def no_library(name, *args, **kw):
        raise OSError(f"{name}: cannot open shared object file")

    atomics._lib.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    try:
        with pytest.raises(MissingError, match=r"apt-get install libatomic1"):
            atomics.fence()
        check = doctor.check_libatomic()
        assert (check.status, check.fix) == ("FAIL", "apt-get install libatomic1 (or run `make`)")
    finally:
        monkeypatch.undo()
        atomics._lib.cache_clear()
    assert doctor.check_libatomic().status == "PASS"


class Recorder:
    """Wraps atomics' functions, and the reader's plain reads of record headers:
    every call, in order, goes through the real one."""

    NAMES = ("load_u64", "load_u32", "store_u64", "fence")

    def __init__(self, monkeypatch, consumer_page: mmap.mmap):
        self.calls: list[tuple] = []
        self.consumer_page = consumer_page
        for name in self.NAMES:
            monkeypatch.setattr(atomics, name, self._wrap(name, getattr(atomics, name)))
        monkeypatch.setattr(ringbuf, "RECORD_LENGTH", self._Headers(self, ringbuf.RECORD_LENGTH))

    class _Headers:
        def __init__(self, recorder: Recorder, real: struct.Struct):
            self.recorder, self.real = recorder, real

        def unpack_from(self, buf, offset: int = 0) -> tuple:
            result = self.real.unpack_from(buf, offset)
            self.recorder.calls.append(("header", offset, result[0]))
            return result

    def shared_consumer_pos(self) -> int:
        return struct.unpack_from("Q", self.consumer_page, 0)[0]

    def _wrap(self, name, real):
        def recorded(*args):
            if name == "store_u64":
                # What the kernel sees of the consumer position, in a mapping of our
                # own: before and after this very store.
                before = self.shared_consumer_pos()
                real(*args)
                self.calls.append((name, *args, before, self.shared_consumer_pos()))
                return None
            result = real(*args)
            self.calls.append((name, *args, result))
            return result

        return recorded

    def take(self) -> list[tuple]:
        calls, self.calls = self.calls, []
        return calls


def test_the_reader_acquires_the_ring_and_releases_what_it_read(attached, monkeypatch):
    """On a real ring with real forks: scan() reads producer_pos with acquire loads
    (the first and every re-read) and ends with an acquire fence, after every load
    of a header and before the records are decoded; commit(), commit_to() and
    skip_backlog() store the consumer position with one release store, which is
    the store that moves the kernel's consumer_pos; record_at() reads the header
    with acquire."""
    # A reader slot of this process's own: its ring, as `events` reads it.
    slots = ReaderSlots(PinnedInstance.at(attached.pin_dir))
    with (
        slots.taken(ReaderWants()) as held,
        mmap.mmap(held.ring_fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ) as consumer_page,
        RingBufferReader(held.ring_fd) as reader,
    ):
        reader.skip_backlog()
        producer_addr = atomics.buffer_address(reader.view)  # the producer page
        rec = Recorder(monkeypatch, consumer_page)
        pids = fork_processes(20)

        start = reader.consumer_pos
        # Everything waiting: on a busy host more than a default batch came
        # between skip_backlog() and our forks.
        offsets = reader.scan(1 << 30)
        scan_calls = rec.take()
        forks = {e.pid for e in (decode_at(reader.view, o) for o in offsets)}
        assert set(pids) <= forks, "the forks made before scan() are in its batch"

        # In order: producer_pos loaded, headers read (plain loads, no call each),
        # producer_pos loaded again when reached, one acquire fence last.
        names = [c[0] for c in scan_calls]
        assert names[0] == "load_u64", names
        assert names[-1] == "fence" and names.count("fence") == 1, names
        assert set(names[:-1]) == {"load_u64", "header"}, names
        headers = {c[1] + RingbufRecord.HDR_SZ.value for c in scan_calls if c[0] == "header"}
        assert headers >= set(offsets)
        loads = [c for c in scan_calls if c[0] == "load_u64"]
        for _, addr, order, _ in loads:
            assert (addr, order) == (producer_addr, atomics.ACQUIRE)
        assert scan_calls[-1][1:] == (atomics.ACQUIRE, None)
        end = reader._read_pos
        assert start < end <= loads[-1][-1], "took what the acquire load published"
        if end >= loads[0][-1]:
            assert len(loads) >= 2, "it reached the position it loaded, and loads it again"

        consumer_addr = ctypes.addressof(reader._consumer_word)  # the mapped word
        reader.commit()
        assert rec.take() == [("store_u64", consumer_addr, end, atomics.RELEASE, start, end)]
        assert reader.consumer_pos == rec.shared_consumer_pos() == end

        # commit(count): the first records of a batch, by the same store.
        fork_processes(3)
        reader.scan()
        rec.take()
        reader.commit(1)
        *before, store = rec.take()  # it reads headers to find the first record's end
        assert {c[0] for c in before} <= {"header"}
        assert store[0] == "store_u64" and store[3] == atomics.RELEASE
        assert store[4:] == (end, store[2]) and store[2] > end

        # record_at() (the C formatter's leftovers): an acquire load of the header.
        pos = reader.consumer_pos  # the second record of that batch
        reader.record_at(pos)
        (load,) = rec.take()
        data_off = mmap.PAGESIZE + (pos & (reader.size - 1))
        assert load[:3] == ("load_u32", producer_addr + data_off, atomics.ACQUIRE)
        assert not load[3] & RingbufRecord.BUSY_BIT.value

        # commit_to() (the C formatter's path) and skip_backlog() (--from-now).
        fork_processes(2)
        target = reader.producer_pos
        rec.take()
        reader.commit_to(target)
        (store,) = rec.take()
        assert store[0] == "store_u64" and store[2:4] == (target, atomics.RELEASE)
        assert store[-1] == target == reader.consumer_pos
        fork_processes(2)
        reader.skip_backlog()
        calls = rec.take()
        assert [c[0] for c in calls][-1] == "store_u64"
        assert calls[-1][3] == atomics.RELEASE
        assert {c[2] for c in calls if c[0] == "load_u64"} == {atomics.ACQUIRE}
        assert calls[-1][-1] == reader.consumer_pos > target
