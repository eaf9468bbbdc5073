"""Ring-buffer records to events: pure functions, testable without a kernel.

The layouts come from abi.py (the mirror of bpf/process_monitor.h).  This is the
hot path: one struct.unpack per record, no model objects."""

from __future__ import annotations

import mmap
from typing import NamedTuple

from .abi import FILENAME, FILENAME_OFFSET, PROCESS_EVENT, EventFlag, EventType

TYPE_NAMES = {t.value: t.name.lower() for t in EventType}
_unpack_event = PROCESS_EVENT.unpack_from
_unpack_filename = FILENAME.unpack_from
_EXEC, _EXIT, _THREAD = EventType.EXEC.value, EventType.EXIT.value, EventFlag.THREAD.value


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
    # The ring's losses so far (losses[LOSS_DROPPED]) as the record was made: a
    # reader marks what it has not marked yet (stream.LossMarks).
    dropped_total: int


def cstr(raw: bytes) -> str:
    """A NUL-padded name as text.  Names are bytes chosen by whoever started the
    process: every byte is kept, invalid UTF-8 as \\xNN escapes."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def decode_event(record: bytes | memoryview) -> Event:
    return decode_at(record, 0)


def decode_at(buf: bytes | memoryview | mmap.mmap, offset: int) -> Event:
    """The record that starts at `offset` of `buf`, read in place (no slice)."""
    (ts, duration, dropped, etype, pid, tgid, ppid, uid, code, sig, flags, comm) = _unpack_event(
        buf, offset
    )
    name = TYPE_NAMES.get(etype, str(etype))
    filename = None
    if etype == _EXEC:
        filename = cstr(_unpack_filename(buf, offset + FILENAME_OFFSET)[0])
    is_exit = etype == _EXIT
    return Event(
        name,
        ts,
        pid,
        tgid,
        ppid,
        uid,
        cstr(comm),
        bool(flags & _THREAD),
        filename,
        code if is_exit else None,
        sig if is_exit else None,
        duration if is_exit else None,
        dropped,
    )
