"""Every pin is what procmon-ctl made (issue 13.6), unload under a reader (13.4),
lock files that neither pile up nor collide (13.10), and bad paths (13.9).

The kernel ids of what `load` and `attach` pinned are recorded in /run/procmon-ctl;
commands check the pins against them before they use them."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    AS_NOBODY,
    CLI,
    bpftool_json,
    in_private_mount_ns,
    nobody_env,
    nobody_python,
    reader_state,
    wait_reading,
)

from procmon_ctl.errors import EXIT_PERMISSION, EXIT_STATE, EXIT_USAGE, StateError
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.state_dir import LOCK_DIR


def assert_one_line_error(r: subprocess.CompletedProcess, code: int, *texts: str) -> str:
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("procmon-ctl: error: "), lines[0]
    for text in texts:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert r.returncode == code, f"exit {r.returncode}, expected {code}: {lines[0]}"
    return lines[0]


def pins_with_ids(pin_dir: Path) -> dict[str, tuple[str, int]]:
    """relative pin path -> (kind, kernel id), read with bpftool."""
    found = {}
    for path in sorted(p for p in pin_dir.rglob("*") if p.is_file()):
        for kind in ("prog", "map", "link"):  # bpftool says which it is by failing
            r = subprocess.run(
                ["bpftool", "-j", kind, "show", "pinned", str(path)], capture_output=True
            )
            if r.returncode == 0:
                found[str(path.relative_to(pin_dir))] = (kind, json.loads(r.stdout)["id"])
                break
    return found


def make_map(path: Path, kind: str = "array", name: str = "their_map") -> int:
    size = ["key", "0", "value", "0", "entries", "4096"]
    if kind == "array":
        size = ["key", "4", "value", "4", "entries", "1"]
    subprocess.run(
        ["bpftool", "map", "create", str(path), "type", kind, *size, "name", name],
        check=True,
        capture_output=True,
    )
    return bpftool_json("map", "show", "pinned", str(path))["id"]


READ_COMMANDS = [
    ("status",),
    ("stats",),
    ("events", "--count", "1", "--duration", "2"),
]


# -- point 6: a pin that is not the one loaded there ------------------------------


@pytest.mark.parametrize("where", ["maps/their_map", "maps/sub/their_map", "links/their_map"])
def test_unload_refuses_a_pin_it_did_not_make_at_any_depth(attached, where):
    before = pins_with_ids(attached.pin_dir)
    foreign = attached.pin_dir / where
    foreign.parent.mkdir(mode=0o700, exist_ok=True)
    foreign_id = make_map(foreign)
    r = attached("unload", check=False)
    named = "maps/sub" if "/sub/" in where else where  # the directory is foreign too
    assert_one_line_error(r, EXIT_STATE, f"holds {named}", "which procmon-ctl did not make")
    after = pins_with_ids(attached.pin_dir)
    assert after.pop(where) == ("map", foreign_id), "the foreign map was removed"
    assert after == before, "unload removed pins although it refused"
    foreign.unlink()
    if foreign.parent.name == "sub":
        foreign.parent.rmdir()
    attached("unload")
    assert not attached.pin_dir.exists()


def _replace_settings(cli) -> int:
    settings = cli.pin_dir / "maps" / "settings"
    settings.unlink()
    return make_map(settings, "array", "settings")


def test_a_replaced_map_is_refused_by_every_command(attached):
    """The issue's case (then with the one ring): maps/settings replaced by another
    map of the same name.  A reader would write its slot's settings into a map the
    programs never read.  On the host only: the check compares map ids, which every
    kernel gives alike (test_record_follows_attach_and_detach runs on the matrix)."""
    foreign_id = _replace_settings(attached)
    pin = attached.pin_dir / "maps" / "settings"
    for command in READ_COMMANDS:
        r = attached(*command, check=False)
        line = assert_one_line_error(
            r, EXIT_STATE, f"{pin} is not the map procmon-ctl pinned there", "load again"
        )
        assert f"map id {foreign_id}" in line
    r = attached("unload", check=False)
    assert_one_line_error(r, EXIT_STATE, f"{pin} is not the map", f"rm {pin}")
    assert bpftool_json("map", "show", "pinned", str(pin))["id"] == foreign_id
    # The way out the message gives.
    pin.unlink()
    attached("unload")
    assert not attached.pin_dir.exists()


def test_a_swapped_map_is_caught_even_with_a_doctored_record(attached):
    """Root swapped maps/settings and wrote its id into the record: the programs do
    not use that map, and the check says so."""
    layout = PinnedInstance.at(attached.pin_dir)
    foreign_id = _replace_settings(attached)
    data = json.loads(layout.record.path.read_text())
    data["pins"]["maps/settings"] = foreign_id
    layout.record.path.write_text(json.dumps(data))
    r = attached("status", check=False)
    assert_one_line_error(r, EXIT_STATE, "maps/settings is not the map", "programs do not use it")


def test_a_replaced_program_is_refused(cli):
    cli("load")
    progs = cli.pin_dir / "progs"
    exec_id = bpftool_json("prog", "show", "pinned", str(progs / "handle_exec"))["id"]
    (progs / "handle_fork").unlink()
    subprocess.run(
        ["bpftool", "prog", "pin", "id", str(exec_id), str(progs / "handle_fork")], check=True
    )
    r = cli("attach", check=False)
    assert_one_line_error(r, EXIT_STATE, "progs/handle_fork is not the program")
    assert not (cli.pin_dir / "links").exists(), "attach went on"


def test_a_map_pinned_where_a_link_belongs_is_refused(cli):
    cli("load")
    links = cli.pin_dir / "links"
    links.mkdir(mode=0o700)
    make_map(links / "fork")
    for command in [("status",), ("detach",), ("unload",)]:
        r = cli(*command, check=False)
        assert_one_line_error(r, EXIT_STATE, "links/fork is not the link", "not a link")
    assert (links / "fork").exists()


def test_an_instance_without_a_record_must_be_loaded_again(attached):
    """An older procmon-ctl kept no record: nothing of it is trusted for use, but
    unload (which removes only names procmon-ctl makes) cleans it up."""
    PinnedInstance.at(attached.pin_dir).record.path.unlink()
    for command in [*READ_COMMANDS, ("attach",)]:
        r = attached(*command, check=False)
        assert_one_line_error(
            r,
            EXIT_STATE,
            "no record of what procmon-ctl pinned",
            f"`PROCMON_PIN_DIR={attached.pin_dir} procmon-ctl unload` and load",
        )
    attached("unload")
    assert not attached.pin_dir.exists()
    attached("load")
    attached("status")


@pytest.mark.kernel
def test_record_follows_attach_and_detach(cli):
    layout = PinnedInstance.at(cli.pin_dir)
    cli("load")
    ids = {name: kernel_id for name, (_, kernel_id) in pins_with_ids(cli.pin_dir).items()}
    assert layout.record.pins() == ids
    assert any(name.endswith("__rodata") for name in ids), "the object's internal map too"
    cli("attach", "--events", "fork,exit")
    ids = {name: kernel_id for name, (_, kernel_id) in pins_with_ids(cli.pin_dir).items()}
    assert layout.record.pins() == ids
    cli("detach", "--events", "fork")
    ids = {name: kernel_id for name, (_, kernel_id) in pins_with_ids(cli.pin_dir).items()}
    record = layout.record.pins()
    assert record == ids and "links/fork" not in record
    st = os.stat(layout.record.path)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0)
    assert (os.stat(LOCK_DIR).st_mode & 0o777) == 0o700
    cli("unload")
    assert not layout.record.path.exists()


# -- the reader's API (PinnedInstance.open_map, PinIdentity.same_map) ---------------------


def test_open_map_and_same_map(attached):
    from procmon_ctl.kernel import libbpf

    layout = PinnedInstance.at(attached.pin_dir)
    fd = layout.open_map("rings")
    try:
        assert libbpf.map_info(fd).id == layout.record.pins()["maps/rings"]
        assert layout.identity.same_map("rings", fd)
        attached("unload")
        assert not layout.identity.same_map("rings", fd)
        attached("load")
        assert not layout.identity.same_map("rings", fd), "a new instance's rings are another map"
        fresh = layout.open_map("rings")
        assert layout.identity.same_map("rings", fresh)
        os.close(fresh)
    finally:
        os.close(fd)
    _replace_settings(attached)
    with pytest.raises(StateError, match="is not the map procmon-ctl pinned there"):
        layout.open_map("settings")
    layout.record.path.unlink()
    with pytest.raises(StateError, match="no record"):
        layout.open_map("rings")


# -- point 4 (13.4): unload while a reader reads -----------------------------------


def test_unload_while_a_reader_reads_needs_force(attached):
    layout = PinnedInstance.at(attached.pin_dir)
    reader = attached.popen(
        "events", "--duration", "300", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_reading(attached.pin_dir, reader)
        slot = reader_state(attached.pin_dir, reader.pid).slot
        # What unload sees: the reader's slot's lock cannot be taken.
        fd = os.open(layout.locks.path(f"reader-{slot}"), os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        before = pins_with_ids(attached.pin_dir)
        r = attached("unload", check=False)
        assert_one_line_error(
            r, EXIT_STATE, f"1 reader (pid {reader.pid}) is reading", "unload --force"
        )
        assert pins_with_ids(attached.pin_dir) == before
        assert reader.poll() is None
        r = attached("unload", "--force")
        assert r.stdout.startswith(f"unloaded {attached.pin_dir}")
        assert not attached.pin_dir.exists()
    finally:
        if reader.poll() is None:
            reader.send_signal(signal.SIGINT)
        reader.communicate(timeout=60)
    # The reader's lock went with it: its pin dir is gone.
    assert not [p for p in layout.state_paths() if p.exists()]


# -- point 10: lock files ---------------------------------------------------------


def _in_private_run_dir(script: str) -> subprocess.CompletedProcess:
    """Run a shell script with a private, empty /run/procmon-ctl (a tmpfs in a mount
    namespace of its own), so what it leaves there is exactly what it made."""
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    prologue = f"mount -t tmpfs -o mode=700 procmon-test {LOCK_DIR}\n"
    return in_private_mount_ns(prologue + script, timeout=600)


def test_load_unload_cycles_and_runs_leave_no_files(cli):
    r = _in_private_run_dir(f"""
        export PROCMON_PIN_DIR={cli.pin_dir}
        i=0
        while [ $i -lt 20 ]; do
            $CLI load >/dev/null
            if [ $((i % 5)) -eq 0 ]; then $CLI attach >/dev/null; fi
            $CLI unload >/dev/null
            i=$((i + 1))
        done
        $CLI run -- true 2>/dev/null
        $CLI run -- true 2>/dev/null
        echo "left: $(ls -A {LOCK_DIR} | wc -l)"
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "left: 0", r.stdout
    assert not cli.pin_dir.exists()


