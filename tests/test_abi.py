"""abi.py, the one Python mirror of bpf/process_monitor.h, against what the
compiler made of the header: every struct field by field (name, offset, size)
and every enum by value, read from the compiled object's BTF.  And the C
formatter: used only when built from the same headers."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import OBJECT, ROOT

from procmon_ctl.commands import doctor
from procmon_ctl.kernel import abi
from procmon_ctl.views import json_native

# C name -> the abi.py mirror.
STRUCTS = {
    "process_event": abi.ProcessEvent,
    "exec_event": abi.ExecEvent,
    "exit_event": abi.ExitEvent,
    "settings": abi.Settings,
    "reader": abi.Reader,
    "reader_count": abi.ReaderCount,
}
# C enum -> (abi.py mirror, the prefix its C names carry).
ENUMS = {
    "event_type": (abi.EventType, "EVENT_"),
    "event_flag": (abi.EventFlag, "EVENT_FLAG_"),
    "counter_key": (abi.CounterKey, "COUNTER_"),
    "ringbuf_record": (abi.RingbufRecord, "RINGBUF_"),
    "follow_limits": (abi.FollowLimits, ""),
    "reader_loss": (abi.ReaderLoss, "READER_LOSS_"),
    "reader_limits": (abi.ReaderLimits, ""),
    "reader_flag": (abi.ReaderFlag, "READER_"),
    "argv_limits": (abi.ArgvLimits, ""),
    "exit_limits": (abi.ExitLimits, ""),
    "audit_unset": (abi.AuditUnset, ""),
}


@pytest.fixture(scope="module")
def btf() -> dict[int, dict]:
    out = subprocess.run(
        ["bpftool", "-j", "btf", "dump", "file", str(OBJECT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {t["id"]: t for t in json.loads(out)["types"]}


def by_name(btf: dict[int, dict], kind: str, name: str) -> dict:
    found = [t for t in btf.values() if t["kind"] == kind and t.get("name") == name]
    assert len(found) == 1, f"{kind} {name} is not in {OBJECT}'s BTF once"
    return found[0]


def type_size(btf: dict[int, dict], type_id: int) -> int:
    t = btf[type_id]
    if t["kind"] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT"):
        return type_size(btf, t["type_id"])
    if t["kind"] == "ARRAY":
        return t["nr_elems"] * type_size(btf, t["type_id"])
    return t["size"]


@pytest.mark.parametrize("name", STRUCTS)
def test_struct_matches_btf_field_by_field(btf, name):
    layout = STRUCTS[name]
    st = by_name(btf, "STRUCT", name)
    in_c = [(m["name"], m["bits_offset"] // 8, type_size(btf, m["type_id"])) for m in st["members"]]
    in_python = [
        (field, getattr(layout, field).offset, getattr(layout, field).size)
        for field, _ in layout._fields_
    ]
    assert in_python == in_c
    assert ctypes.sizeof(layout) == st["size"]


def test_struct_formats_read_every_field_where_c_puts_it():
    """The hot path's struct formats come from the ctypes layouts: same size, and a
    record packed field by field through ctypes unpacks to the same values."""
    assert abi.PROCESS_EVENT.size == ctypes.sizeof(abi.ProcessEvent)
    assert abi.SETTINGS.size == ctypes.sizeof(abi.Settings)
    assert abi.EXEC_DATA_OFFSET == ctypes.sizeof(abi.ExecEvent) == abi.ExecEvent.data.offset
    values = {
        "ts_ns": 1,
        "duration_ns": 2,
        "dropped_total": 10,
        "cgroup_id": 12,
        "type": 3,
        "pid": 4,
        "tgid": 5,
        "ppid": 6,
        "uid": 7,
        "euid": 15,
        "egid": 16,
        "loginuid": 17,
        "sessionid": 18,
        "exit_code": -8,
        "exit_signal": 9,
        "flags": 11,
        "ns_pid": 13,
        "ns_ppid": 14,
        "comm": b"comm",
    }
    exec_values = {
        "filename_len": 6,
        "argv_len": 12,
        "argc": 3,
        "error": -2,
        "prev_euid": 19,
        "prev_egid": 20,
        "cap_gained": 21,
    }
    rec = abi.ExecEvent(base=abi.ProcessEvent(**values), **exec_values)
    raw = bytes(rec)
    fields = [f for f, _ in abi.ProcessEvent._fields_ if not f.startswith("__")]
    assert abi.field_names(abi.ProcessEvent) == tuple(fields)
    unpacked = dict(zip(fields, abi.PROCESS_EVENT.unpack_from(raw), strict=True))
    assert {**unpacked, "comm": unpacked["comm"].rstrip(b"\0")} == values
    tail = abi.unpacker(abi.ExecEvent, "filename_len", "argv_len", "argc", "error")
    assert tail(raw) == (6, 12, 3, -2)
    # Named in another order than the layout's: the values come in the order named.
    assert abi.unpacker(abi.ProcessEvent, "uid", "pid", "comm")(raw, 0) == (
        7,
        4,
        b"comm".ljust(abi.TASK_COMM_LEN, b"\0"),
    )
    assert abi.packer(abi.ExecEvent)(**values, **exec_values, data=b"") == raw


@pytest.mark.parametrize("name", ENUMS)
def test_enum_matches_btf_by_value(btf, name):
    mirror, prefix = ENUMS[name]
    enum = by_name(btf, "ENUM", name)
    # bpftool -j prints a 32-bit value with its top bit set sign-extended to 64 bits.
    mask = (1 << (8 * enum["size"])) - 1
    in_c = {v["name"]: v["val"] & mask for v in enum["values"]}
    assert {prefix + m.name: m.value for m in mirror} == in_c


def test_ring_record_header_is_the_kernels():
    """RINGBUF_* in process_monitor.h must be the kernel's BPF_RINGBUF_* (from the
    vmlinux.h the build dumped from this kernel's BTF)."""
    text = (ROOT / "build" / "vmlinux.h").read_text()
    for member in abi.RingbufRecord:
        found = re.search(rf"\bBPF_RINGBUF_{member.name} = (\d+)", text)
        assert found and int(found.group(1)) == member.value, member.name
    assert [abi.record_footprint(n) for n in (0, 1, 8, 9, 72, 328)] == [8, 16, 16, 24, 80, 336]


