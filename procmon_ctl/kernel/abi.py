"""The kernel/user contract in Python: the one mirror of bpf/process_monitor.h
(and of native/json_lines.h, the C formatter's interface).

Every layout, offset and constant the package reads or writes is defined here and
nowhere else: the structs as ctypes structures with the C names, the enums with
the C values.  tests/test_abi.py checks each against the compiled object's BTF,
field by field; json_native.py checks the C formatter's own view (pm_abi_info)
against this one.  The hot path reads records with the struct formats derived
below, not through ctypes."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from ctypes import c_char, c_int32, c_uint32, c_uint64
from enum import IntEnum
from operator import itemgetter

TASK_COMM_LEN = 16
MAX_FILENAME_LEN = 256


class EventType(IntEnum):
    """enum event_type"""

    FORK = 1
    EXEC = 2
    EXIT = 3
    EXEC_FAILED = 4


# The types as module constants: a reader compares every record's type, and a
# global costs a fraction of an enum attribute's lookup.
FORK, EXEC, EXIT = EventType.FORK, EventType.EXEC, EventType.EXIT
EXEC_FAILED = EventType.EXEC_FAILED


class EventFlag(IntEnum):
    """enum event_flag: bits of process_event.flags"""

    THREAD = 1
    ARGV_TRUNCATED = 2
    PIDNS = 4
    IO = 8
    SETID = 16


class AuditUnset(IntEnum):
    """enum audit_unset: loginuid and sessionid of a process that has none"""

    AUDIT_ID_UNSET = 0xFFFFFFFF


class ArgvLimits(IntEnum):
    """enum argv_limits: how much of a command line exec records keep"""

    ARGV_DEFAULT_BYTES = 4096
    ARGV_MAX_BYTES = 16384
    FAILED_ARGS_MAX = 128
    FAILED_ARGV_MAX_BYTES = 8192


class CounterKey(IntEnum):
    """enum counter_key: keys of the per-CPU `counters` map"""

    PROCESSES = 0
    THREADS = 1
    EXECS = 2
    EXITS = 3
    PRODUCED = 4
    DROPPED = 5
    UNFOLLOWED = 6
    FILTERED = 7
    MAX = 8


class ReaderLimits(IntEnum):
    """enum reader_limits"""

    READERS_MAX = 16
    READER_NAME_LEN = 32
    READER_CGROUP_NAME_LEN = 128


class ReaderFlag(IntEnum):
    """enum reader_flag: bits of struct reader.flags"""

    THREADS = 1
    FAILED = 2
    CGROUP = 4
    NAMED = 8


class ReaderLoss(IntEnum):
    """enum reader_loss: a slot's two values in `reader_losses`"""

    DROPPED = 0
    MARKED = 1
    KINDS = 2


class FollowLimits(IntEnum):
    """enum follow_limits: the size `run` gives the `followed` map"""

    FOLLOWED_MAX_PROCESSES = 32768


class RingbufRecord(IntEnum):
    """enum ringbuf_record: a ring buffer record's header (BPF_RINGBUF_* of the kernel)"""

    BUSY_BIT = 1 << 31
    DISCARD_BIT = 1 << 30
    HDR_SZ = 8


# The counters `stats`, the exporter and the tests show, and their names, in key
# order (UNFOLLOWED is `run`'s; MAX is the map size).
COUNTER_KEYS = tuple(k for k in CounterKey if k not in (CounterKey.UNFOLLOWED, CounterKey.MAX))
COUNTER_NAMES = tuple(k.name.lower() for k in COUNTER_KEYS)


_HDR_AND_ALIGN = RingbufRecord.HDR_SZ.value + 7


def record_footprint(length: int) -> int:
    """RINGBUF_FOOTPRINT: the ring space of a record of `length` data bytes."""
    return (length + _HDR_AND_ALIGN) & ~7


class ProcessEvent(ctypes.Structure):
    """struct process_event: fork and exit records (and the start of exec records)"""

    _fields_ = [
        ("ts_ns", c_uint64),
        ("duration_ns", c_uint64),
        ("dropped_total", c_uint64),
        ("cgroup_id", c_uint64),
        ("type", c_uint32),
        ("pid", c_uint32),
        ("tgid", c_uint32),
        ("ppid", c_uint32),
        ("uid", c_uint32),
        ("euid", c_uint32),
        ("egid", c_uint32),
        ("loginuid", c_uint32),
        ("sessionid", c_uint32),
        ("exit_code", c_int32),
        ("exit_signal", c_uint32),
        ("flags", c_uint32),
        ("ns_pid", c_uint32),
        ("ns_ppid", c_uint32),
        ("comm", c_char * TASK_COMM_LEN),
    ]


class ExecEvent(ctypes.Structure):
    """struct exec_event: its fixed part; `data` (filename, then argv) follows it"""

    _fields_ = [
        ("base", ProcessEvent),
        ("filename_len", c_uint32),
        ("argv_len", c_uint32),
        ("argc", c_uint32),
        ("error", c_int32),
        ("prev_euid", c_uint32),
        ("prev_egid", c_uint32),
        ("cap_gained", c_uint64),
        ("data", c_char * 0),
    ]


