"""Two shells at once, and a `load` that dies half-way: real processes, real kernel.

Whatever the timing: one command wins, the other gets one clear line; there are
never two links per program and never a half-made pin set that `unload` cannot
remove."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, OBJECT, bpftool_json, our_program_ids, programs_left, reader_state

from procmon_ctl.errors import EXIT_STATE
from procmon_ctl.instance.locks import STOPPED_FOR, flock_holder
from procmon_ctl.instance.pins import FAILED_EXEC_PROGRAMS, MAPS, PROGRAMS

ROUNDS = 3


def start_together(cli, *argvs: list[str]) -> list[subprocess.CompletedProcess]:
    """Start one process per argv so that they reach the kernel at the same moment:
    each imports everything first, then waits for a byte on a shared pipe."""
    read_fd, write_fd = os.pipe()
    gate = (
        "import os, sys; import procmon_ctl.cli; "
        "import procmon_ctl.instance.load, procmon_ctl.instance.attach; "
        f"os.read({read_fd}, 1); sys.argv[0] = 'procmon-ctl'; procmon_ctl.cli.main(sys.argv[1:])"
    )
    procs = [
        subprocess.Popen(
            [CLI[0], "-c", gate, *argv],
            env=cli.env,
            pass_fds=(read_fd,),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    os.close(read_fd)
    time.sleep(0.6)  # let both finish importing
    os.write(write_fd, b"x" * len(procs))
    os.close(write_fd)
    results = []
    for p, argv in zip(procs, argvs, strict=True):
        out, err = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(argv, p.returncode, out, err))
    return results


def assert_one_won(results, loser_text: str) -> None:
    codes = sorted(r.returncode for r in results)
    assert codes == [0, EXIT_STATE], [(r.returncode, r.stderr) for r in results]
    loser = next(r for r in results if r.returncode != 0)
    lines = loser.stderr.splitlines()
    assert len(lines) == 1 and loser_text in lines[0], lines
    assert "Traceback" not in "".join(r.stderr for r in results)


def assert_both_done(results, done: str, already: str) -> None:
    """attach and detach are idempotent: both succeed, one did it and the other says
    it was done already, each in one line."""
    assert [r.returncode for r in results] == [0, 0], [(r.returncode, r.stderr) for r in results]
    outs = sorted((r.stdout.strip() for r in results), key=lambda out: already in out)
    assert outs[0] == done and already in outs[1] and "\n" not in outs[1], outs
    assert "Traceback" not in "".join(r.stderr for r in results)


def assert_complete_pin_set(pin_dir: Path) -> set[int]:
    for event, prog in PROGRAMS.items():
        assert (pin_dir / "progs" / prog).exists(), f"program {event} not pinned"
    for name in MAPS:
        assert (pin_dir / "maps" / name).exists(), f"map {name} not pinned"
    assert sorted(p.name for p in pin_dir.iterdir()) in (
        ["maps", "progs"],
        ["links", "maps", "progs"],
    )
    for prog in FAILED_EXEC_PROGRAMS:
        assert (pin_dir / "progs" / prog).exists(), f"program {prog} not pinned"
    ids = our_program_ids(pin_dir)
    assert len(ids) == len(PROGRAMS) + len(FAILED_EXEC_PROGRAMS)
    return ids


def our_links(prog_ids: set[int]) -> list[dict]:
    return [ln for ln in bpftool_json("link", "show") if ln["prog_id"] in prog_ids]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_loads_at_once(cli, round_):
    """load is idempotent, as attach is: one loads, the other finds it loaded."""
    results = start_together(cli, ["load"], ["load"])
    assert [r.returncode for r in results] == [0, 0], [(r.returncode, r.stderr) for r in results]
    outs = sorted(r.stdout for r in results)
    assert outs[0].startswith(f"already loaded at {cli.pin_dir}: left as it is; next: "), outs
    assert outs[1].startswith(f"loaded process_monitor.bpf.o at {cli.pin_dir}; next: "), outs
    assert "Traceback" not in "".join(r.stderr for r in results)
    assert_complete_pin_set(cli.pin_dir)
    cli("unload")
    assert not cli.pin_dir.exists()


def test_two_loads_different_ring_sizes(cli):
    """The ring-size path makes a staging map first: the loser must not disturb it.
    The loser asked for another ring size than the instance has: refused."""
    results = start_together(
        cli, ["load", "--ring-size", "65536"], ["load", "--ring-size", "131072"]
    )
    assert_one_won(results, "already loaded")
    assert_complete_pin_set(cli.pin_dir)
    assert not (cli.pin_dir / "ring_staging").exists()
    winner = next(r for r in results if r.returncode == 0).args
    # The winner's size is each reader's ring's.
    with cli.reading("events", "--json") as r:
        size = reader_state(cli.pin_dir, r.proc.pid).ring_size
    assert size == int(winner[-1])


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_attaches_at_once(cli, round_):
    cli("load")
    ids = assert_complete_pin_set(cli.pin_dir)
    results = start_together(cli, ["attach"], ["attach"])
    assert_both_done(
        results, "attached fork, exec, exit, cgroup", "were already attached: nothing to do"
    )
    links = our_links(ids)
    assert len(links) == len(PROGRAMS), f"expected one link per program, got {links}"
    assert len({ln["prog_id"] for ln in links}) == len(PROGRAMS)
    assert sorted(p.name for p in (cli.pin_dir / "links").iterdir()) == sorted(PROGRAMS)


def test_attach_and_unload_at_once(cli):
    """Either order is fine; what is left afterwards is nothing at all."""
    cli("load")
    ids = our_program_ids(cli.pin_dir)
    results = start_together(cli, ["attach"], ["unload"])
    attach, unload = results
    assert unload.returncode == 0, unload.stderr
    assert attach.returncode in (0, EXIT_STATE), attach.stderr
    assert not cli.pin_dir.exists()
    assert not our_links(ids)
    assert not programs_left(ids)


def _partial_maps_only(pin_dir: Path) -> None:
    (pin_dir / "maps").mkdir(parents=True)
    subprocess.run(
        [
            "bpftool",
            "map",
            "create",
            str(pin_dir / "maps" / "process_count"),
            "type",
            "array",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "1",
            "name",
            "process_count",
        ],
        check=True,
        capture_output=True,
    )


def _partial_progs_only(pin_dir: Path) -> None:
    pin_dir.mkdir()
    subprocess.run(
        ["bpftool", "prog", "loadall", str(OBJECT), str(pin_dir / "progs")],
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize(
    "make_partial", [_partial_maps_only, _partial_progs_only], ids=["maps-only", "progs-only"]
)
def test_unload_cleans_partial_pin_set(cli, make_partial):
    make_partial(cli.pin_dir)
    ids = our_program_ids(cli.pin_dir)
    r = cli("load", check=False)
    assert r.returncode == EXIT_STATE
    assert r.stderr.splitlines() == [
        f"procmon-ctl: error: an incomplete pin set is at {cli.pin_dir} (an interrupted "
        f"load?): run `PROCMON_PIN_DIR={cli.pin_dir} procmon-ctl unload` to remove it, then "
        "load again"
    ]
    assert cli("unload").returncode == 0
    assert not cli.pin_dir.exists()
    assert not programs_left(ids)
    cli("load")
    assert_complete_pin_set(cli.pin_dir)


def _bpftool_pids_for(pin_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"bpftool") for a in cmdline[:2]) and any(
            str(pin_dir).encode() in a for a in cmdline
        ):
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize("delay", [0.05, 0.25, 0.4, 0.55, 0.7])
def test_unload_after_load_killed_midway(cli, delay):
    """SIGKILL a `load` (the python process only, as the OOM killer would) at several
    moments; its bpftool dies with it, and `unload` then leaves nothing behind."""
    p = cli.popen("load", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 5
    while _bpftool_pids_for(cli.pin_dir):
        assert time.monotonic() < deadline, "bpftool outlived the killed load"
        time.sleep(0.05)
    ids = our_program_ids(cli.pin_dir)
    cli("unload")  # "nothing to unload" (exit 0) when killed before it made anything
    assert not cli.pin_dir.exists()
    assert not programs_left(ids)
    cli("load")
    assert_complete_pin_set(cli.pin_dir)


def test_unload_after_load_killed_while_bpftool_runs(cli, tmp_path):
    """The worst moment: bpftool is running.  It must die with the killed `load`,
    or it would go on pinning after the cleanup.  A bpftool that waits a second
    before doing the work makes the moment certain."""
    slow = tmp_path / "bin" / "bpftool"
    slow.parent.mkdir()
    slow.write_text('#!/bin/sh\nsleep 1\nexec /usr/sbin/bpftool "$@"\n')
    slow.chmod(0o755)
    env = {**cli.env, "PATH": f"{slow.parent}:{os.environ['PATH']}"}
    p = subprocess.Popen(
        [*CLI, "load"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while not _bpftool_pids_for(cli.pin_dir):
        assert p.poll() is None, "load finished before bpftool was seen"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(2)  # the slow bpftool would have pinned everything by now
    assert not _bpftool_pids_for(cli.pin_dir), "bpftool outlived the killed load"
    assert not (cli.pin_dir / "progs").exists() and not (cli.pin_dir / "maps").exists()
    r = cli("unload", check=False)
    assert r.returncode in (0, EXIT_STATE), r.stderr
    assert not cli.pin_dir.exists()


@pytest.mark.parametrize("command", ["detach", "unload"])
def test_two_detaches_or_unloads_at_once(cli, command):
    cli("load")
    cli("attach")
    ids = our_program_ids(cli.pin_dir)
    results = start_together(cli, [command], [command])
    if command == "detach":
        assert_both_done(
            results, "detached fork, exec, exit, cgroup", "were not attached: nothing to do"
        )
    else:
        codes = [(r.returncode, r.stderr) for r in results]
        assert [code for code, _ in codes] == [0, 0], codes
        outs = sorted(r.stdout for r in results)
        assert outs[0] == f"nothing loaded at {cli.pin_dir}: nothing to unload\n", outs
        assert outs[1].startswith(f"unloaded {cli.pin_dir} ("), outs
    assert not our_links(ids)
    if command == "unload":
        assert not cli.pin_dir.exists()
        assert not programs_left(ids)
    else:
        assert_complete_pin_set(cli.pin_dir)


def test_pin_dirs_that_differ_only_in_slashes_have_locks_of_their_own(tmp_path):
    """/x/a_b and /x/a/b (and a name that looks escaped) must not share a lock: each
    takes its admin lock and its reader slots' locks while the others hold theirs."""
    from contextlib import ExitStack

    from procmon_ctl.instance.pinned import PinnedInstance

    base = f"/sys/fs/bpf/locktest-{os.getpid()}"
    layouts = [
        PinnedInstance.at(Path(p))
        for p in (f"{base}_a_b", f"{base}_a/b", f"{base}/a_b", f"{base}/a%5Fb", f"{base}_a%2Fb")
    ]
    paths = [lay.locks.paths() for lay in layouts]
    try:
        assert len({p for pair in paths for p in pair}) == sum(map(len, paths))
        with ExitStack() as held:
            for lay in layouts:
                held.enter_context(lay.slots_lock())  # would wait for ever if shared
                hold = lay.hold_slot(0)
                assert hold is not None, f"{lay.root} shares a reader slot's lock"
                held.callback(hold.close)
    finally:
        for pair in paths:
            for lock in pair:
                lock.unlink(missing_ok=True)


