"""The schema of `events --json` lines is exact: real lines of every type, from
every writer, pass both the pydantic model and the JSON Schema that
`procmon-ctl schema` prints; lines no writer writes are rejected by both."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import CLI, ROOT, fork_processes, lines_until, wait_threads_streamed
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from pydantic import ValidationError

from procmon_ctl.cli.hints import option
from procmon_ctl.views import json_native
from procmon_ctl.views.schema import (
    EventLine,
    ExecEvent,
    ExecFailedEvent,
    ExitEvent,
    ForkEvent,
    GapEvent,
)
from procmon_ctl.views.words import worded_schema

U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1
S32_MIN, S32_MAX = -(2**31), 2**31 - 1
MODELS = {
    "fork": ForkEvent,
    "exec": ExecEvent,
    "exit": ExitEvent,
    "exec_failed": ExecFailedEvent,
    "gap": GapEvent,
}
SHARED = [
    "type",
    "time",
    "ts_ns",
    "pid",
    "tgid",
    "ppid",
    "uid",
    "euid",
    "egid",
    "loginuid",
    "sessionid",
    "comm",
    "thread",
    "cgroup_id",
    "cgroup",
]
# Where they apply: a container's, a PID namespace's, --lineage's.
CONTAINER = ["container_id", "container_runtime", "container_name", "container_image", "pod_uid"]
NAMESPACE = ["ns_pid", "ns_ppid"]
# Every field of each type, in the order the writers write them.
# What an exit line says the process cost; its storage I/O where the kernel accounts it.
USAGE = ["cpu_user_ns", "cpu_system_ns", "max_rss_kib", "minor_faults", "major_faults",
         "voluntary_switches", "involuntary_switches"]  # fmt: skip
IO = ["read_bytes", "write_bytes"]
FIELDS = {
    "fork": [*SHARED, *CONTAINER, *NAMESPACE, "lineage"],
    "exec": [*SHARED, *CONTAINER, *NAMESPACE, "filename", "argv", "argv_truncated", "argc",
             "setid", "prev_euid", "prev_egid", "cap_gained", "lineage"],
    "exit": [*SHARED, *CONTAINER, *NAMESPACE, "exit_code", "exit_signal", "duration_ns",
             *USAGE, *IO, "filename", "argv", "argv_truncated", "lineage"],
    "exec_failed": [*SHARED, *CONTAINER, *NAMESPACE, "filename", "argv", "argv_truncated",
                    "argc", "errno", "error", "lineage"],
    "gap": ["type", "time", "dropped"],
}  # fmt: skip
# Those a line may lack: the cgroup's path once it is removed, and the above.
OPTIONAL = {"cgroup", *CONTAINER, *NAMESPACE, *IO, "lineage", "loginuid", "sessionid", "setid",
            "prev_euid", "prev_egid", "cap_gained"}  # fmt: skip
# ... and what an exit line's process ran, when the reader knows it.
OPTIONAL_IN = {"exit": {"filename", "argv", "argv_truncated"}}


@pytest.fixture(scope="module")
def schema() -> dict:
    out = subprocess.run([*CLI, "schema"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def validator(schema) -> Draft202012Validator:
    return Draft202012Validator(schema)


def check_line(line: str, validator) -> str:
    """Validate one line both ways; returns its type."""
    model = EventLine.model_validate_json(line).root
    validator.validate(json.loads(line))
    assert isinstance(model, MODELS[model.type])
    again = EventLine(model).model_dump_json(exclude_none=True)
    assert again == line, "the model keeps every field, in order"
    return model.type


# --- the schema itself ---------------------------------------------------------


def test_schema_is_valid_json_schema_2020_12(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert validator_for(schema) is Draft202012Validator
    Draft202012Validator.check_schema(schema)
    assert schema == worded_schema(EventLine.model_json_schema(), option)


def test_schema_has_exactly_each_types_fields(schema):
    lines = [d for d in schema["$defs"].values() if "type" in d["properties"]]
    by_type = {d["properties"]["type"]["const"]: d for d in lines}
    assert [name for name, d in schema["$defs"].items() if d not in lines] == ["Ancestor"]
    assert sorted(by_type) == sorted(FIELDS)
    for name, fields in FIELDS.items():
        d = by_type[name]
        assert list(d["properties"]) == fields, name
        optional = OPTIONAL | OPTIONAL_IN.get(name, set())
        assert d["required"] == [f for f in fields if f not in optional], name
        assert d["additionalProperties"] is False, name
        assert list(MODELS[name].model_fields) == fields
    assert schema["discriminator"]["propertyName"] == "type"
    assert len(schema["oneOf"]) == len(FIELDS)


def test_docs_list_the_schemas_fields():
    """docs/logs.md's two tables (fields per type, types per field) say what the schema does."""
    text = (ROOT / "docs" / "logs.md").read_text()
    per_type = dict(re.findall(r"^\| `(\w+)` \| (`.*`) \|$", text, re.MULTILINE))
    assert {t: re.findall(r"`(\w+)`", f) for t, f in per_type.items()} == FIELDS
    per_field: dict[str, list[str]] = {name: [] for name in FIELDS}
    for field, types in re.findall(r"^\| `(\w+)` \| ([a-z_, ]+) \| ", text, re.MULTILINE):
        for t in FIELDS if types == "all" else types.split(", "):
            per_field[t].append(field)
    assert per_field == FIELDS