class ExitEvent(ctypes.Structure):
    """struct exit_event: an exit record, the process's usage after its base"""

    _fields_ = [
        ("base", ProcessEvent),
        ("utime_ns", c_uint64),
        ("stime_ns", c_uint64),
        ("runtime_ns", c_uint64),
        ("maxrss_pages", c_uint64),
        ("min_flt", c_uint64),
        ("maj_flt", c_uint64),
        ("nvcsw", c_uint64),
        ("nivcsw", c_uint64),
        ("read_bytes", c_uint64),
        ("write_bytes", c_uint64),
    ]


class ExitLimits(IntEnum):
    """enum exit_limits"""

    EXIT_THREADS_READ_MAX = 256


class Settings(ctypes.Structure):
    """struct settings: the one value of the `settings` map"""

    _fields_ = [
        ("readers", c_uint32),
        ("thread_readers", c_uint32),
        ("failed_readers", c_uint32),
        ("ring_size", c_uint32),
        ("follow", c_uint32),
        ("argv_bytes", c_uint32),
        ("argv_read", c_uint32),
        ("spawner_pidns", c_uint32),
        ("spawner_tgid", c_uint32),
        ("cgroup_readers", c_uint32),
    ]


class Reader(ctypes.Structure):
    """struct reader: a value of the `readers` map (one per reader slot)"""

    _fields_ = [
        ("flags", c_uint32),
        ("owner_tgid", c_uint32),
        ("wakeup_bytes", c_uint32),
        ("cgroup_level", c_uint32),
        ("cgroup_id", c_uint64),
        ("name", c_char * ReaderLimits.READER_NAME_LEN),
        ("argv_bytes", c_uint32),
        ("__pad", c_uint32),
        ("cgroup_parent_id", c_uint64),
        ("cgroup_name", c_char * ReaderLimits.READER_CGROUP_NAME_LEN),
    ]


class ReaderCount(ctypes.Structure):
    """struct reader_count: a value of the per-CPU `reader_counts` map"""

    _fields_ = [("produced", c_uint64), ("filtered", c_uint64)]


# --- native/json_lines.h --------------------------------------------------------


class PmStop(IntEnum):
    """enum pm_stop: why pm_json_lines() returned"""

    CAUGHT_UP = 0
    LIMIT = 1
    FULL = 2
    FOREIGN = 3


class PmBatch(ctypes.Structure):
    """struct pm_batch"""

    _fields_ = [
        ("pos", c_uint64),
        ("records", c_uint64),
        ("out_len", c_uint64),
        ("marked", c_uint64),
        ("offset_ns", ctypes.c_int64),
        ("gap_ns", c_uint64),
        ("stop", c_uint32),
        ("__pad", c_uint32),
    ]


# enum pm_json_format: the version of the lines' text the C formatter writes.
PM_JSON_FORMAT = 5


class PmCgroupLimits(IntEnum):
    """enum pm_cgroup_limits"""

    PM_CGROUP_JSON_MAX = 32768


class PmCgroup(ctypes.Structure):
    """struct pm_cgroup: a slot of the C formatter's cgroup table"""

    _fields_ = [("id", c_uint64), ("json", ctypes.c_void_p), ("len", c_uint64)]


class PmCgroups(ctypes.Structure):
    """struct pm_cgroups"""

    _fields_ = [("slots", ctypes.POINTER(PmCgroup)), ("mask", c_uint64)]


class PmAbi(ctypes.Structure):
    """struct pm_abi: the contract as the C formatter was compiled"""

    _fields_ = [
        (name, c_uint32)
        for name in (
            "abi_size",
            "batch_size",
            "process_event_size",
            "exec_event_size",
            "comm_offset",
            "data_offset",
            "flags_offset",
            "dropped_total_offset",
            "event_fork",
            "event_exec",
            "event_exit",
            "event_flag_thread",
            "ringbuf_busy_bit",
            "ringbuf_discard_bit",
            "ringbuf_hdr_sz",
            "cgroup_id_offset",
            "ns_pid_offset",
            "event_flag_pidns",
            "cgroup_slot_size",
            "cgroup_json_max",
            "json_format",
            "exit_event_size",
            "event_flag_io",
            "event_flag_setid",
            "euid_offset",
        )
    ]


