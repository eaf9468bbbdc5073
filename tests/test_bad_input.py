"""Bad input, one test per case, on the real kernel.

Every case must end with exactly one line on stderr (`procmon-ctl: error: ...`),
the documented exit code (procmon_ctl/errors.py), no traceback anywhere, and no
pin left behind that was not there before.  Only what these commands could make is
looked at: other users of the machine make and remove pin dirs in bpffs meanwhile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import (
    AS_NOBODY,
    CLI,
    OBJECT,
    bpftool_json,
    nobody_env,
    nobody_python,
    our_program_ids,
    pin_tree,
    remove_tree,
)

from procmon_ctl.errors import (
    EXIT_MISSING,
    EXIT_PERMISSION,
    EXIT_STATE,
    EXIT_USAGE,
)
from procmon_ctl.instance.load import OWN_ENTRIES

BPFFS = Path("/sys/fs/bpf")
# PATH without /usr/sbin, where Debian's bpftool lives (but with our python).
NO_BPFTOOL_PATH = f"{Path(sys.executable).parent}:/usr/bin:/bin"


def top_entries(pin_dir: Path) -> set[str]:
    """What a command of these tests could make at bpffs's top by mistake: its pin dir,
    or anything named after it (the name is unique), and the entries of a pin layout
    (progs, maps, ...) written into bpffs's root itself.  Nothing else there is looked
    at: other tests and users make and remove their own pin dirs meanwhile.  (The
    default pin dir, procmon, is never a target: every case here names its own.)"""
    return {
        p.name for p in BPFFS.iterdir() if p.name.startswith(pin_dir.name) or p.name in OWN_ENTRIES
    }


@dataclass
class Snapshot:
    top: set[str]
    pins: set[str]
    links: set[int] = field(default_factory=set)

    @classmethod
    def take(cls, pin_dir: Path) -> Snapshot:
        prog_ids = our_program_ids(pin_dir) if (pin_dir / "progs").exists() else set()
        links = {ln["id"] for ln in bpftool_json("link", "show") if ln["prog_id"] in prog_ids}
        return cls(top_entries(pin_dir), pin_tree(pin_dir), links)


def assert_nothing_new(before: Snapshot, pin_dir: Path, extra: tuple[Path, ...] = ()) -> None:
    after = Snapshot.take(pin_dir)
    assert after.pins == before.pins, f"pins changed in {pin_dir}"
    assert after.links == before.links, "links of our programs changed"
    new = after.top - before.top
    assert not new, f"new entries in {BPFFS}: {new}"
    for path in extra:
        assert not path.exists(), f"{path} was created"


def assert_one_line_error(r: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("procmon-ctl: error: "), lines[0]
    assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert r.returncode == code, f"exit {r.returncode}, expected {code}: {lines[0]}"


def prepare(cli, state: str) -> None:
    if state in ("loaded", "attached", "detached", "unloaded"):
        cli("load")
    if state in ("attached", "detached"):
        cli("attach")
    if state == "detached":
        cli("detach")
    if state == "unloaded":
        cli("unload")


# The cli fixture names its instance through PROCMON_PIN_DIR: so do the hints.
LOAD_FIRST = "run `PROCMON_PIN_DIR={pin_dir} procmon-ctl load` first"

# (id, state before, argv, exit code, text in the message)
STATE_CASES = [
    # Every command before `load`.
    ("attach-before-load", "fresh", ["attach"], EXIT_STATE, LOAD_FIRST),
    ("stats-before-load", "fresh", ["stats"], EXIT_STATE, LOAD_FIRST),
    (
        "events-before-load",
        "fresh",
        ["events", "--count", "1"],
        EXIT_STATE,
        LOAD_FIRST,
    ),
    (
        "stats-watch-before-load",
        "fresh",
        ["stats", "--watch"],
        EXIT_STATE,
        LOAD_FIRST,
    ),
    ("serve-before-load", "fresh", ["serve"], EXIT_STATE, "nothing loaded"),
    # ... and after `unload`.
    ("attach-after-unload", "unloaded", ["attach"], EXIT_STATE, LOAD_FIRST),
    (
        "stats-after-unload",
        "unloaded",
        ["stats", "--json"],
        EXIT_STATE,
        LOAD_FIRST,
    ),
    (
        "events-after-unload",
        "unloaded",
        ["events", "--json", "--count", "1"],
        EXIT_STATE,
        LOAD_FIRST,
    ),
    # Twice in a row: the second one.
    (
        "load-twice-other-ring-size",
        "loaded",
        ["load", "--ring-size", "65536"],
        EXIT_STATE,
        "already loaded at {pin_dir}: to load with --ring-size 65536 (it has 4194304), run ",
    ),
]


# Already in the state asked for: exit 0 and one line on stdout, as `load` of a
# loaded instance and `attach` of an attached one.
ALREADY_CASES = [
    ("detach-before-load", "fresh", ["detach"], "were not attached: nothing to do"),
    ("unload-before-load", "fresh", ["unload"], "nothing loaded at {pin_dir}: nothing to unload"),
    ("detach-after-unload", "unloaded", ["detach"], "were not attached: nothing to do"),
    ("unload-twice", "unloaded", ["unload"], "nothing loaded at {pin_dir}: nothing to unload"),
]


@pytest.mark.parametrize(
    ("state", "argv", "text"), [c[1:] for c in ALREADY_CASES], ids=[c[0] for c in ALREADY_CASES]
)
def test_already_in_that_state(cli, state, argv, text):
    prepare(cli, state)
    r = cli(*argv, check=False)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout.count("\n") == 1 and text.format(pin_dir=cli.pin_dir) in r.stdout
    assert not cli.pin_dir.exists(), "nothing made where nothing was"


@pytest.mark.parametrize(
    ("state", "argv", "code", "text"), [c[1:] for c in STATE_CASES], ids=[c[0] for c in STATE_CASES]
)
def test_wrong_state(cli, state, argv, code, text):
    prepare(cli, state)
    before = Snapshot.take(cli.pin_dir)
    r = cli(*argv, check=False)
    assert_one_line_error(r, code, text.format(pin_dir=cli.pin_dir))
    assert r.stdout == "", "no output (not even a table header) before the error"
    assert_nothing_new(before, cli.pin_dir)


def test_load_again_leaves_the_instance_as_it_is(cli):
    """load is idempotent as attach is: the instance is there, exit 0 and said so;
    refused only when the load asks for what that instance does not have."""
    cli("load")
    before = Snapshot.take(cli.pin_dir)
    for argv in (
        ["load"],
        ["load", "--ring-size", "4194304", "--argv-bytes", "4096"],  # what it has
        ["load", "--if-needed", "--ring-size", "65536"],  # whatever it has
    ):
        r = cli(*argv)
        assert r.stdout.startswith(f"already loaded at {cli.pin_dir}: left as it is; next: ")
    assert_nothing_new(before, cli.pin_dir)
    r = cli("load", "--object", str(OBJECT), check=False)
    assert_one_line_error(
        r, EXIT_STATE, f"already loaded at {cli.pin_dir}: to load with {OBJECT}, run "
    )
    assert_nothing_new(before, cli.pin_dir)


def attached_now(cli) -> set[str]:
    return {p["event"] for p in cli.json("status", "--json")["programs"] if p["attached"]}


def test_attach_and_detach_answer_alike_for_all_or_part_done(cli):
    """attach makes sure what was asked is attached: exit 0 and the same kind of line
    whether none, part or all of it already was (detach alike); only where nothing
    is loaded is it refused."""
    cli("load")
    steps = [
        (["attach", "--events", "exec"], "attached exec", {"exec"}),
        (
            ["attach", "--events", "fork,exec"],
            "attached fork; exec was already attached",
            {"fork", "exec"},
        ),
        (
            ["attach"],
            "attached exit, cgroup; fork, exec were already attached",
            {"fork", "exec", "exit", "cgroup"},
        ),
        (["attach"], "fork, exec, exit, cgroup were already attached: nothing to do", None),
        (["attach", "--events", "exit"], "exit was already attached: nothing to do", None),
        (["detach", "--events", "fork"], "detached fork", {"exec", "exit", "cgroup"}),
        (
            ["detach", "--events", "fork,exec"],
            "detached exec; fork was not attached",
            {"exit", "cgroup"},
        ),
        (["detach"], "detached exit, cgroup; fork, exec were not attached", set()),
        (["detach"], "fork, exec, exit, cgroup were not attached: nothing to do", set()),
    ]
    now = set()
    for argv, line, after in steps:
        before = Snapshot.take(cli.pin_dir)
        r = cli(*argv)
        assert (r.stdout, r.stderr) == (line + "\n", ""), argv
        if after is None:  # nothing to do: nothing done
            assert_nothing_new(before, cli.pin_dir)
        else:
            now = after
        assert attached_now(cli) == now, argv
    cli("unload")


@pytest.mark.parametrize("state", ["fresh", "unloaded"])
def test_status_when_not_loaded_is_not_an_error(cli, state):
    """status answers the question (exit 0, "not loaded") and makes nothing."""
    prepare(cli, state)
    before = Snapshot.take(cli.pin_dir)
    r = cli("status", "--json")
    assert r.stderr == ""
    assert '"loaded":false' in r.stdout
    assert_nothing_new(before, cli.pin_dir)


# (id, argv, exit code, text); run against a fresh pin dir.
INPUT_CASES = [
    ("object-missing", ["load", "--object", "/nonexistent"], EXIT_MISSING, "not found"),
    ("object-not-elf", ["load", "--object", "{random}"], EXIT_USAGE, "is not an ELF file"),
    ("object-empty", ["load", "--object", "{empty}"], EXIT_USAGE, "is not an ELF file"),
    ("object-not-bpf-elf", ["load", "--object", "/bin/true"], EXIT_USAGE, "not an eBPF object"),
    ("object-directory", ["load", "--object", "/tmp"], EXIT_USAGE, "is a directory"),
    (
        "events-name-unknown",
        ["attach", "--events", "fork,bogus"],
        EXIT_USAGE,
        "unknown event bogus",
    ),
    ("events-name-empty", ["detach", "--events", ","], EXIT_USAGE, "unknown event"),
    ("count-negative", ["events", "--count", "-1"], EXIT_USAGE, "--count must be a positive"),
    ("count-zero", ["events", "--count", "0"], EXIT_USAGE, "--count must be a positive"),
    (
        "duration-negative",
        ["events", "--duration", "-5"],
        EXIT_USAGE,
        "--duration must be greater than 0",
    ),
    (
        "run-duration-negative",
        ["run", "--duration", "-1"],
        EXIT_USAGE,
        "--duration must be greater than 0",
    ),
    ("pid-not-a-number", ["events", "--pid", "abc"], EXIT_USAGE, "--pid"),
    (
        "ring-size-not-power-of-two",
        ["load", "--ring-size", "12345"],
        EXIT_USAGE,
        "--ring-size 12345 is not allowed",
    ),
    ("ring-size-zero", ["load", "--ring-size", "0"], EXIT_USAGE, "--ring-size 0 is not allowed"),
    (
        "ring-size-below-page",
        ["load", "--ring-size", "1024"],
        EXIT_USAGE,
        "--ring-size 1024 is not allowed",
    ),
    ("ring-size-not-a-number", ["load", "--ring-size", "4M"], EXIT_USAGE, "--ring-size"),
    (
        "run-ring-size",
        ["run", "--ring-size", "12345"],
        EXIT_USAGE,
        "--ring-size 12345 is not allowed",
    ),
    (
        "interval-zero",
        ["stats", "--watch", "--interval", "0"],
        EXIT_USAGE,
        "--interval must be greater than 0",
    ),
    # nan fails every comparison (a deadline of nan is never reached), inf overflows
    # time.sleep(): every float option refuses both, naming the range it allows.
    *(
        (f"interval-{v}", ["stats", "--watch", "--interval", v], EXIT_USAGE, expected)
        for v, expected in (
            ("nan", "--interval must be greater than 0 and at most 86400 seconds (got nan)"),
            ("inf", "--interval must be greater than 0 and at most 86400 seconds (got inf)"),
            ("-inf", "(got -inf)"),
            ("1e10", "at most 86400 seconds"),
        )
    ),
    ("interval-nan-without-watch", ["stats", "--interval", "nan"], EXIT_USAGE, "(got nan)"),
    *(
        (f"{cmd}-duration-{v}", [cmd, "--duration", v], EXIT_USAGE, expected)
        for cmd in ("events", "run")
        for v, expected in (
            ("nan", "--duration must be greater than 0 and finite (got nan)"),
            ("inf", "--duration must be greater than 0 and finite (got inf)"),
            ("-inf", "(got -inf)"),
            ("-0.0", "(got -0.0)"),
        )
    ),
    ("output-modes-conflict", ["events", "--json", "--raw"], EXIT_USAGE, "choose one of"),
    ("unknown-command", ["frobnicate"], EXIT_USAGE, "frobnicate"),
    ("unknown-option", ["load", "--no-such-option"], EXIT_USAGE, "--no-such-option"),
]


@pytest.fixture
def odd_files(tmp_path):
    random_file = tmp_path / "random.bpf.o"
    random_file.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.bpf.o"
    empty.write_bytes(b"")
    return {"random": str(random_file), "empty": str(empty)}


@pytest.mark.parametrize(
    ("argv", "code", "text"), [c[1:] for c in INPUT_CASES], ids=[c[0] for c in INPUT_CASES]
)
def test_bad_values(cli, odd_files, argv, code, text):
    argv = [a.format(**odd_files) for a in argv]
    before = Snapshot.take(cli.pin_dir)
    r = cli(*argv, check=False)
    assert_one_line_error(r, code, text)
    assert_nothing_new(before, cli.pin_dir)


def test_bad_events_name_leaves_attached_state_alone(cli):
    cli("load")
    before = Snapshot.take(cli.pin_dir)
    r = cli("attach", "--events", "forks", check=False)
    assert_one_line_error(r, EXIT_USAGE, "unknown event forks")
    assert_nothing_new(before, cli.pin_dir)


PIN_DIR_CASES = [
    ("tmp", "/tmp/x-procmon-bad-input", "is not inside a bpffs mount"),
    ("dotdot", "../../etc", "is relative"),
    ("relative", "procmon", "is relative"),
    ("bpffs-root-itself", "/sys/fs/bpf", "is not inside a bpffs mount"),
    ("proc", "/proc/procmon", "is not inside a bpffs mount"),
]


@pytest.mark.parametrize("command", ["load", "unload", "attach", "status"])
@pytest.mark.parametrize(
    ("pin", "text"), [c[1:] for c in PIN_DIR_CASES], ids=[c[0] for c in PIN_DIR_CASES]
)
def test_pin_dir_outside_bpffs(cli, tmp_path, command, pin, text):
    """Refused before anything is written, by every command."""
    before = Snapshot.take(cli.pin_dir)
    r = subprocess.run(
        [*CLI, "--pin-dir", pin, command], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert_one_line_error(r, EXIT_USAGE, text)
    made = (Path(pin),) if os.path.isabs(pin) and Path(pin) != BPFFS else ()
    try:
        assert_nothing_new(before, cli.pin_dir, extra=made)
        assert not list(tmp_path.iterdir()), "nothing written next to a relative --pin-dir"
    finally:
        for path in made:
            if path.is_dir() and path.parent == Path("/tmp"):
                shutil.rmtree(path)


def test_pin_dir_from_environment_checked_too(cli):
    before = Snapshot.take(cli.pin_dir)
    r = cli("load", env={"PROCMON_PIN_DIR": "/tmp/x-procmon-env"}, check=False)
    assert_one_line_error(r, EXIT_USAGE, "is not inside a bpffs mount")
    assert_nothing_new(before, cli.pin_dir, extra=(Path("/tmp/x-procmon-env"),))


def test_pin_dir_symlink_out_of_bpffs(cli, tmp_path):
    """bpffs's root is world-writable: a link planted there must not lead us out."""
    link = BPFFS / f"{cli.pin_dir.name}-link"
    target = tmp_path / "target"
    target.mkdir()
    link.symlink_to(target)
    try:
        before = Snapshot.take(cli.pin_dir)
        r = cli("--pin-dir", str(link), "load", check=False)
        assert_one_line_error(r, EXIT_USAGE, "is not inside a bpffs mount")
        assert_nothing_new(before, cli.pin_dir)
        assert not list(target.iterdir())
        assert (target.stat().st_mode & 0o777) == 0o755, "the target's mode was changed"
    finally:
        link.unlink()