# --- real lines -------------------------------------------------------------------

# Run as its own process: a thread, a command with an exit code, one killed by a
# signal, a name and a file name that are not UTF-8 (the C formatter hands those
# records to the Python one), then its own exit.
WORKLOAD = r"""
import ctypes, os, subprocess, sys, threading
t = threading.Thread(target=lambda: None)
t.start()
t.join()
subprocess.run(["sh", "-c", "exit 3"])
p = subprocess.Popen(["sleep", "60"])
p.kill()
p.wait()
pid = os.fork()
if pid == 0:
    ctypes.CDLL(None).prctl(15, b"sch\xe9ma\x1b\xff", 0, 0, 0)  # PR_SET_NAME
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    os._exit(5)
os.waitpid(pid, 0)
subprocess.run([sys.argv[1]])
"""

# `events --json` with the C formatter switched off: the Python one writes every line.
NO_NATIVE = (
    "import sys; from procmon_ctl.views import json_native; json_native.library = lambda: None; "
    "sys.argv[0] = 'procmon-ctl'; from procmon_ctl.cli import main; main()"
)

# Each writer of `events --json` lines: the C formatter, the Python one, and the
# filtered path (a filter that lets every line of root's through).
WRITERS = {
    "C": (CLI, []),
    "python": ([sys.executable, "-c", NO_NATIVE], []),
    "filtered": (CLI, ["--uid", "0"]),
}


def reader_command(cli, writer: str, *args: str) -> list[str]:
    prefix, extra = WRITERS[writer]
    if writer == "C":
        assert json_native.library() is not None, "the C formatter is not built: run make"
    return [*prefix, "events", "--json", *extra, *args]


