"""The decoder is a pure function: tested on records packed from abi.py's
layouts (tests/test_abi.py checks those against the object's BTF)."""

from __future__ import annotations

import json

from records import EXEC, EXIT, FORK, IO, PIDNS, SETID, THREAD, cgroup_json, record, ring_bytes

from procmon_ctl.process import decode
from procmon_ctl.views import json_lines
from procmon_ctl.views.render import printable
from procmon_ctl.views.schema import ExecEvent, ExitEvent, ForkEvent


def test_fork_record():
    e = decode.decode_event(record(FORK, pid=42, tgid=42, ppid=7, comm=b"bash"))
    assert (e.type, e.pid, e.tgid, e.ppid, e.comm, e.thread) == (FORK, 42, 42, 7, "bash", False)
    assert e.filename is None and e.exit_code is None


def test_thread_flag_and_gap():
    e = decode.decode_event(record(FORK, pid=43, tgid=42, flags=THREAD, dropped=5))
    assert e.thread is True
    assert e.dropped_total == 5


def test_exec_record_filename():
    e = decode.decode_event(record(EXEC, comm=b"ls", filename=b"/usr/bin/ls"))
    assert (e.type, e.comm, e.filename) == (EXEC, "ls", "/usr/bin/ls")


def test_exit_record():
    e = decode.decode_event(record(EXIT, code=3, sig=0, duration=200_000_000))
    assert (e.type, e.exit_code, e.exit_signal, e.duration_ns) == (EXIT, 3, 0, 200_000_000)


def test_full_comm_without_nul():
    e = decode.decode_event(record(FORK, comm=b"a" * 16))
    assert e.comm == "a" * 16


def test_printable_escapes_control_characters():
    """Control characters below 0x80 as \\xNN (the same byte either way), the C1
    control U+009B as \\u009b: never as \\x9b, which text() uses for the byte 0x9b
    that is not UTF-8.  A backslash is left alone: text() has already doubled it."""
    text = printable("\x1b[2J\nname\x07\x9b\\\\")
    assert text == "\\x1b[2J\\x0aname\\x07\\u009b\\\\"
    assert all(ch.isprintable() for ch in text)
    assert printable(decode.text(b"\x9b")) == "\\x9b" != printable(decode.text("\x9b".encode()))


# Fields a line has only where they apply: a container's, a PID namespace's, and
# --lineage's (written by the stream, not by json_lines()).
CONTAINER = ("container_id", "container_runtime", "container_name", "container_image", "pod_uid")
OPTIONAL = {*CONTAINER, "ns_pid", "ns_ppid", "lineage"}
# ... and an exit line's storage I/O, where the kernel accounts it (EventFlag.IO).
OPTIONAL |= {"read_bytes", "write_bytes"}
# ... the audit ids where the process has them, and an exec's ids before it where
# it changed them (EventFlag.SETID).
OPTIONAL |= {"loginuid", "sessionid", "setid", "prev_euid", "prev_egid", "cap_gained"}


def container_json(cgroup_id: int) -> str:
    return cgroup_json(cgroup_id) + (
        ',"container_id":"ab","container_runtime":"podman","container_name":"web",'
        '"container_image":"localhost/web:2","pod_uid":"c-d"'
    )


def test_every_json_field_is_in_the_schema():
    """Each type's line has exactly its model's fields: none missing, none extra."""
    # An exit line says what its process ran when the writer saw its exec.
    ran = {"filename", "argv", "argv_truncated"}
    for etype, model in ((FORK, ForkEvent), (EXEC, ExecEvent), (EXIT, ExitEvent)):
        buf, offsets = ring_bytes([record(etype, code=1, filename=b"/x")])
        lines: list[str] = []
        json_lines.json_lines(buf, offsets, lines, 0, cgroup_json)
        optional = OPTIONAL | (ran if etype == EXIT else set())
        assert set(json.loads(lines[0])) == set(model.model_fields) - optional
        buf, offsets = ring_bytes(
            [
                record(EXEC, filename=b"/y"),
                record(
                    etype,
                    code=1,
                    filename=b"/y",
                    flags=PIDNS | IO | (SETID if etype == EXEC else 0),
                    ns_pid=1,
                    cgroup=5,
                    euid=0,
                    uid=1000,
                    loginuid=1000,
                    sessionid=4,
                    prev=(1000, 1000),
                    cap_gained=1 << 13,
                ),
            ]
        )
        execs = json_lines.ExecTexts()
        json_lines.json_lines(buf, offsets, lines, 0, container_json, execs=execs)
        assert set(json.loads(lines[-1])) == set(model.model_fields) - {"lineage"}
        model.model_validate_json(lines[-1])
