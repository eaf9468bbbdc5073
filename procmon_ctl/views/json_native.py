"""The C side of `events --json` (native/json_lines.c, built by `make` into
procmon_ctl/data/libprocmon_json.so): ring records to JSON lines with no Python
object per record.  One table of signatures, as for libbpf.

It writes exactly what json_lines.py writes (tests/test_json_native.py checks
byte for byte) and hands back the records it leaves to Python (names that are not
plain ASCII, unknown types).  A library built from other headers than abi.py
mirrors is not used (problem() says why; `doctor` warns).  Without the library,
`events --json` falls back to the Python formatter: slower, same output."""

from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, c_char, c_char_p, c_int, c_int64, c_long, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass
from functools import cache

from .. import DATA_DIR
from ..errors import BpfError
from ..kernel.abi import PmAbi, PmBatch, PmCgroup, PmCgroupLimits, PmCgroups, expected_pm_abi
from ..process import clock
from ..process.last_execs import CAP, MAX_BYTES

LIBRARY = DATA_DIR / "libprocmon_json.so"

# Output room per call: a batch of thread records is ~150 bytes each.  It must
# hold a worst-case line (~100 KB of escaped arguments) with the longest cgroup
# fragment (PM_CGROUP_JSON_MAX), or a batch could never start.
OUTPUT_BYTES = 1 << 20
_MAP_FAILED = ctypes.c_void_p(-1).value


_SIGNATURES = {
    # name: (argtypes, restype)
    "pm_json_lines": (
        [
            c_void_p,
            c_uint64,
            c_void_p,
            c_uint64,
            POINTER(PmCgroups),
            c_void_p,
            POINTER(c_char),
            c_uint64,
            POINTER(PmBatch),
        ],
        None,
    ),
    "pm_ring_map": ([c_int, c_uint64], c_void_p),
    "pm_ring_unmap": ([c_void_p, c_uint64], c_int),
    "pm_page_size": ([], c_long),
    "pm_abi_info": ([POINTER(PmAbi)], None),
    "pm_execs_new": ([c_uint32, c_uint64], c_void_p),
    "pm_execs_free": ([c_void_p], None),
    "pm_execs_set": ([c_void_p, c_uint32, c_char_p, c_uint64], c_int),
    "pm_execs_fork": ([c_void_p, c_uint32, c_uint32], None),
    "pm_execs_get": ([c_void_p, c_uint32, POINTER(c_void_p)], c_int64),
    "pm_execs_drop": ([c_void_p, c_uint32], None),
    "pm_execs_count": ([c_void_p], c_uint32),
}


@cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    """(the library, None), or (None, why it is not used)."""
    if not LIBRARY.exists():
        return None, f"{LIBRARY} not built"
    try:
        lib = ctypes.CDLL(str(LIBRARY), use_errno=True)
    except OSError as err:
        return None, f"{LIBRARY} does not load ({err})"
    try:
        for name, (argtypes, restype) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = restype
    except AttributeError as err:
        return None, f"{LIBRARY} is from another version ({err})"
    built = PmAbi()
    lib.pm_abi_info(ctypes.byref(built))
    expected = expected_pm_abi()
    differ = [
        f"{name} {getattr(built, name)} != {getattr(expected, name)}"
        for name, _ in PmAbi._fields_
        if getattr(built, name) != getattr(expected, name)
    ]
    if differ:
        return None, (
            f"{LIBRARY} was built from other headers than procmon_ctl/abi.py mirrors "
            f"({', '.join(differ[:3])})"
        )
    return lib, None


def library() -> ctypes.CDLL | None:
    """The loaded library, or None when it was not built, does not load, or was built
    with a view of the records that differs from abi.py's."""
    return _load()[0]


def problem() -> str | None:
    """Why library() is None (None when it is not)."""
    return _load()[1]


# Slots of the cgroup table: a host's processes live in a few hundred cgroups.
CGROUP_SLOTS = 4096
_CGROUP_JSON_MAX = PmCgroupLimits.PM_CGROUP_JSON_MAX.value


class CgroupTable:
    """The cgroups the C formatter knows, with the JSON each one's records carry
    (struct pm_cgroups).  Filled from Python as records of new cgroups come back
    to it; cleared when three quarters full, so a host that makes cgroup after
    cgroup never slows the lookups.  Owns the fragments' memory."""

    def __init__(self, slots: int = CGROUP_SLOTS):
        self._slots = (PmCgroup * slots)()
        self._texts: list[ctypes.Array] = []
        self.table = PmCgroups(self._slots, slots - 1)

    def add(self, cgroup_id: int, fragment: str) -> None:
        """Make records of `cgroup_id` the C side's: `fragment` is what follows
        "thread" in their lines.  Fragments C cannot take stay Python's."""
        data = fragment.encode("ascii", "replace")
        if not cgroup_id or len(data) > _CGROUP_JSON_MAX or not fragment.isascii():
            return
        mask = self.table.mask
        if len(self._texts) >= (mask + 1) * 3 // 4:
            ctypes.memset(self._slots, 0, ctypes.sizeof(self._slots))
            self._texts.clear()
        slot = cgroup_id & mask
        while self._slots[slot].id not in (0, cgroup_id):
            slot = (slot + 1) & mask
        text = ctypes.create_string_buffer(data, len(data))
        self._texts.append(text)
        self._slots[slot].json = ctypes.cast(text, c_void_p)
        self._slots[slot].len = len(data)
        self._slots[slot].id = cgroup_id