@pytest.mark.parametrize("writer", list(WRITERS))
def test_real_lines_of_every_type_are_valid(attached, validator, tmp_path, writer):
    cli = attached
    weird = os.path.join(os.fsencode(tmp_path), b"tru\xe9")
    os.symlink("/bin/true", weird)
    reader = subprocess.Popen(
        reader_command(cli, writer, "--threads", "--duration", "120"),
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_threads_streamed(cli.pin_dir, reader)
    work = subprocess.Popen([sys.executable, "-c", WORKLOAD, weird])
    assert work.wait(timeout=60) == 0
    mine = f'"pid":{work.pid},'
    lines, err = lines_until(reader, lambda ls: any('"exit"' in x and mine in x for x in ls))
    assert reader.returncode == 0, err

    types = [check_line(line, validator) for line in lines]  # every line, not only ours
    assert {"fork", "exec", "exit"} <= set(types)
    events = [json.loads(line) for line in lines]
    ours = {work.pid}
    for e in events:  # the workload's tree, in order: a child's fork comes before it
        if e["type"] == "fork" and e["ppid"] in ours:
            ours.add(e["pid"])
    tree = [e for e in events if e.get("tgid") in ours]
    forks = [e for e in tree if e["type"] == "fork"]
    exits = [e for e in tree if e["type"] == "exit"]
    assert any(e["pid"] == work.pid and not e["thread"] for e in forks)
    assert any(e["thread"] and e["tgid"] == work.pid != e["pid"] for e in forks)
    assert any(e["comm"] == "sch\\xe9ma\x1b\\xff" for e in forks), "a name that is not UTF-8"
    assert any(e["type"] == "exec" and e["filename"] == sys.executable for e in tree)
    assert any(e["type"] == "exec" and e["filename"].endswith("/tru\\xe9") for e in tree)
    assert {3, 5} <= {e["exit_code"] for e in exits}
    assert 9 in {e["exit_signal"] for e in exits}
    assert any(e["pid"] == work.pid and e["exit_code"] == 0 for e in exits)


@pytest.mark.parametrize("writer", list(WRITERS))
def test_real_gap_lines_are_valid(cli, validator, writer):
    """A named reader's small ring overflows while it is down; the first record
    after the losses on each CPU carries the gap line."""
    cli("load", "--ring-size", "4096")
    cli("attach")

    def read(duration: str) -> list[str]:
        cmd = reader_command(cli, writer, "--name", "gaps", "--duration", duration)
        r = subprocess.run(cmd, env=cli.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    read("0.01")  # its place, kept: its ring fills while it is down
    fork_processes(200)
    reads = [read("0.5")]
    for cpu in sorted(os.sched_getaffinity(0)):  # a record on every CPU: its drops reported
        subprocess.run(["taskset", "-c", str(cpu), "true"], check=True)
    reads.append(read("0.5"))
    types = [check_line(line, validator) for lines in reads for line in lines]
    assert "gap" in types, "200 forks into a 4 KiB ring while its reader is down lose some"
    # A gap line comes right before the event that carried it.  Not every one: a
    # reader that has read all there is marks the losses after its last record with
    # a gap line of its own, and while other users of the machine fork, the 4 KiB
    # ring loses more before the next record, whose gap line then follows at once.
    assert any(t == "gap" and after != "gap" for t, after in itertools.pairwise(types)), types


# --- lines to reject --------------------------------------------------------------

FORK = {
    "type": "fork",
    "time": "2026-11-29T22:15:01.123456Z",
    "ts_ns": 1682980796523,
    "pid": 15012,
    "tgid": 15012,
    "ppid": 15011,
    "uid": 0,
    "euid": 0,
    "egid": 0,
    "comm": "sh",
    "thread": False,
    "cgroup_id": 1,
    "cgroup": "/",
}
IN_CONTAINER = {
    "cgroup_id": 4242,
    "cgroup": "/libpod_parent/libpod-" + "3f2a" * 16,
    "container_id": "3f2a" * 16,
    "container_runtime": "podman",
    "ns_pid": 7,
    "ns_ppid": 1,
}
LINEAGE = [
    {"pid": 15011, "comm": "bash", "argv": ["-bash"]},
    {"pid": 900, "comm": "sshd", "argv": ["sshd: alice [priv]"], "exited": True},
    {"pid": 1, "comm": "systemd", "argv": ["/sbin/init"]},
]
EXEC = {
    **FORK,
    "type": "exec",
    "comm": "ls",
    "filename": "/usr/bin/ls",
    "argv": ["ls", "-l", "/tmp"],
    "argv_truncated": False,
    "argc": 3,
}
EXIT = {**FORK, "type": "exit", "exit_code": 2, "exit_signal": 0, "duration_ns": 4148935,
        "cpu_user_ns": 1203000, "cpu_system_ns": 2311000, "max_rss_kib": 3712,
        "minor_faults": 141, "major_faults": 0, "voluntary_switches": 1,
        "involuntary_switches": 0, "read_bytes": 0, "write_bytes": 4096}  # fmt: skip
GAP = {"type": "gap", "time": "2026-11-29T22:15:01.200000Z", "dropped": 12}
FAILED = {**EXEC, "type": "exec_failed", "comm": "sh", "filename": "/nope", "argv": ["nope"],
          "argc": 1, "errno": 2, "error": "ENOENT"}  # fmt: skip
SAMPLES = {"fork": FORK, "exec": EXEC, "exit": EXIT, "exec_failed": FAILED, "gap": GAP}


def placed(line: dict) -> dict:
    """`line` with its fields in the order the writers write them."""
    return {f: line[f] for f in FIELDS[line["type"]] if f in line}


def without(line: dict, field: str) -> dict:
    return {k: v for k, v in line.items() if k != field}


ACCEPTED = {
    "fork": FORK,
    "thread-fork": {**FORK, "pid": 15013, "thread": True},
    "exec": EXEC,
    "exit": EXIT,
    "exit-by-signal": {**EXIT, "exit_code": 0, "exit_signal": 9},
    "gap": GAP,
    "exec_failed": FAILED,
    "escaped-names": {**EXEC, "comm": "sch\\xe9ma\x1b", "filename": "/tmp/caf\u00e9 \\xff"},
    "empty-name": {**FORK, "comm": ""},
    "empty-arguments-kept": {**EXEC, "argv": ["printf", "", "a b", ""], "argc": 4},
    "escaped-arguments": {**EXEC, "argv": ["sh", "-c", "caf\\xe9 \\\\ \x1b", "\u202e"],
                          "argc": 4},
    "truncated-argv": {**EXEC, "argv": ["cc", "-c", "x"], "argv_truncated": True, "argc": 900},
    "no-argv-read": {**EXEC, "argv": [], "argv_truncated": True, "argc": 3},
    "argc-0": {**EXEC, "argv": [], "argc": 0},
    "argc-highest": {**EXEC, "argc": U32_MAX},
    "u32-and-u64-lowest": {**EXIT, "ts_ns": 0, "pid": 0, "tgid": 0, "ppid": 0, "uid": 0,
                           "duration_ns": 0},
    "u32-and-u64-highest": {**EXIT, "ts_ns": U64_MAX, "pid": U32_MAX, "tgid": U32_MAX,
                            "ppid": U32_MAX, "uid": U32_MAX, "exit_signal": U32_MAX,
                            "duration_ns": U64_MAX},
    "s32-lowest": {**EXIT, "exit_code": S32_MIN},
    "s32-highest": {**EXIT, "exit_code": S32_MAX},
    "in-a-container": placed({**EXEC, **IN_CONTAINER}),
    "in-a-pod": placed({**FORK, **IN_CONTAINER, "container_runtime": "cri", "pod_uid": "0f1e-22"}),
    "cgroup-removed": without(FORK, "cgroup"),
    "with-lineage": {**EXIT, "lineage": LINEAGE},
    "lineage-cut": {**FORK, "lineage": [{**LINEAGE[0], "cut": True}]},
    "empty-lineage": {**FORK, "lineage": []},
    "gap-lowest": {**GAP, "dropped": 1},
    "gap-highest": {**GAP, "dropped": U32_MAX},
    "leap-day": {**FORK, "time": "2028-02-29T23:59:59.999999Z"},
    "epoch": {**EXIT, "time": "1970-01-01T00:00:00.000000Z"},
}  # fmt: skip

REJECTED = {
    # fields that belong to another type, or missing
    "exec-without-filename": without(EXEC, "filename"),
    "exec-filename-null": {**EXEC, "filename": None},
    "exec-without-argv": without(EXEC, "argv"),
    "exec-without-argv_truncated": without(EXEC, "argv_truncated"),
    "exec-without-argc": without(EXEC, "argc"),
    "exec-argv-null": {**EXEC, "argv": None},
    "fork-with-argv": {**FORK, "argv": ["ls"]},
    "exit-with-argc": {**EXIT, "argc": 1},
    "exec-with-errno": {**EXEC, "errno": 2, "error": "ENOENT"},
    "exec_failed-without-errno": without(FAILED, "errno"),
    "exec_failed-without-argv": without(FAILED, "argv"),
    "fork-with-exit_code": {**FORK, "exit_code": 0},
    "fork-with-filename": {**FORK, "filename": "/usr/bin/ls"},
    "fork-with-exit-fields-null": {**FORK, "exit_code": None, "exit_signal": None},
    "fork-with-dropped": {**FORK, "dropped": 1},
    "exit-without-duration_ns": without(EXIT, "duration_ns"),
    "exit-without-exit_code": without(EXIT, "exit_code"),
    "exit-with-null-argv": {**EXIT, "argv": None},
    "fork-without-comm": without(FORK, "comm"),
    "fork-without-thread": without(FORK, "thread"),
    "gap-with-string-pid": {**GAP, "pid": "12"},
    "gap-with-ts_ns": {**GAP, "ts_ns": 1},
    "gap-without-dropped": {"type": "gap", "time": GAP["time"]},
    "gap-without-time": without(GAP, "time"),
    "fork-without-time": without(FORK, "time"),
    "exit-without-time": without(EXIT, "time"),
    # time as the writers never write it
    "time-null": {**FORK, "time": None},
    "time-as-number": {**FORK, "time": 1764454501.123456},
    "time-with-offset": {**FORK, "time": "2026-11-29T22:15:01.123456+00:00"},
    "time-local-no-zone": {**FORK, "time": "2026-11-29T22:15:01.123456"},
    "time-milliseconds": {**FORK, "time": "2026-11-29T22:15:01.123Z"},
    "time-no-fraction": {**GAP, "time": "2026-11-29T22:15:01Z"},
    "time-with-space": {**FORK, "time": "2026-11-29 22:15:01.123456Z"},
    "time-lowercase-z": {**EXEC, "time": "2026-11-29t22:15:01.123456z"},
    # values out of the kernel's ranges
    "negative-pid": {**FORK, "pid": -1},
    "pid-over-u32": {**FORK, "pid": U32_MAX + 1},
    "negative-tgid": {**FORK, "tgid": -1},
    "ppid-over-u32": {**FORK, "ppid": U32_MAX + 1},
    "uid-over-u32": {**FORK, "uid": U32_MAX + 1},
    "negative-ts_ns": {**FORK, "ts_ns": -1},
    "ts_ns-over-u64": {**FORK, "ts_ns": U64_MAX + 1},
    "duration_ns-over-u64": {**EXIT, "duration_ns": U64_MAX + 1},
    "exit_code-over-s32": {**EXIT, "exit_code": S32_MAX + 1},
    "exit_code-under-s32": {**EXIT, "exit_code": S32_MIN - 1},
    "negative-exit_signal": {**EXIT, "exit_signal": -1},
    "gap-dropped-0": {**GAP, "dropped": 0},
    "gap-dropped-negative": {**GAP, "dropped": -3},
    "gap-dropped-over-u64": {**GAP, "dropped": U64_MAX + 1},
    # wrong JSON types, strictly
    "gap-string-dropped": {**GAP, "dropped": "12"},
    "int-as-string": {**FORK, "pid": "15012"},
    "ts_ns-as-string": {**FORK, "ts_ns": "1682980796523"},
    "exit_code-as-string": {**EXIT, "exit_code": "2"},
    "bool-as-1": {**FORK, "thread": 1},
    "bool-as-0": {**FORK, "thread": 0},
    "bool-as-string": {**FORK, "thread": "false"},
    "int-as-bool": {**FORK, "pid": True},
    "comm-as-number": {**FORK, "comm": 5},
    "comm-null": {**FORK, "comm": None},
    "filename-as-list": {**EXEC, "filename": ["/usr/bin/ls"]},
    "argv-as-string": {**EXEC, "argv": "ls -l /tmp"},
    "argv-with-a-number": {**EXEC, "argv": ["ls", 5]},
    "argv-with-null": {**EXEC, "argv": ["ls", None]},
    "argv_truncated-as-0": {**EXEC, "argv_truncated": 0},
    "negative-argc": {**EXEC, "argc": -1},
    "argc-over-u32": {**EXEC, "argc": U32_MAX + 1},
    "argc-as-string": {**EXEC, "argc": "3"},
    # where it ran, who started it
    "without-cgroup_id": without(FORK, "cgroup_id"),
    "cgroup-null": {**FORK, "cgroup": None},
    "container_id-null": {**FORK, "container_id": None},
    "ns_pid-negative": {**FORK, "ns_pid": -1, "ns_ppid": 0},
    "gap-with-cgroup_id": {**GAP, "cgroup_id": 1},
    "lineage-null": {**FORK, "lineage": None},
    "ancestor-without-pid": {**FORK, "lineage": [without(LINEAGE[0], "pid")]},
    "ancestor-exited-false": {**FORK, "lineage": [{**LINEAGE[0], "exited": False}]},
    "ancestor-with-unknown-field": {**FORK, "lineage": [{**LINEAGE[0], "ppid": 1}]},
    # the type
    "unknown-type": {**FORK, "type": "clone"},
    "type-in-capitals": {**FORK, "type": "FORK"},
    "type-missing": without(FORK, "type"),
    "type-null": {**FORK, "type": None},
    "empty-object": {},
    "not-an-object-list": [FORK],
    "not-an-object-string": "fork",
    "not-an-object-null": None,
}
for _name, _line in SAMPLES.items():
    REJECTED[f"{_name}-with-unknown-field"] = {**_line, "container_label": "web-1"}


@pytest.mark.parametrize("line", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepts(line, validator):
    check_line(json.dumps(line, separators=(",", ":"), ensure_ascii=False), validator)


@pytest.mark.parametrize("line", REJECTED.values(), ids=REJECTED.keys())
def test_rejects(line, validator):
    text = json.dumps(line)
    with pytest.raises(ValidationError):
        EventLine.model_validate_json(text)
    with pytest.raises(ValidationError):
        EventLine.model_validate(json.loads(text))
    assert not validator.is_valid(json.loads(text)), "the JSON Schema must reject it too"


def test_integral_floats_only_the_model_rejects(validator):
    """JSON Schema counts 1.0 as an integer; the model, strict, does not.  No writer
    prints a number with a point, so the difference never meets a real line."""
    text = json.dumps({**FORK, "pid": 15012.0})
    with pytest.raises(ValidationError):
        EventLine.model_validate_json(text)
    assert validator.is_valid(json.loads(text))


def test_models_defer_building():
    """Importing the models builds none of them (startup cost: see views/schema.py)."""
    code = (
        "from procmon_ctl.views import schema as m; "
        "print([c.__name__ for c in (m.EventLine, m.ForkEvent, m.ExecEvent, m.ExitEvent, "
        "m.GapEvent) if c.__pydantic_complete__])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
