"""The `events --json` fast path (decode.json_lines) writes exactly the text of
event_json(decode_event(...)), record type by record type.  No kernel needed."""

from __future__ import annotations

import struct

import pytest

from procmon_ctl import decode

HEADER = 8  # each record sits after the ring's 8-byte header, like in the ring


def record(
    etype,
    pid=100,
    tgid=100,
    ppid=1,
    uid=0,
    comm=b"bash",
    flags=0,
    dropped=0,
    code=0,
    sig=0,
    duration=0,
    filename=b"",
    ts=123_456_789_012,
) -> bytes:
    base = decode.PROCESS_EVENT.pack(
        ts, duration, etype, pid, tgid, ppid, uid, code, sig, dropped, flags, 0, comm
    )
    if etype == decode.EVENT_EXEC:
        base += filename.ljust(decode.MAX_FILENAME_LEN, b"\0")
    return base


def ring(records: list[bytes]) -> tuple[bytearray, list[int]]:
    buf, offsets = bytearray(), []
    for r in records:
        buf += struct.pack("<II", len(r), 0)
        offsets.append(len(buf))
        buf += r + b"\0" * (-len(r) % 8)
    return buf, offsets


def slow(records: list[bytes]) -> list[str]:
    lines = []
    for r in records:
        e = decode.decode_event(r)
        if e.dropped_before:
            lines.append(decode.gap_json(e.dropped_before))
        lines.append(decode.event_json(e))
    return lines


CASES = {
    "fork": [record(1, pid=42, tgid=42, ppid=7, comm=b"bash")],
    "thread": [record(1, pid=43, tgid=42, flags=1, comm=b"storm")],
    "exec": [record(2, comm=b"ls", filename=b"/usr/bin/ls")],
    "exit": [record(3, code=3, sig=9, duration=200_000_000)],
    "negative exit code": [record(3, code=-1)],
    "gap before": [record(1, dropped=5), record(3, dropped=2)],
    "unknown type": [record(9)],
    "full-length name": [record(1, comm=b"a" * 16)],
    "stale bytes after the name": [
        record(1, comm=b"sh\0garbage\xff\x01xy"),
        record(1, comm=b"sh\0other\0\0\0\0\0\0\0"),
    ],
    "control characters": [record(2, comm=b"\x1b[2J\nEVIL\x1b]0;", filename=b"/tmp/\x07bell")],
    "bytes that are not UTF-8": [
        record(1, comm=b"caf\xe9\xff"),
        record(2, filename=b'/x/\xc3\x28"q\\'),
    ],
    "many parents": [record(1, pid=p, tgid=p, ppid=p - 1, uid=p % 3) for p in range(2, 300)],
    "big numbers": [record(3, ts=2**64 - 1, duration=2**64 - 1, pid=2**32 - 1, uid=2**32 - 1)],
}


@pytest.mark.parametrize("name", CASES)
def test_fast_path_matches_event_json(name):
    records = CASES[name]
    buf, offsets = ring(records)
    lines: list[str] = []
    decode.json_lines(buf, offsets, lines)
    assert lines == slow(records)
    # Twice: the second pass is served from the caches.
    again: list[str] = []
    decode.json_lines(memoryview(buf), offsets, again)
    assert again == lines


def test_decode_at_reads_in_place():
    records = [record(2, comm=b"ls", filename=b"/usr/bin/ls"), record(1, pid=5, tgid=4, flags=1)]
    buf, offsets = ring(records)
    assert [decode.decode_at(buf, o) for o in offsets] == [decode.decode_event(r) for r in records]


def test_name_caches_stay_bounded():
    records = [record(1, pid=p, tgid=p, ppid=p, comm=b"n%d" % p) for p in range(10_000)]
    buf, offsets = ring(records)
    lines: list[str] = []
    decode.json_lines(buf, offsets, lines)
    assert lines == slow(records)
    assert len(decode._shared_cache) <= decode.CACHE_LIMIT
    assert len(decode._comm_cache) <= decode.CACHE_LIMIT
