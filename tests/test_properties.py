"""Property-based tests (Hypothesis) of what a user or a process can hand
procmon-ctl: every numeric and path option of every command, and ring records of
any content.

Options: whatever the value, the exit code is a documented one, a failure is one
line on stderr (`procmon-ctl: error: ...`), nothing prints a traceback, and nothing
is made in bpffs outside the test's own pin dir nor next to a path that was refused.
The CLI runs in this process (procmon_ctl.cli.app.run, as the program's main() calls
it) so that hundreds of examples take seconds, not minutes.

Records: any bytes of a record's size decode, the JSON lines made of them are
valid JSON, and the table's lines are single lines of printable text."""

from __future__ import annotations

import io
import json
import os
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import OBJECT
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from records import cgroup_json

from procmon_ctl.cli import app
from procmon_ctl.errors import (
    EXIT_FAILED,
    EXIT_MISSING,
    EXIT_PERMISSION,
    EXIT_STATE,
    EXIT_USAGE,
)
from procmon_ctl.instance.load import OWN_ENTRIES
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import ReaderSlots, name_for_output
from procmon_ctl.kernel.abi import (
    EXEC_DATA_OFFSET,
    EXIT_EVENT_SIZE,
    PROCESS_EVENT,
    EventType,
    ProcessEvent,
)
from procmon_ctl.process import clock
from procmon_ctl.process.decode import cstr, decode_at, split_argv, text, unescape
from procmon_ctl.process.rows import ProcessRows
from procmon_ctl.views import render
from procmon_ctl.views.json_lines import TYPE_NAMES, json_lines

BPFFS = Path("/sys/fs/bpf")
DOCUMENTED = {0, EXIT_FAILED, EXIT_USAGE, EXIT_STATE, EXIT_MISSING, EXIT_PERMISSION}
# What input alone can lead to, as root: never "the kernel refused" (1) nor 77.
INPUT_CODES = {0, EXIT_USAGE, EXIT_STATE, EXIT_MISSING}

# Each property test shares one pin dir (and one loaded instance) between its
# examples: that is what the function-scoped fixtures are for here.
# No example database: nothing is written into the repository (which the kernel
# matrix's guests see read-only); a failure prints its example.
SHARED = settings(
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@contextmanager
def scheduling_kept():
    """`events` puts its process in SCHED_BATCH: not this one's, for later tests."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def procmon(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """procmon-ctl ARGV in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with redirect_stdout(out), redirect_stderr(err), scheduling_kept():
            try:
                app.run(list(argv))
            except SystemExit as e:
                code = e.code
            else:
                raise AssertionError("app.run() returned instead of exiting")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


def check_outcome(argv, code: int, out: str, err: str, allowed: set[int] = INPUT_CODES) -> None:
    shown = f"procmon-ctl {argv!r} exited {code}\nstdout: {out[:500]!r}\nstderr: {err[:2000]!r}"
    assert isinstance(code, int), shown
    assert code in DOCUMENTED, shown
    assert code in allowed, shown
    for bad in ("Traceback", "Exception ignored"):
        assert bad not in out + err, shown
    if code != 0:
        lines = err.split("\n")
        if lines[-1] == "":
            lines.pop()
        assert len(lines) == 1, shown
        assert lines[0].startswith("procmon-ctl: error: "), shown


def bpffs_top() -> set[str]:
    return {p.name for p in BPFFS.iterdir()}


def assert_nothing_new_at_bpffs_top(before: set[str], own: Path) -> None:
    # In a bpffs of the test's own (the private_bpffs marker): nothing but its own pin
    # dir may appear, whatever other users of the machine pin meanwhile.
    new = bpffs_top() - before - {own.name}
    assert not new, f"made at the top of bpffs: {new}"
    assert not {n for n in OWN_ENTRIES if (BPFFS / n).exists()}, "a pin layout in bpffs's root"


# --- numbers ----------------------------------------------------------------------

NUMBER_TEXTS = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True).map(repr),
    st.sampled_from(
        [
            "nan",
            "-nan",
            "NaN",
            "inf",
            "-inf",
            "Infinity",
            "1e309",
            "-1e309",
            "5e-324",
            "1e-320",
            "-0",
            "-0.0",
            "0",
            "0x10",
            "1_000",
            "+7",
            " 3 ",
            "",
            "\u0663",  # ARABIC-INDIC DIGIT THREE: int() and float() accept it
            "9" * 400,
            "1" + "0" * 5000,
        ]
    ),
    st.text(max_size=12),
)