# Holds the admin lock of the pin dir argv[1] until it reads a byte, then says so
# and waits for another.
HOLD_ADMIN = """
import os, sys
from pathlib import Path
from procmon_ctl.instance.pinned import PinnedInstance
with PinnedInstance.at(Path(sys.argv[1])).slots_lock():
    os.write(1, b"held\\n")
    os.read(0, 1)
os.write(1, b"let go\\n")
os.read(0, 1)
"""


def hold_admin(pin_dir: Path) -> subprocess.Popen:
    """A process holding the instance's admin lock, in a process group of its own:
    the kernel discards a Ctrl-Z sent to an orphaned one, as pytest's may be."""
    holder = subprocess.Popen(
        [CLI[0], "-c", HOLD_ADMIN, str(pin_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        process_group=0,
    )
    assert holder.stdout.readline() == b"held\n"
    return holder


def let_go(holder: subprocess.Popen) -> None:
    holder.stdin.write(b"x")
    holder.stdin.flush()


def end(holder: subprocess.Popen) -> None:
    holder.kill()
    holder.send_signal(signal.SIGCONT)
    holder.wait(timeout=30)


def poll(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def signal_pending(pid: int, signum: int) -> bool:
    """Whether `signum`, sent to process `pid`, waits for it to unblock it."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return bool(int(fields["ShdPnd"], 16) >> (signum - 1) & 1)


def test_the_holder_of_a_lock_is_found_by_device_and_inode(tmp_path):
    """/proc/locks names a file MAJOR:MINOR:INODE: a lock on another file system's
    file with the same inode number is not the holder."""
    path = tmp_path / "held.lock"
    path.touch()
    st = path.stat()
    other_dev = os.makedev(os.major(st.st_dev) + 1, os.minor(st.st_dev))
    foreign = (
        f"1: FLOCK  ADVISORY  WRITE 4242 "
        f"{os.major(other_dev):02x}:{os.minor(other_dev):02x}:{st.st_ino} 0 EOF"
    )

    def proc_locks() -> list[str]:
        return Path("/proc/locks").read_text().splitlines()

    holder = subprocess.Popen(
        ["flock", "--close", str(path), "sleep", "60"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while (found := flock_holder(proc_locks(), st.st_dev, st.st_ino)) is None:
            assert time.monotonic() < deadline, "flock never took the lock"
            time.sleep(0.01)
        assert found == holder.pid  # flock(1) holds it; its child sleep does not
        assert flock_holder(proc_locks(), other_dev, st.st_ino) is None
        # The same inode on another device, listed first, is passed over.
        assert flock_holder([foreign, *proc_locks()], st.st_dev, st.st_ino) == holder.pid
        assert flock_holder([foreign], other_dev, st.st_ino) == 4242
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and its sleep
        holder.wait()
    assert flock_holder(proc_locks(), st.st_dev, st.st_ino) is None


def test_a_command_names_the_stopped_process_that_holds_the_instance(attached):
    """A process stopped (SIGSTOP) while it holds the admin lock would keep every
    command waiting until it is resumed: the waiter says who it is and how to go on,
    in one line, and the same command works once the holder lets go."""
    from procmon_ctl.kernel.procfs import is_stopped

    holder = hold_admin(attached.pin_dir)
    try:
        holder.send_signal(signal.SIGSTOP)
        poll(lambda: is_stopped(holder.pid), "the holder did not stop")
        started = time.monotonic()
        r = attached("readers", check=False)
        assert r.returncode == EXIT_STATE, (r.returncode, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1, lines
        assert f"is held by process {holder.pid}, which is stopped" in lines[0], lines
        assert f"kill -CONT {holder.pid}" in lines[0], lines
        assert time.monotonic() - started < 30
        holder.send_signal(signal.SIGCONT)
        let_go(holder)
        assert holder.stdout.readline() == b"let go\n"
        assert attached("readers").returncode == 0
    finally:
        end(holder)


def test_a_command_waits_for_a_running_holder_of_the_instance(attached):
    """A holder that runs is waited for, however long it holds the lock."""
    holder = hold_admin(attached.pin_dir)
    try:
        waiter = attached.popen("readers", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # What is checked: that it waits twice as long as a stopped holder is given.
        time.sleep(2 * STOPPED_FOR)
        assert waiter.poll() is None, waiter.communicate()
        let_go(holder)
        _, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
    finally:
        end(holder)


def test_ctrl_z_stops_the_holder_of_the_instance_once_it_lets_go(attached):
    """Ctrl-Z (SIGTSTP) waits while a command holds the admin lock, so a shell job
    stopped then never keeps other commands waiting; it stops the command as soon as
    it lets go."""
    from procmon_ctl.kernel.procfs import is_stopped

    holder = hold_admin(attached.pin_dir)
    try:
        holder.send_signal(signal.SIGTSTP)
        poll(lambda: signal_pending(holder.pid, signal.SIGTSTP), "SIGTSTP did not arrive")
        assert not is_stopped(holder.pid)
        let_go(holder)
        poll(lambda: is_stopped(holder.pid), "the holder did not stop once it let go")
        assert attached("readers").returncode == 0  # the lock is free: it stopped after
        holder.send_signal(signal.SIGCONT)
        assert holder.stdout.readline() == b"let go\n"
    finally:
        end(holder)