# -- issue 24.4: /run/procmon-ctl is root's and 0700, whoever made it -----------------


@pytest.mark.parametrize(
    "mode, owner, repaired",
    [("0755", "0", True), ("0750", "0", True), ("0777", "0", False), ("0700", "65534", False)],
    ids=["readable-repaired", "group-readable-repaired", "writable-refused", "not-roots-refused"],
)
def test_a_looser_state_dir_is_repaired_or_refused(cli, mode, owner, repaired):
    """A state dir of root's that others may only read (as `mkdir` makes it under
    umask 022) is put back to 0700 by the first command; one that others could write,
    or someone else's, is refused in one line, and nothing is loaded."""
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    r = in_private_mount_ns(f"""
        mount -t tmpfs -o mode={mode},uid={owner} procmon-test {LOCK_DIR}
        rc=0 err=$(mktemp)
        $CLI --pin-dir {cli.pin_dir} load >/dev/null 2>"$err" || rc=$?
        echo "rc=$rc mode=$(stat -c %a {LOCK_DIR}) loaded=$(test -e {cli.pin_dir} && echo yes)"
        cat "$err" >&2 && rm -f "$err"
        $CLI --pin-dir {cli.pin_dir} unload >/dev/null 2>&1 || true
    """)
    assert r.returncode == 0, r.stderr
    if repaired:
        assert r.stdout.split() == ["rc=0", "mode=700", "loaded=yes"], r
    else:
        assert r.stdout.split() == [f"rc={EXIT_STATE}", f"mode={int(mode[1:])}", "loaded="], r
        assert r.stderr.splitlines() == [
            f"procmon-ctl: error: {LOCK_DIR} is not a directory of root's that only root "
            f"may write: remove it (rm -r {LOCK_DIR}); procmon-ctl makes it again"
        ]
    assert not cli.pin_dir.exists()