def test_missing_bpftool_on_load(cli):
    before = Snapshot.take(cli.pin_dir)
    r = cli("load", env={"PATH": NO_BPFTOOL_PATH}, check=False)
    assert_one_line_error(r, EXIT_MISSING, "bpftool not found in PATH")
    assert_nothing_new(before, cli.pin_dir)


def test_stats_and_status_need_no_bpftool(cli):
    """The counters and the pins' ids are read through libbpf, as `serve` reads them:
    only `load` (and `doctor`) runs bpftool."""
    cli("load")
    before = Snapshot.take(cli.pin_dir)
    r = cli("stats", "--json", env={"PATH": NO_BPFTOOL_PATH}, check=False)
    assert r.returncode == 0 and r.stderr.startswith("procmon-ctl: warning: nothing attached")
    assert json.loads(r.stdout)["dropped"] == 0
    r = cli("status", "--json", env={"PATH": NO_BPFTOOL_PATH}, check=False)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["loaded"] and all(p["id"] for p in status["programs"]), status
    assert_nothing_new(before, cli.pin_dir)


def test_object_checked_before_bpftool_runs(cli):
    """A non-BPF object is refused by our own check: even without bpftool the error
    is about the object, so bpftool never saw it."""
    before = Snapshot.take(cli.pin_dir)
    r = cli("load", "--object", "/bin/true", env={"PATH": NO_BPFTOOL_PATH}, check=False)
    assert_one_line_error(r, EXIT_USAGE, "not an eBPF object")
    assert_nothing_new(before, cli.pin_dir)


