"""The Python writer of `events --json` (json_lines.py): every record type comes
out as the decoder reads it, as valid JSON that the schema accepts.  No kernel
needed; tests/test_json_native.py checks the C writer against this one."""

from __future__ import annotations

import json

import pytest
from records import (
    CASES,
    EXEC,
    EXIT,
    FORK,
    NOW_NS,
    OFFSET_NS,
    THREAD,
    cgroup_json,
    fix_clock,
    record,
    ring_bytes,
    utc_text,
)

from procmon_ctl.process import decode
from procmon_ctl.views import json_lines
from procmon_ctl.views.schema import EventLine


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    fix_clock(monkeypatch)


def expected(records: list[bytes]) -> list[dict]:
    """What each record's line must say, from the decoder: gap line first, then
    the fields that apply to its type."""
    out, marked = [], 0
    for r in records:
        e = decode.decode_event(r)
        if e.dropped_total > marked:
            gap_time = utc_text(NOW_NS + OFFSET_NS)
            out.append({"type": "gap", "time": gap_time, "dropped": e.dropped_total - marked})
            marked = e.dropped_total
        line = {
            "type": json_lines.TYPE_NAMES.get(e.type, str(e.type)),
            "time": utc_text(e.ts_ns + OFFSET_NS),
            "ts_ns": e.ts_ns,
            "pid": e.pid,
            "tgid": e.tgid,
            "ppid": e.ppid,
            "uid": e.uid,
            "euid": e.euid,
            "egid": e.egid,
            **({} if e.loginuid is None else {"loginuid": e.loginuid}),
            **({} if e.sessionid is None else {"sessionid": e.sessionid}),
            "comm": e.comm,
            "thread": e.thread,
            "cgroup_id": e.cgroup_id,
            "cgroup": f"/test/{e.cgroup_id}",
        }
        if e.ns_pid is not None:
            line.update(ns_pid=e.ns_pid, ns_ppid=e.ns_ppid)
        if e.filename is not None:
            line.update(
                filename=e.filename, argv=list(e.argv), argv_truncated=e.argv_truncated, argc=e.argc
            )
        if e.errno is not None:
            line.update(errno=e.errno, error=decode.errno_name(e.errno))
        if e.prev_euid is not None:
            line.update(setid=True, prev_euid=e.prev_euid, prev_egid=e.prev_egid)
        if e.cap_gained is not None:
            line.update(cap_gained=e.cap_gained)
        if e.type == EXIT:
            line.update(exit_code=e.exit_code, exit_signal=e.exit_signal, duration_ns=e.duration_ns)
            line.update({k: v for k, v in e.usage._asdict().items() if v is not None})
        out.append(line)
    return out


@pytest.mark.parametrize("name", CASES)
def test_each_record_type_comes_out_as_decoded(name):
    records = CASES[name]
    buf, offsets = ring_bytes(records)
    lines: list[str] = []
    json_lines.json_lines(buf, offsets, lines, 0, cgroup_json)
    assert [json.loads(line) for line in lines] == expected(records)
    assert all("\n" not in line for line in lines)
    # "time" right after "type": what a reader of the raw text sees first.
    assert all(line.startswith('{"type":"') and '","time":"' in line[:30] for line in lines)
    if name != "unknown type":
        for line in lines:
            EventLine.model_validate_json(line)
    # Twice: the second pass is served from the caches, from a memoryview.
    again: list[str] = []
    json_lines.json_lines(memoryview(buf), offsets, again, 0, cgroup_json)
    assert again == lines


def test_names_keep_every_byte():
    buf, offsets = ring_bytes([record(EXEC, comm=b"\x1b[2J\nx\xff", filename=b"/tmp/\x07bell")])
    lines: list[str] = []
    json_lines.json_lines(buf, offsets, lines, 0, cgroup_json)
    parsed = json.loads(lines[0])
    assert parsed["comm"] == "\x1b[2J\nx\\xff"  # control bytes exact; a non-UTF-8 byte as \xff
    assert parsed["filename"] == "/tmp/\x07bell"


def test_decode_at_reads_in_place():
    records = [
        record(EXEC, comm=b"ls", filename=b"/usr/bin/ls"),
        record(FORK, pid=5, tgid=4, flags=THREAD),
    ]
    buf, offsets = ring_bytes(records)
    assert [decode.decode_at(buf, o) for o in offsets] == [decode.decode_event(r) for r in records]


def test_name_caches_stay_bounded():
    records = [record(FORK, pid=p, tgid=p, ppid=p, comm=b"n%d" % p) for p in range(10_000)]
    buf, offsets = ring_bytes(records)
    lines: list[str] = []
    json_lines.json_lines(buf, offsets, lines, 0, cgroup_json)
    assert [json.loads(line) for line in lines] == expected(records)
    assert len(json_lines._shared_cache) <= json_lines.CACHE_LIMIT
    assert len(json_lines._comm_cache) <= json_lines.CACHE_LIMIT


def fake_proc(root, processes: dict[int, tuple[int, bytes]]) -> None:
    """A /proc of `processes`: pid -> (start time, cmdline)."""
    for pid, (start, cmdline) in processes.items():
        (root / str(pid)).mkdir()
        fields = " ".join(["0"] * 17)
        (root / str(pid) / "stat").write_text(f"{pid} (p{pid}) S 1 {fields} {start}\n")
        (root / str(pid) / "cmdline").write_bytes(cmdline)


def test_a_starting_reader_knows_the_running_processes_from_proc(tmp_path):
    """Their exit lines carry /proc's command line, without a filename; a kernel
    thread's (no command line) carries nothing; a command line past 16 KiB keeps the
    whole arguments that fit, marked truncated.  Filtered-out records keep the table
    too (track)."""
    fake_proc(
        tmp_path,
        {
            1: (5, b"/sbin/init\0splash\0"),
            2: (1, b""),
            30: (9, b"big\0" + b"x" * 10000 + b"\0" + b"y" * 10000 + b"\0"),
        },
    )
    execs = json_lines.ExecTexts()
    json_lines.seed(execs, str(tmp_path))
    assert len(execs) == 2
    json_lines.track(execs, decode.decode_event(record(FORK, pid=31, tgid=31, ppid=1)))
    init = execs.pop(31)
    assert init == ',"argv":["/sbin/init","splash"],"argv_truncated":false'
    buf, offsets = ring_bytes([record(EXIT, pid=p, tgid=p) for p in (1, 2, 30)])
    lines: list[str] = []
    json_lines.json_lines(buf, offsets, lines, 0, cgroup_json, execs=execs)
    exits = [json.loads(x) for x in lines]
    assert [(e.get("argv"), e.get("argv_truncated"), "filename" in e) for e in exits] == [
        (["/sbin/init", "splash"], False, False),
        (None, None, False),
        (["big", "x" * 10000], True, False),
    ]
    for e in exits:
        EventLine.model_validate(e)
    assert len(execs) == 0