def test_bench_takes_its_lock_in_a_state_dir_made_as_procmon_ctl_makes_it():
    """`make bench` and `make long-run` take their lock (bench.take_bench_lock) in
    procmon-ctl's state dir, checked and repaired by procmon-ctl's own code: after
    a bench, the suite finds it 0700 (a bench used to leave it 0755)."""
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    r = in_private_mount_ns(f"""
        mount -t tmpfs -o mode=755 procmon-test {LOCK_DIR}
        cd scripts/bench
        {sys.executable} -c 'import bench; print(bench.take_bench_lock() is not None)'
        stat -c %a {LOCK_DIR}
        mount -t tmpfs -o mode=777 procmon-test {LOCK_DIR}
        {sys.executable} bench.py --quick --contenders untraced --storm /bin/true \
            --pin-dir /sys/fs/bpf/procmon-test-never-{os.getpid()} 2>&1 | tail -1
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["True", "700"], r
    assert f"{LOCK_DIR} is not a directory of root's that only root may write" in r.stdout


def test_a_long_pin_dir_loads_and_unloads(cli):
    long_dir = cli.pin_dir / ("d" * 120) / ("e" * 120)
    assert len(str(long_dir)) > 250
    cli("--pin-dir", str(long_dir), "load")
    cli("--pin-dir", str(long_dir), "attach")
    assert "(loaded)" in cli("--pin-dir", str(long_dir), "status").stdout
    layout = PinnedInstance.at(long_dir)
    assert all(len(p.name) < 100 for p in layout.state_paths())
    cli("--pin-dir", str(long_dir), "unload")
    assert not long_dir.exists()
    assert not [p for p in layout.state_paths() if p.exists()]


def test_lock_files_removed_under_the_lock_never_admit_two(tmp_path):
    """Each holder of a pin dir without pins removes the lock file as it leaves:
    a waiter that then gets the lock of the removed file must not go in while
    another holds the new file.  Eight threads, each fd its own flock."""
    layout = PinnedInstance.at(Path(f"/sys/fs/bpf/procmon-locktest-{os.getpid()}"))
    assert not layout.root.exists()
    inside, most, errors = [0], [0], []
    guard = threading.Lock()

    def enter_many():
        try:
            for _ in range(150):
                with layout.locks.admin():
                    with guard:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                    time.sleep(0.0001)
                    with guard:
                        inside[0] -= 1
        except Exception as err:  # reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=enter_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert most[0] == 1, f"{most[0]} holders at once"
    assert not layout.locks.paths()[0].exists()


def test_old_style_lock_files_of_a_pin_dir_go_at_unload(cli):
    name = str(cli.pin_dir).strip("/").replace("%", "%25").replace("_", "%5F").replace("/", "_")
    old = [LOCK_DIR / f"{name}.{kind}.lock" for kind in ("admin", "reader")]
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    for path in old:
        path.touch(mode=0o600)
    try:
        cli("load")
        cli("unload")
        assert not [p for p in old if p.exists()]
    finally:
        for path in old:
            path.unlink(missing_ok=True)


# -- point 9: bad paths -----------------------------------------------------------


@pytest.mark.parametrize("command", ["load", "status", "unload"])
def test_a_pin_dir_that_is_not_utf8_gets_one_line(cli, command):
    env = {os.fsencode(k): os.fsencode(v) for k, v in cli.env.items()}
    env[b"PROCMON_PIN_DIR"] = b"/sys/fs/bpf/\xff"
    r = subprocess.run([*CLI, command], capture_output=True, text=True, env=env, timeout=60)
    assert_one_line_error(r, EXIT_USAGE, "is not valid UTF-8")
    assert not Path(os.fsdecode(b"/sys/fs/bpf/\xff")).exists()


def test_a_pin_dir_with_dot_dot_is_refused(cli):
    r = cli("--pin-dir", f"{cli.pin_dir}/../{cli.pin_dir.name}", "load", check=False)
    assert_one_line_error(r, EXIT_USAGE, "contains '..'")
    assert not cli.pin_dir.exists()


def test_an_object_that_is_a_device_is_not_called_missing(cli):
    r = cli("load", "--object", "/dev/zero", check=False)
    assert_one_line_error(r, EXIT_USAGE, "/dev/zero is not a regular file")
    assert not cli.pin_dir.exists()


def test_non_root_load_of_an_unreadable_object_is_a_permission_error(cli):
    python = nobody_python()
    if python is None:
        pytest.skip("no interpreter uid 65534 can run")
    r = subprocess.run(
        [*AS_NOBODY, python, "-m", "procmon_ctl", "load", "--object", "/etc/shadow"],
        capture_output=True,
        text=True,
        env=nobody_env(PROCMON_PIN_DIR=str(cli.pin_dir)),
        cwd="/",
        timeout=60,
    )
    assert_one_line_error(r, EXIT_PERMISSION, "permission denied: run as root")
    assert not cli.pin_dir.exists()