# --- not root ------------------------------------------------------------------


def run_as_nobody(pin_dir: Path, *argv: str) -> subprocess.CompletedProcess:
    exe = nobody_python()
    if exe is None:
        pytest.skip("no python that uid 65534 can run")
    env = nobody_env(PROCMON_PIN_DIR=str(pin_dir), LC_ALL="C.UTF-8")
    return subprocess.run(
        [*AS_NOBODY, exe, "-m", "procmon_ctl", *argv],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=60,
    )


NOBODY_COMMANDS = [
    ["load"],
    ["attach"],
    ["detach"],
    ["unload"],
    ["stats"],
    ["status"],
    ["readers"],
    ["readers", "rm", "journal"],
    ["events", "--count", "1"],
    ["run", "--duration", "1"],
    ["stats", "--watch"],
    ["serve"],
]


@pytest.mark.parametrize("argv", NOBODY_COMMANDS, ids=["-".join(a[:2]) for a in NOBODY_COMMANDS])
@pytest.mark.parametrize("state", ["fresh", "attached"])
def test_not_root(cli, state, argv):
    prepare(cli, state)
    before = Snapshot.take(cli.pin_dir)
    r = run_as_nobody(cli.pin_dir, *argv)
    assert_one_line_error(r, EXIT_PERMISSION, "permission denied: run as root (sudo)")
    assert r.stdout == ""
    assert_nothing_new(before, cli.pin_dir)


