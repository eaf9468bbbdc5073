"""The decoder is a pure function: tested on packed bytes, and its layouts
checked against the compiled object's BTF so C and Python cannot drift."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import OBJECT

from procmon_ctl import decode
from procmon_ctl.models import EventLine, ProcessEvent


def pack(
    etype,
    pid=10,
    tgid=10,
    ppid=1,
    uid=0,
    comm=b"bash",
    code=0,
    sig=0,
    dropped=0,
    flags=0,
    duration=0,
    ts=123,
    filename=None,
):
    base = decode.PROCESS_EVENT.pack(
        ts, duration, etype, pid, tgid, ppid, uid, code, sig, dropped, flags, 0, comm
    )
    if filename is None:
        return base
    return base + filename.ljust(decode.MAX_FILENAME_LEN, b"\0")


def test_fork_record():
    e = decode.decode_event(pack(decode.EVENT_FORK, pid=42, tgid=42, ppid=7, comm=b"bash"))
    assert (e.type, e.pid, e.tgid, e.ppid, e.comm, e.thread) == ("fork", 42, 42, 7, "bash", False)
    assert e.filename is None and e.exit_code is None


def test_thread_flag_and_gap():
    e = decode.decode_event(pack(decode.EVENT_FORK, pid=43, tgid=42, flags=1, dropped=5))
    assert e.thread is True
    assert e.dropped_before == 5


def test_exec_record_filename():
    e = decode.decode_event(pack(decode.EVENT_EXEC, comm=b"ls", filename=b"/usr/bin/ls"))
    assert (e.type, e.comm, e.filename) == ("exec", "ls", "/usr/bin/ls")


def test_exit_record():
    e = decode.decode_event(pack(decode.EVENT_EXIT, code=3, sig=0, duration=200_000_000))
    assert (e.type, e.exit_code, e.exit_signal, e.duration_ns) == ("exit", 3, 0, 200_000_000)


def test_full_comm_without_nul():
    e = decode.decode_event(pack(decode.EVENT_FORK, comm=b"a" * 16))
    assert e.comm == "a" * 16


def test_json_line_is_exact_and_valid():
    evil = b"\x1b[2J\nx\xff"
    e = decode.decode_event(pack(decode.EVENT_EXEC, comm=evil, filename=b"/tmp/\x07bell"))
    line = decode.event_json(e)
    parsed = json.loads(line)
    assert parsed["comm"] == "\x1b[2J\nx\\xff"  # control bytes exact; a non-UTF-8 byte as \xff
    assert parsed["filename"] == "/tmp/\x07bell"
    assert "\n" not in line
    ProcessEvent.model_validate(parsed)
    EventLine.model_validate(json.loads(decode.gap_json(3)))


def test_printable_escapes_control_characters():
    text = decode.printable("\x1b[2J\nname\x07\x9b\\")
    assert text == "\\x1b[2J\\x0aname\\x07\\x9b\\\\"
    assert all(ch.isprintable() for ch in text)


def test_every_json_field_is_in_the_schema():
    e = decode.decode_event(pack(decode.EVENT_EXIT, code=1))
    fields = set(json.loads(decode.event_json(e)))
    assert fields <= set(ProcessEvent.model_fields)


@pytest.fixture(scope="module")
def btf():
    if not OBJECT.exists():
        pytest.fail(f"{OBJECT} is not built: run make")
    out = subprocess.run(
        ["bpftool", "-j", "btf", "dump", "file", str(OBJECT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    types = json.loads(out)["types"]
    return {t["id"]: t for t in types}, {
        t.get("name"): t for t in types if t.get("name") and t["kind"] in ("STRUCT", "ENUM")
    }


def _layout(struct_name, btf):
    _, by_name = btf
    st = by_name[struct_name]
    return st["size"], [(m["name"], m["bits_offset"] // 8) for m in st["members"]]


def test_process_event_matches_btf(btf):
    size, members = _layout("process_event", btf)
    assert size == decode.PROCESS_EVENT.size
    # Offsets of each field of the struct format, in order.
    offsets, pos = [], 0
    for code in ("Q", "Q", "I", "I", "I", "I", "I", "i", "I", "I", "I", "I", "16s"):
        offsets.append(pos)
        pos += {"Q": 8, "I": 4, "i": 4, "16s": 16}[code]
    assert decode.PROCESS_EVENT.format.lstrip("<") == "QQIIIIIiIIII16s"
    names = [m[0] for m in members]
    assert names == [
        "ts_ns",
        "duration_ns",
        "type",
        "pid",
        "tgid",
        "ppid",
        "uid",
        "exit_code",
        "exit_signal",
        "dropped_before",
        "flags",
        "__pad",
        "comm",
    ]
    assert [m[1] for m in members] == offsets
    # The decoder's field order follows the C names.
    decoded = decode.Event._fields
    for name in (
        "ts_ns",
        "pid",
        "tgid",
        "ppid",
        "uid",
        "comm",
        "exit_code",
        "exit_signal",
        "duration_ns",
        "dropped_before",
    ):
        assert name in decoded


def test_exec_event_matches_btf(btf):
    size, members = _layout("exec_event", btf)
    assert size == decode.EXEC_EVENT.size
    assert members == [("base", 0), ("filename", decode.PROCESS_EVENT.size)]


def test_enums_match_btf(btf):
    _, by_name = btf
    events = {v["name"]: v["val"] for v in by_name["event_type"]["values"]}
    assert events == {
        "EVENT_FORK": decode.EVENT_FORK,
        "EVENT_EXEC": decode.EVENT_EXEC,
        "EVENT_EXIT": decode.EVENT_EXIT,
    }
    counters = {v["name"]: v["val"] for v in by_name["counter_key"]["values"]}
    for i, name in enumerate(decode.COUNTER_NAMES):
        assert counters[f"COUNTER_{name.upper()}"] == i
    assert counters["COUNTER_PENDING"] == decode.COUNTER_PENDING
    assert counters["COUNTER_MAX"] == decode.COUNTER_MAX