# Options that take a number, with what each command needs besides so that it ends
# promptly whatever the value (no instance is loaded in these examples).
NUMERIC_OPTIONS = [
    (["events"], "--count", []),
    (["events"], "--duration", []),
    (["events"], "--pid", []),
    (["events"], "--ppid", []),
    (["events"], "--uid", []),
    (["events"], "--tree-of", []),
    (["stats", "--watch"], "--interval", []),
    (["stats"], "--interval", []),
    (["serve"], "--port", []),
    (["run"], "--ring-size", ["--duration", "0.01", "--count", "1"]),
    (["run"], "--duration", ["--count", "1"]),
    (["run"], "--count", ["--duration", "0.01"]),
    (["run"], "--pid", ["--duration", "0.01"]),
    (["run"], "--tree-of", ["--duration", "0.01"]),
    (["load"], "--ring-size", []),
]


def _runs_long(option: str, value: str) -> bool:
    """A valid --duration for run runs that long: not what these examples are about."""
    if option != "--duration":
        return False
    try:
        return float(value) > 0.2
    except ValueError:
        return False


@pytest.mark.private_bpffs
@settings(SHARED, max_examples=600)
@given(which=st.sampled_from(NUMERIC_OPTIONS), value=NUMBER_TEXTS)
@example(which=(["stats", "--watch"], "--interval", []), value="nan")
@example(which=(["stats", "--watch"], "--interval", []), value="inf")
@example(which=(["events"], "--duration", []), value="nan")
@example(which=(["events"], "--duration", []), value="inf")
@example(which=(["run"], "--duration", ["--count", "1"]), value="nan")
@example(which=(["serve"], "--port", []), value="0")
def test_numeric_options(pin_dir, which, value):
    command, option, rest = which
    assume(not (command == ["run"] and _runs_long(option, value)))
    # run has no pinned instance, and refuses a --pin-dir.
    instance = [] if command == ["run"] else ["--pin-dir", str(pin_dir)]
    argv = [*instance, *command, f"{option}={value}", *rest]
    before = bpffs_top()
    code, out, err = procmon(*argv)
    check_outcome(argv, code, out, err)
    assert_nothing_new_at_bpffs_top(before, pin_dir)
    if command == ["load"] and code == 0:  # a ring size that is allowed: it loaded
        code, out, err = procmon("--pin-dir", str(pin_dir), "unload")
        assert code == 0, err


# --- paths ------------------------------------------------------------------------

NAMES = st.one_of(
    st.text(min_size=1, max_size=40),  # any characters: NUL, newlines, controls, bidi
    st.binary(min_size=1, max_size=40).map(os.fsdecode),  # not UTF-8: surrogate escapes
    st.text(alphabet="ab.-_ /", min_size=1, max_size=300),
    st.sampled_from(["a" * 255, "a" * 256, "a" * 5000, "procmon", ".", "...", "x.y", " "]),
).filter(lambda name: name.strip("/") != "")


def _stays_below(name: str) -> bool:
    """A name that, joined below a directory, cannot climb out of it."""
    return "\0" not in name and ".." not in Path(name).parts and not name.startswith("/")


@st.composite
def pin_dirs(draw, below: Path, outside: Path) -> str:
    """A --pin-dir: below the test's own pin dir, outside bpffs (in a temporary
    directory), relative (to a temporary cwd), or none of those."""
    name = draw(NAMES)
    kind = draw(st.sampled_from(["bpffs", "outside", "relative", "raw"]))
    if kind == "bpffs":
        assume(_stays_below(name))
        return str(below / name)
    if kind == "outside":
        assume(_stays_below(name))
        return str(outside / name)
    if kind == "relative":
        return name
    # Not "": that means the default pin dir, which these examples must not touch.
    return draw(st.sampled_from(["/", "/sys/fs/bpf", "/sys/fs/bpf/", "/proc/x", "/dev/null"]))


PIN_DIR_COMMANDS = [["status"], ["stats", "--json"], ["unload"], ["detach"], ["load"]]