def expected_pm_abi() -> PmAbi:
    """What pm_abi_info() must report for a library built from the same headers."""
    return PmAbi(
        abi_size=ctypes.sizeof(PmAbi),
        batch_size=ctypes.sizeof(PmBatch),
        process_event_size=ctypes.sizeof(ProcessEvent),
        exec_event_size=ctypes.sizeof(ExecEvent),
        comm_offset=ProcessEvent.comm.offset,
        data_offset=ctypes.sizeof(ExecEvent),
        flags_offset=ProcessEvent.flags.offset,
        dropped_total_offset=ProcessEvent.dropped_total.offset,
        event_fork=EventType.FORK,
        event_exec=EventType.EXEC,
        event_exit=EventType.EXIT,
        event_flag_thread=EventFlag.THREAD,
        ringbuf_busy_bit=RingbufRecord.BUSY_BIT,
        ringbuf_discard_bit=RingbufRecord.DISCARD_BIT,
        ringbuf_hdr_sz=RingbufRecord.HDR_SZ,
        cgroup_id_offset=ProcessEvent.cgroup_id.offset,
        ns_pid_offset=ProcessEvent.ns_pid.offset,
        event_flag_pidns=EventFlag.PIDNS,
        cgroup_slot_size=ctypes.sizeof(PmCgroup),
        cgroup_json_max=PmCgroupLimits.PM_CGROUP_JSON_MAX,
        json_format=PM_JSON_FORMAT,
        exit_event_size=ctypes.sizeof(ExitEvent),
        event_flag_io=EventFlag.IO,
        event_flag_setid=EventFlag.SETID,
        euid_offset=ProcessEvent.euid.offset,
    )


# --- struct formats for the hot path -------------------------------------------

_CODES = {
    c_uint64: "Q",
    c_uint32: "I",
    c_int32: "i",
}


def _flat_fields(
    layout: type[ctypes.Structure], base: int = 0
) -> list[tuple[str, int, int, str | None]]:
    """(name, offset, size, struct code) of each field of `layout`, nested
    structures flattened, `__pad` fields with no code (never read)."""
    flat = []
    for name, ctype in layout._fields_:
        field = getattr(layout, name)
        offset = base + field.offset
        if isinstance(ctype, type) and issubclass(ctype, ctypes.Structure):
            flat += _flat_fields(ctype, offset)
        elif name.startswith("__"):
            flat.append((name, offset, field.size, None))
        elif isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
            flat.append((name, offset, field.size, f"{ctypes.sizeof(ctype)}s"))
        else:
            flat.append((name, offset, field.size, _CODES[ctype]))
    return flat


def _format(layout: type[ctypes.Structure], wanted) -> str:
    """The little-endian struct format of `layout` that reads the fields `wanted`
    says it wants and skips the others, padding included."""
    fmt, pos = "<", 0
    for name, offset, size, code in _flat_fields(layout):
        if offset > pos:
            fmt += f"{offset - pos}x"
        fmt += code if code is not None and wanted(name) else f"{size}x"
        pos = offset + size
    if ctypes.sizeof(layout) > pos:
        fmt += f"{ctypes.sizeof(layout) - pos}x"
    return fmt


def struct_format(layout: type[ctypes.Structure]) -> str:
    """The little-endian struct format of a ctypes structure, padding included, so
    one unpack_from reads every field (nested structures flattened; char arrays
    as bytes; `__pad` fields skipped), in the order of field_names()."""
    return _format(layout, lambda name: True)[1:]


def field_names(layout: type[ctypes.Structure]) -> tuple[str, ...]:
    """The fields one unpack of struct_format(layout) gives, in that order."""
    return tuple(name for name, _, _, code in _flat_fields(layout) if code is not None)


def unpacker(layout: type[ctypes.Structure], *names: str) -> Callable[..., tuple]:
    """unpack_from(buf, offset) of the fields `names` of a `layout` that starts at
    `offset`, in the order named: each reader names what it reads, the layout
    alone says where it is.  One struct call when the names follow the layout's
    order (every reader of the hot path names them so); otherwise the values are
    put in the order named after it."""
    fields = field_names(layout)
    unknown = set(names) - set(fields)
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"{layout.__name__} has no fields {sorted(unknown)} or names one twice")
    wanted = set(names)
    unpack = struct.Struct(_format(layout, wanted.__contains__)).unpack_from
    read = tuple(f for f in fields if f in wanted)
    if read == names:
        return unpack
    pick = itemgetter(*(read.index(name) for name in names))
    return lambda buf, offset=0: pick(unpack(buf, offset))


def packer(layout: type[ctypes.Structure]) -> Callable[..., bytes]:
    """pack(**values): a `layout` with its fields' values by name (the tests' records)."""
    pack, fields = struct.Struct(_format(layout, lambda name: True)).pack, field_names(layout)
    return lambda **values: pack(*(values[name] for name in fields))


PROCESS_EVENT = struct.Struct("<" + struct_format(ProcessEvent))
# An exit record's usage follows its base (struct exit_event).
EXIT_EVENT_SIZE = ctypes.sizeof(ExitEvent)
# An exec record's filename and arguments follow its fixed part (struct exec_event).
EXEC_DATA_OFFSET = ctypes.sizeof(ExecEvent)
SETTINGS = struct.Struct("<" + struct_format(Settings))
# A value of the `reader_losses` map.
LOSS_VALUE = struct.Struct("<Q")
# A record header's length word (native "I": one 4-byte load).
RECORD_LENGTH = struct.Struct("I")
# The consumer and producer positions at the start of the ring's first two pages.
# Native "Q" is one 8-byte load; "<Q" reads byte by byte, which could combine two
# values of a position the kernel is moving.
RING_POSITION = struct.Struct("Q")
