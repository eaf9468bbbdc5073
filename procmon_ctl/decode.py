"""Ring-buffer records to events: pure functions, testable without a kernel.

The layouts mirror bpf/process_monitor.h; tests/test_decode.py checks them
against the compiled object's BTF.  This is the hot path: one struct.unpack per
record, no model objects."""

from __future__ import annotations

import mmap
import struct
from json.encoder import encode_basestring  # C-accelerated, exact JSON string escaping
from typing import NamedTuple

TASK_COMM_LEN = 16
MAX_FILENAME_LEN = 256

# struct process_event
PROCESS_EVENT = struct.Struct("<QQIIIIIiIIII16s")
# struct exec_event: a process_event followed by the filename
EXEC_EVENT = struct.Struct(PROCESS_EVENT.format + f"{MAX_FILENAME_LEN}s")
_unpack_event = PROCESS_EVENT.unpack_from
_unpack_filename = struct.Struct(f"{MAX_FILENAME_LEN}s").unpack_from

EVENT_FORK, EVENT_EXEC, EVENT_EXIT = 1, 2, 3
TYPE_NAMES = {EVENT_FORK: "fork", EVENT_EXEC: "exec", EVENT_EXIT: "exit"}
EVENT_FLAG_THREAD = 1

# enum counter_key
COUNTER_NAMES = ("processes", "threads", "execs", "exits", "produced", "dropped")
COUNTER_PENDING = 6
COUNTER_MAX = 7


class Event(NamedTuple):
    type: str
    ts_ns: int
    pid: int
    tgid: int
    ppid: int
    uid: int
    comm: str
    thread: bool
    filename: str | None
    exit_code: int | None
    exit_signal: int | None
    duration_ns: int | None
    dropped_before: int


def _cstr(raw: bytes) -> str:
    # Names are bytes chosen by whoever started the process: keep every byte.
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def decode_event(record: bytes | memoryview) -> Event:
    return decode_at(record, 0)


def decode_at(buf: bytes | memoryview | mmap.mmap, offset: int) -> Event:
    """The record that starts at `offset` of `buf`, read in place (no slice)."""
    (ts, duration, etype, pid, tgid, ppid, uid, code, sig, dropped, flags, _pad, comm) = (
        _unpack_event(buf, offset)
    )
    name = TYPE_NAMES.get(etype, str(etype))
    filename = None
    if etype == EVENT_EXEC:
        filename = _cstr(_unpack_filename(buf, offset + PROCESS_EVENT.size)[0])
    is_exit = etype == EVENT_EXIT
    return Event(
        name,
        ts,
        pid,
        tgid,
        ppid,
        uid,
        _cstr(comm),
        bool(flags & EVENT_FLAG_THREAD),
        filename,
        code if is_exit else None,
        sig if is_exit else None,
        duration if is_exit else None,
        dropped,
    )


def event_json(e: Event) -> str:
    """One JSON line of the `events --json` interface (schema: `procmon-ctl schema`)."""
    head = (
        f'{{"type":"{e.type}","ts_ns":{e.ts_ns},"pid":{e.pid},"tgid":{e.tgid},'
        f'"ppid":{e.ppid},"uid":{e.uid},"comm":{encode_basestring(e.comm)},'
        f'"thread":{"true" if e.thread else "false"}'
    )
    if e.filename is not None:
        head += f',"filename":{encode_basestring(e.filename)}'
    if e.exit_code is not None:
        head += (
            f',"exit_code":{e.exit_code},"exit_signal":{e.exit_signal},'
            f'"duration_ns":{e.duration_ns}'
        )
    return head + "}"


def gap_json(dropped: int) -> str:
    return f'{{"type":"gap","dropped":{dropped}}}'


# The `events --json` lines again, formatted in json_lines(): the same text
# as event_json(decode_event(...)), without an Event per record.  The part from
# "ppid" to "thread" is what a record shares with the records before it (a storm
# comes from one parent under one name): it is built once per (ppid, uid, flags,
# comm) and looked up after that.
_GAP_JSON = '{"type":"gap","dropped":%d}'
_SHARED_JSON = '"ppid":%d,"uid":%d,"comm":%s,"thread":%s'
# struct process_event with (ppid, uid) as 8 raw bytes: the key of the shared part.
_RECORD = struct.Struct("<QQIII8siIII4x16s")
_PPID_UID = struct.Struct("<II")
_comm_cache: dict[bytes, str] = {}
_shared_cache: dict[tuple[bytes, int, bytes], str] = {}
CACHE_LIMIT = 4096  # a storm of distinct names must not grow the caches forever


def _comm_json(raw: bytes) -> str:
    text = _comm_cache.get(raw)
    if text is None:
        if len(_comm_cache) >= CACHE_LIMIT:
            _comm_cache.clear()
        text = _comm_cache[raw] = encode_basestring(_cstr(raw))
    return text


def _shared_json(key: tuple[bytes, int, bytes]) -> str:
    if len(_shared_cache) >= CACHE_LIMIT:
        _shared_cache.clear()
    ppid_uid, flags, comm = key
    text = _shared_cache[key] = _SHARED_JSON % (
        *_PPID_UID.unpack(ppid_uid),
        _comm_json(comm),
        "true" if flags & EVENT_FLAG_THREAD else "false",
    )
    return text


def json_lines(buf: bytes | memoryview | mmap.mmap, offsets: list[int], lines: list[str]) -> None:
    """Append to `lines` the `events --json` line of each record at `offsets` of
    `buf`, each preceded by its gap line when records were lost before it.

    The hot path of `events --json`, same text as event_json(decode_event(...)):
    per record one unpack, one dict lookup and one format of its own numbers."""
    unpack, unpack_name, cache, shared_json = (
        _RECORD.unpack_from,
        _unpack_filename,
        _shared_cache,
        _shared_json,
    )
    gap_t = _GAP_JSON
    name_off = PROCESS_EVENT.size
    fork, exit_, exec_ = EVENT_FORK, EVENT_EXIT, EVENT_EXEC  # locals: no global lookups
    append = lines.append
    for off in offsets:
        (ts, duration, etype, pid, tgid, ppid_uid, code, sig, dropped, flags, comm) = unpack(
            buf, off
        )
        if dropped:
            append(gap_t % dropped)
        key = (ppid_uid, flags, comm)
        shared = cache.get(key) or shared_json(key)
        # f-strings: no argument tuple and no format string to parse per record.
        if etype == fork:
            append(f'{{"type":"fork","ts_ns":{ts},"pid":{pid},"tgid":{tgid},{shared}}}')
        elif etype == exit_:
            append(
                f'{{"type":"exit","ts_ns":{ts},"pid":{pid},"tgid":{tgid},{shared},'
                f'"exit_code":{code},"exit_signal":{sig},"duration_ns":{duration}}}'
            )
        elif etype == exec_:
            filename = encode_basestring(_cstr(unpack_name(buf, off + name_off)[0]))
            append(
                f'{{"type":"exec","ts_ns":{ts},"pid":{pid},"tgid":{tgid},{shared},'
                f'"filename":{filename}}}'
            )
        else:
            append(event_json(decode_at(buf, off)))


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL[ord("\\")] = "\\\\"


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (ESC, newline, C1 codes) shown
    as \\xNN, so a process name cannot move the cursor or retitle the terminal."""
    return text.translate(_CONTROL)