# --- a --pin-dir that holds someone else's pins ------------------------------------


@pytest.fixture
def foreign_dir(pin_dir):
    """A bpffs directory with another tool's pinned map in it."""
    pin_dir.mkdir()
    subprocess.run(
        [
            "bpftool",
            "map",
            "create",
            str(pin_dir / "their_map"),
            "type",
            "array",
            "key",
            "4",
            "value",
            "4",
            "entries",
            "1",
            "name",
            "their_map",
        ],
        check=True,
        capture_output=True,
    )
    return pin_dir


@pytest.mark.parametrize("command", ["load", "unload"])
def test_foreign_pin_dir_left_alone(cli, foreign_dir, command):
    """unload removes every pin below the pin dir, and a failed load would too:
    neither may touch a directory with pins procmon-ctl did not make."""
    mode = foreign_dir.stat().st_mode
    before = Snapshot.take(cli.pin_dir)
    r = cli(command, check=False)
    assert_one_line_error(r, EXIT_STATE, "holds their_map, which procmon-ctl did not make")
    assert_nothing_new(before, cli.pin_dir)
    assert (foreign_dir / "their_map").exists()
    assert foreign_dir.stat().st_mode == mode


@pytest.mark.parametrize("command", ["load", "unload"])
def test_pin_dir_is_a_pin(cli, foreign_dir, command):
    before = Snapshot.take(cli.pin_dir)
    r = cli("--pin-dir", str(foreign_dir / "their_map"), command, check=False)
    assert_one_line_error(r, EXIT_USAGE, "is not a directory")
    assert_nothing_new(before, cli.pin_dir)
    assert (foreign_dir / "their_map").exists()


@pytest.mark.parametrize("name", ["procmon.x", "procmon-x/a.b"])
def test_pin_dir_with_a_dot(cli, name):
    """bpffs refuses names with a dot (EPERM): said up front, not as a system error."""
    pin = Path(f"{cli.pin_dir}-{name}")
    stray = Path(f"{cli.pin_dir}-procmon-x")
    before = Snapshot.take(cli.pin_dir)
    try:
        r = cli("--pin-dir", str(pin), "load", check=False)
        assert_one_line_error(r, EXIT_USAGE, "bpffs does not allow '.' in names")
        assert_nothing_new(before, cli.pin_dir)
        assert not stray.exists()
    finally:
        remove_tree(stray)