def test_counter_names_are_the_shown_keys():
    assert abi.COUNTER_NAMES == (
        "processes",
        "threads",
        "execs",
        "exits",
        "produced",
        "dropped",
        "filtered",
    )


def test_the_c_formatter_reports_the_layouts_abi_py_mirrors():
    lib = json_native.library()
    assert lib is not None, json_native.problem()
    built = abi.PmAbi()
    lib.pm_abi_info(ctypes.byref(built))
    expected = abi.expected_pm_abi()
    assert {f: getattr(built, f) for f, _ in abi.PmAbi._fields_} == {
        f: getattr(expected, f) for f, _ in abi.PmAbi._fields_
    }


def test_a_formatter_built_from_another_header_is_refused(tmp_path, monkeypatch):
    """A stale library (built before a field was added) is not used: `events --json`
    falls back to Python, and doctor says why."""
    clang = shutil.which("clang")
    assert clang, "clang is needed (make installs it)"
    header = (ROOT / "bpf" / "process_monitor.h").read_text()
    (tmp_path / "process_monitor.h").write_text(
        header.replace("#define TASK_COMM_LEN 16", "#define TASK_COMM_LEN 32")
    )
    for name in ("json_lines.c", "json_lines.h"):
        (tmp_path / name).write_text((ROOT / "native" / name).read_text())
    lib = tmp_path / "libprocmon_json.so"
    subprocess.run(
        [
            clang,
            "-O2",
            "-fPIC",
            "-shared",
            f"-I{tmp_path}",
            str(tmp_path / "json_lines.c"),
            "-o",
            str(lib),
        ],
        check=True,
    )
    monkeypatch.setattr(json_native, "LIBRARY", Path(lib))
    json_native._load.cache_clear()
    try:
        assert json_native.library() is None
        assert "process_event_size 120 != 104" in json_native.problem()
        check = doctor.check_json_formatter()
        assert check.status == "WARN"
        assert "built from other headers" in check.detail
        assert check.fix == "run `make`"
    finally:
        json_native._load.cache_clear()
    monkeypatch.undo()
    assert json_native.library() is not None
