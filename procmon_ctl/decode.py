"""Ring-buffer records to events: pure functions, testable without a kernel.

The layouts mirror bpf/process_monitor.h; tests/test_decode_btf.py checks them
against the compiled object's BTF.  This is the hot path: one struct.unpack per
record, no model objects."""

from __future__ import annotations

import struct
from json.encoder import encode_basestring  # C-accelerated, exact JSON string escaping
from typing import NamedTuple

TASK_COMM_LEN = 16
MAX_FILENAME_LEN = 256

# struct process_event
PROCESS_EVENT = struct.Struct("<QQIIIIIiIIII16s")
# struct exec_event: a process_event followed by the filename
EXEC_EVENT = struct.Struct(PROCESS_EVENT.format + f"{MAX_FILENAME_LEN}s")

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
    (ts, duration, etype, pid, tgid, ppid, uid, code, sig, dropped, flags, _pad,
     comm) = PROCESS_EVENT.unpack_from(record)
    name = TYPE_NAMES.get(etype, str(etype))
    filename = None
    if etype == EVENT_EXEC:
        filename = _cstr(EXEC_EVENT.unpack_from(record)[-1])
    is_exit = etype == EVENT_EXIT
    return Event(
        name, ts, pid, tgid, ppid, uid, _cstr(comm), bool(flags & EVENT_FLAG_THREAD),
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


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL[ord("\\")] = "\\\\"


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (ESC, newline, C1 codes) shown
    as \\xNN, so a process name cannot move the cursor or retitle the terminal."""
    return text.translate(_CONTROL)