@pytest.mark.private_bpffs
@settings(SHARED, max_examples=400)
@given(data=st.data())
def test_pin_dir_option_and_variable(pin_dir, tmp_path, monkeypatch, data):
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    path = data.draw(pin_dirs(pin_dir, outside), label="pin dir")
    command = data.draw(st.sampled_from(PIN_DIR_COMMANDS), label="command")
    by_env = data.draw(st.booleans(), label="PROCMON_PIN_DIR")
    if by_env:
        assume("\0" not in path)  # an environment cannot hold a NUL
        argv, env = [*command], {"PROCMON_PIN_DIR": path}
    else:
        argv, env = ["--pin-dir", path, *command], None
    before = bpffs_top()
    code, out, err = procmon(*argv, env=env)
    check_outcome(argv, code, out, err)
    assert_nothing_new_at_bpffs_top(before, pin_dir)
    assert not list(outside.iterdir()), f"made outside bpffs: {list(outside.iterdir())}"
    assert not list(cwd.iterdir()), f"made next to a relative pin dir: {list(cwd.iterdir())}"
    if command == ["load"] and code == 0:
        code, out, err = procmon(*argv[:-1], "unload", env=env)
        assert code == 0, err


OBJECT_PATHS = st.one_of(
    NAMES,
    st.sampled_from(
        [
            "/dev/zero",
            "/dev/null",
            "/dev/full",
            "/proc/self/mem",
            "/etc/shadow",
            "/bin/true",
            "/tmp",
            "/",
            "",
            str(OBJECT),
            str(OBJECT) + "/",
        ]
    ),
)


@pytest.mark.private_bpffs
@settings(SHARED, max_examples=200)
@given(obj=OBJECT_PATHS, command=st.sampled_from(["load", "run", "serve"]))
def test_object_option(pin_dir, tmp_path, monkeypatch, obj, command):
    monkeypatch.chdir(tmp_path)
    # run with a valid object runs: for --duration only; serve would serve: --attach is
    # left out, so serve must refuse --object (or the missing instance) at once.
    rest = ["--duration", "0.01", "--count", "1"] if command == "run" else []
    argv = ["--pin-dir", str(pin_dir), command, "--object", obj, *rest]
    before = bpffs_top()
    code, out, err = procmon(*argv)
    check_outcome(argv, code, out, err)
    assert_nothing_new_at_bpffs_top(before, pin_dir)
    assert not list(tmp_path.iterdir())
    if command == "load" and code == 0:
        code, out, err = procmon("--pin-dir", str(pin_dir), "unload")
        assert code == 0, err


@settings(SHARED, max_examples=150)
@given(name=NAMES, relative=st.booleans())
@example(name="a" * 5000, relative=False)
@example(name="\udcff\udcfe", relative=True)
def test_output_option(pin_dir, tmp_path, monkeypatch, name, relative):
    """events --output FILE on a loaded instance: the file is made (or refused with
    one line), whatever its name.  Its reader is named after the file, and keeps
    its slot: removed after each example, as `readers rm` would, so that the
    examples do not fill the instance's slots."""
    if not (pin_dir / "progs").exists():
        code, out, err = procmon("--pin-dir", str(pin_dir), "load")
        assert code == 0, err
    monkeypatch.chdir(tmp_path)
    assume(_stays_below(name))
    target = name if relative else str(tmp_path / name)
    argv = ["--pin-dir", str(pin_dir), "events", "--output", target, "--count", "1"]
    argv += ["--duration", "0.01"]
    code, out, err = procmon(*argv)
    check_outcome(argv, code, out, err)
    if code == 0 and target != "-":  # - is stdout: no file, no named reader
        ReaderSlots(PinnedInstance.at(pin_dir)).remove(name_for_output(target))


# --- records ----------------------------------------------------------------------

# An exec record with 120 bytes of filename and arguments (whose lengths, being
# random too, may claim more than the record holds).
RECORD_SIZE = EXEC_DATA_OFFSET + 120
EXEC_TYPES = (EventType.EXEC, EventType.EXEC_FAILED)
TYPE_OFFSET = ProcessEvent.type.offset


def type_of(raw: bytes) -> int:
    return int.from_bytes(raw[TYPE_OFFSET : TYPE_OFFSET + 4], "little")