class NativeExecs:
    """The C formatter's table of what each process last ran (struct pm_execs):
    pid -> the text its exit line ends with.  The C side keeps it from the records
    it formats; the records it leaves to Python are kept through these methods,
    which are json_lines.ExecTexts' (the Python writer's table).  Closed
    explicitly, with the formatter."""

    def __init__(self, lib: ctypes.CDLL, cap: int = CAP, max_bytes: int = MAX_BYTES):
        self._lib = lib
        self.table = lib.pm_execs_new(cap, max_bytes)
        if not self.table:
            raise MemoryError("no memory for the table of programs run")

    def __len__(self) -> int:
        return self._lib.pm_execs_count(self.table)

    def set(self, pid: int, fragment: str) -> None:
        data = fragment.encode()
        self._lib.pm_execs_set(self.table, pid, data, len(data))

    def fork(self, child: int, parent: int) -> None:
        self._lib.pm_execs_fork(self.table, child, parent)

    def get(self, pid: int) -> str | None:
        text = c_void_p()
        n = self._lib.pm_execs_get(self.table, pid, ctypes.byref(text))
        return None if n < 0 else ctypes.string_at(text, n).decode()

    def pop(self, pid: int) -> str | None:
        text = self.get(pid)
        if text is not None:
            self._lib.pm_execs_drop(self.table, pid)
        return text

    def close(self) -> None:
        if self.table:
            self._lib.pm_execs_free(self.table)
            self.table = None


@dataclass
class Batch:
    # The lines as UTF-8, in the formatter's buffer: good until its next format().
    # Written from there as they are: decoding them to a str and encoding that
    # again for the write took a fifth of a reader's CPU in a fork storm.
    data: memoryview
    records: int
    pos: int  # ring position after the last record taken
    marked: int  # losses marked, this batch's gap lines included
    stop: int  # abi.PmStop

    @property
    def text(self) -> str:
        """The lines as text (ASCII but for the exit lines of programs whose exec
        Python wrote, names that are not plain ASCII: UTF-8)."""
        return str(self.data, "utf-8")


class JsonLineFormatter:
    """Formats records straight out of a ring's memory.  `data` is the address of
    the data area (mapped twice in a row), `producer` of the producer position."""

    def __init__(self, lib: ctypes.CDLL, data: int, mask: int, producer: int):
        self._lib, self._data, self._mask, self._producer = lib, data, mask, producer
        self._out = ctypes.create_string_buffer(OUTPUT_BYTES)
        self._batch = PmBatch()
        self.cgroups = CgroupTable()
        self.execs = NativeExecs(lib)

    def close(self) -> None:
        self.execs.close()

    def format(self, pos: int, max_records: int, marked: int) -> Batch:
        b = self._batch
        b.pos, b.marked = pos, marked
        # The offset as the reading loop last took it (clock.resync, per batch), as
        # json_lines.py uses it, and now as the time of the batch's gap lines.
        b.offset_ns, b.gap_ns = clock.offset_ns(), clock.monotonic_ns()
        self._lib.pm_json_lines(
            self._data,
            self._mask,
            self._producer,
            max_records,
            ctypes.byref(self.cgroups.table),
            self.execs.table,
            self._out,
            OUTPUT_BYTES,
            ctypes.byref(b),
        )
        data = memoryview(self._out).cast("B")[: b.out_len]
        return Batch(data, b.records, b.pos, b.marked, b.stop)


class MappedRing:
    """The ring's producer page and data area mapped for the C formatter; closed
    explicitly (a context manager), never left to the garbage collector."""

    def __init__(self, lib: ctypes.CDLL, fd: int, size: int):
        self._lib, self._size = lib, size
        ctypes.set_errno(0)
        addr = lib.pm_ring_map(fd, size)
        if addr is None or addr == _MAP_FAILED:
            raise BpfError(f"cannot map the ring buffer: {os.strerror(ctypes.get_errno())}")
        self._addr = addr
        page = lib.pm_page_size()
        self.formatter = JsonLineFormatter(lib, addr + page, size - 1, addr)

    def close(self) -> None:
        self.formatter.close()
        if self._addr is not None:
            self._lib.pm_ring_unmap(self._addr, self._size)
            self._addr = None

    def __enter__(self) -> MappedRing:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