def record_size(raw: bytes) -> int:
    if type_of(raw) == EventType.EXIT:
        return EXIT_EVENT_SIZE
    return RECORD_SIZE if type_of(raw) in EXEC_TYPES else PROCESS_EVENT.size


RECORDS = st.binary(min_size=RECORD_SIZE, max_size=RECORD_SIZE)


def with_type(raw: bytes, etype: int) -> bytes:
    """raw with its type field set."""
    return raw[:TYPE_OFFSET] + etype.to_bytes(4, "little") + raw[TYPE_OFFSET + 4 :]


TYPED_RECORDS = st.one_of(
    RECORDS,
    st.builds(with_type, RECORDS, st.sampled_from([t.value for t in EventType])),
)


@settings(database=None, max_examples=400)
@given(raw=TYPED_RECORDS)
def test_any_record_decodes(raw):
    """Any bytes, of the size of a record of their type, decode: no exception."""
    record = raw[: record_size(raw)]
    e = decode_at(memoryview(record), 0)
    assert e.type == type_of(raw) and isinstance(e.type, EventType) == (e.type in set(EventType))
    assert (e.filename is not None) == (e.type in (EventType.EXEC, EventType.EXEC_FAILED))
    assert (e.argv is not None) == (e.filename is not None)


@settings(database=None, max_examples=400)
@given(raw=TYPED_RECORDS)
def test_any_record_gives_valid_json_lines(raw):
    record = raw[: record_size(raw)]
    e = decode_at(record, 0)
    lines: list[str] = []
    marked = json_lines(record, [0], lines, 0, cgroup_json)
    assert len(lines) == (2 if e.dropped_total else 1)
    assert marked == e.dropped_total
    docs = [json.loads(line) for line in lines]
    assert all("\n" not in line for line in lines)
    doc = docs[-1]
    assert (
        doc["type"] == TYPE_NAMES.get(e.type, str(e.type))
        and doc["pid"] == e.pid
        and doc["ppid"] == e.ppid
    )
    assert doc["comm"] == e.comm
    assert doc["time"] == clock.rfc3339(e.ts_ns)
    if e.filename is not None:
        assert doc["filename"] == e.filename
        assert doc["argv"] == list(e.argv) and doc["argv_truncated"] == e.argv_truncated
    if e.dropped_total:
        assert docs[0] == {"type": "gap", "time": docs[0]["time"], "dropped": e.dropped_total}


@settings(database=None, max_examples=400)
@given(raw=TYPED_RECORDS)
def test_any_record_gives_single_printable_table_lines(raw):
    """Whatever a process named itself, each table line (--raw, the table, --wide)
    is one line of printable characters."""
    record = raw[: record_size(raw)]
    e = decode_at(record, 0)
    rows = ProcessRows(follow_exits=True)
    lines = [render.raw_line(e)]
    rows.feed(e)
    for r in rows.flush():
        lines += [render.row_line(r), render.wide_line(r)]
    for line in lines:
        assert line.isprintable(), repr(line)


NAME_BYTES = st.binary(min_size=0, max_size=15).filter(lambda b: b"\0" not in b)  # as names are


@settings(database=None, max_examples=300)
@given(a=NAME_BYTES, b=NAME_BYTES)
@example(a=b"\\xff", b=b"\xff")
def test_json_names_are_reversible(a, b):
    """Two different names never give the same JSON string: --json keeps names exact."""
    assume(a != b)
    assert cstr(a) != cstr(b)


@settings(database=None, max_examples=500)
@given(raw=st.binary(max_size=64))
@example(raw=b"\\xff\xff\\\\")
def test_text_gives_back_the_bytes(raw):
    """Names, filenames and arguments: the text names the bytes exactly."""
    assert unescape(text(raw)) == raw
    text(raw).encode("utf-8")  # valid UTF-8 (this raises otherwise): a log shipper takes it


@settings(database=None, max_examples=300)
@given(args=st.lists(st.binary(max_size=12).filter(lambda a: b"\0" not in a), max_size=8))
def test_argv_keeps_every_argument_in_order(args):
    """Empty arguments included, in order, whatever their bytes."""
    area = b"".join(a + b"\0" for a in args)
    assert [unescape(a) for a in split_argv(area)] == args
