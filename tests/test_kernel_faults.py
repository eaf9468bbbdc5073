"""Issue 25, points 1 and 2, tested the way they were found.

1. `events --failed` records failed execs for as long as the reader runs, from
   the syscall's exit alone (the caller's registers hold the path and argv):
   execs that end without their syscall's exit (a thread other than the leader
   that execs, a 64-bit process that execs a 32-bit program) leave nothing behind,
   and a thread that dies inside execve, even one that entered it before the
   reader started, is recorded.
2. `run -- CMD` follows CMD's tree from inside a PID namespace: `unshare -fp`, and
   a podman container (host only: the kernel matrix's guests run no podman)."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import CLI, ROOT, build_program, lines_until
from containers import require_podman, run_container
from test_exec_failures import failed_exec, failed_program_ids, failed_reader

import procmon_ctl
from procmon_ctl.instance.load import load as load_instance
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.startup import find_object

# The kernel matrix's emulated guests are some 20-50 times slower than the host.
EMULATED = os.environ.get("PROCMON_KERNEL_GUEST") == "1"
SLOW = 1800 if EMULATED else 300

# What was seen when execs in progress were kept in a hash of 4,096 entries:
# non-leader execs by the thousand, more than it held, then failed execs.
NON_LEADER_EXECS = 4200
FAILED_EXECS = 100
MISSING = "/nonexistent/procmon-test/thread_exec"


@pytest.fixture(scope="module")
def thread_exec(tmp_path_factory) -> Path:
    return build_program(tmp_path_factory, ROOT / "tests" / "programs" / "thread_exec.c")


@pytest.fixture
def loaded(cli):
    """A pinned instance, loaded through the library (attached: nothing; the
    failed-exec programs are the reader's own)."""
    load_instance(PinnedInstance.at(cli.pin_dir), find_object())
    return cli


def static_elf64(path: Path) -> Path:
    """A 64-bit program of one PT_LOAD that calls exit(0): an exec of it costs no
    dynamic loading (most of /bin/true's exec in an emulated guest)."""
    base, code = 0x400000, bytes.fromhex("b83c000000 31ff 0f05")  # exit(0)
    size = 64 + 56 + len(code)
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, base + 120, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    path.write_bytes(header + segment + code)
    path.chmod(0o755)
    return path


def static_elf32(path: Path, broken: bool = False) -> Path:
    """A 32-bit program (i386) that calls exit(7).  `broken`: its segment claims
    more bytes in the file than in memory, which the kernel finds only past exec's
    point of no return: the exec fails and kills the process (SIGSEGV)."""
    base, code = 0x08048000, bytes.fromhex("b801000000 bb07000000 cd80")  # exit(7)
    size = 52 + 32 + len(code)
    header = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    header += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, base + 84, 52, 0, 0, 52, 32, 1, 0, 0, 0)
    in_file = size + (0x2000 if broken else 0)
    segment = struct.pack("<IIIIIIII", 1, 0, base, base, in_file, size, 5, 0x1000)
    path.write_bytes(header + segment + code)
    path.chmod(0o755)
    return path


def json_lines(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def tried(lines: list[str], token: str) -> list[dict]:
    """The exec_failed records of the execs whose argv carries `token`."""
    return [
        e for e in json_lines(lines) if e["type"] == "exec_failed" and token in (e["argv"] or [])
    ]


def marked_lost(lines: list[str]) -> int:
    return sum(e["dropped"] for e in json_lines(lines) if e["type"] == "gap")


@pytest.mark.kernel
def test_failed_execs_are_recorded_after_4200_non_leader_execs(loaded, thread_exec, tmp_path):
    """A program whose second thread execs, 4,200 times (each exec gives the thread
    the leader's id, so its syscall returns under another id than it entered
    with), then 100 failed execs: all 100 are recorded, none lost."""
    cli = loaded
    target = static_elf64(tmp_path / "exit0")
    token = f"tok-{uuid.uuid4().hex[:12]}"
    reader = failed_reader(cli, failed_program_ids(cli.pin_dir))
    try:
        program = subprocess.Popen(
            [thread_exec, "leak", target, str(NON_LEADER_EXECS), str(FAILED_EXECS), token],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = program.communicate(timeout=SLOW)
        assert program.returncode == 0 and out.endswith("done\n"), out[-500:]
        lines, err = lines_until(
            reader, lambda ls: len(tried(ls, token)) >= FAILED_EXECS, timeout=SLOW
        )
    finally:
        reader.kill()
        reader.wait()
    children = [tuple(map(int, line.split())) for line in out.splitlines()[:-1]]
    assert len(children) == NON_LEADER_EXECS
    assert all(pid != tid for pid, tid in children), "the execs were the leaders'"
    mine = tried(lines, token)
    assert sorted(int(e["argv"][2]) for e in mine) == list(range(FAILED_EXECS)), err
    assert {(e["pid"], e["filename"], e["error"]) for e in mine} == {
        (program.pid, MISSING, "ENOENT")
    }
    assert marked_lost(lines) == 0, err


@pytest.mark.kernel
@pytest.mark.parametrize("broken", [False, True], ids=["returns", "dies-past-no-return"])
def test_an_exec_of_a_32_bit_program_makes_no_record(loaded, tmp_path, broken):
    """A 64-bit process that execs a 32-bit program returns from execve as a
    compat syscall, which the syscalls tracepoints skip: whether the exec returns or
    fails past its point of no return (and kills its process), nothing is recorded
    or marked lost for it, and the failed exec after it is recorded."""
    cli = loaded
    program = static_elf32(tmp_path / "exit7", broken)
    token = f"tok-{uuid.uuid4().hex[:12]}"
    reader = failed_reader(cli, failed_program_ids(cli.pin_dir))
    try:
        try:
            child = subprocess.Popen([program, token])
        except OSError as err:
            if err.errno == errno.ENOEXEC:
                pytest.skip("this kernel runs no 32-bit program (IA32 emulation off)")
            raise
        child.wait(timeout=60)
        # A failed exec after it: once its record shows, the child's would have too.
        failed_exec(MISSING, ["after", token])
        lines, err = lines_until(reader, lambda ls: tried(ls, token))
    finally:
        reader.kill()
        reader.wait()
    assert child.returncode == (-signal.SIGSEGV if broken else 7)
    assert [e["argv"] for e in tried(lines, token)] == [["after", token]], err
    assert marked_lost(lines) == 0, err


def thread_blocked_in_execve(thread_exec: Path, how: str) -> tuple[subprocess.Popen, int, int]:
    """thread_exec blocked HOW: its pid and the tid of its thread blocked inside execve."""
    program = subprocess.Popen(
        [thread_exec, "blocked", how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = program.stdout.readline().split()
    if first[:1] != ["blocked"]:
        program.wait(timeout=60)
        err = program.stderr.read()
        if "userfaultfd" in err and program.returncode == 2:
            pytest.skip(f"no userfaultfd here: {err.strip()}")
        pytest.fail(f"thread_exec blocked {how}: {first} {err}")
    return program, int(first[1]), int(first[2])


def failed_of(lines: list[str], tid: int) -> list[dict]:
    return [e for e in json_lines(lines) if e["type"] == "exec_failed" and e["pid"] == tid]


@pytest.mark.kernel
@pytest.mark.parametrize("how", ["exit", "exec", "kill"])
def test_a_thread_killed_inside_execve_is_recorded(loaded, thread_exec, how):
    """A thread blocked inside execve (reading an argument on a userfaultfd page
    nobody fills) before the reader starts, then killed by its process's
    exit_group, by its leader's exec (de_thread), or by SIGKILL: the kernel takes
    it through its syscall's exit with an error, and the reader, though it was not
    there when the exec began, records one failed exec of /bin/true."""
    cli = loaded
    ids = failed_program_ids(cli.pin_dir)
    program, pid, tid = thread_blocked_in_execve(thread_exec, how)
    try:
        reader = failed_reader(cli, ids)
        try:
            if how == "kill":
                program.kill()
            else:
                program.stdin.write("go\n")
                program.stdin.close()
            program.wait(timeout=60)
            lines, err = lines_until(reader, lambda ls: failed_of(ls, tid))
        finally:
            reader.kill()
            reader.wait()
    finally:
        program.kill()
        program.wait()
    assert program.returncode == (-signal.SIGKILL if how == "kill" else 0)
    (mine,) = failed_of(lines, tid)
    assert (mine["tgid"], mine["filename"], mine["argv"][:1]) == (pid, "/bin/true", ["true"]), err


# --- 2. run inside a PID namespace ---------------------------------------------

SCRIPT = "/bin/true a; /bin/true b; exit 3"


def check_followed_from_a_namespace(code: int, out: str, err: str, sh: str) -> None:
    """`run --json -- SH -c SCRIPT` run as pid 1 of a PID namespace: CMD's status,
    its three processes, and rows and a tree of exactly them."""
    assert code == 3, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["exit_code"] == 3
    assert (summary["processes"], summary["by_name"]) == (3, {"sh": 1, "true": 2}), summary
    assert (summary["lost_records"], summary["unfollowed"], summary["running"]) == (0, 0, [])
    rows = json_lines(err.splitlines())
    # CMD's fork by run is the first record: run is pid 1 there, sh its child.
    cmd = rows[0]
    assert (cmd["type"], cmd["ns_ppid"]) == ("fork", 1), rows
    forks = [r for r in rows if r["type"] == "fork"]
    assert [r["ppid"] for r in forks[1:]] == [cmd["tgid"]] * 2, rows
    tree = {r["tgid"] for r in forks}
    assert all(r["tgid"] in tree and r["ns_pid"] > 1 for r in rows), rows
    execs = [r["argv"] for r in rows if r["type"] == "exec"]
    assert execs == [[sh, "-c", SCRIPT], ["/bin/true", "a"], ["/bin/true", "b"]], rows
    exits = {r["tgid"]: r["exit_code"] for r in rows if r["type"] == "exit"}
    assert exits == {cmd["tgid"]: 3, forks[1]["tgid"]: 0, forks[2]["tgid"]: 0}, rows
    # The tree's root is CMD as the records number it (the host's pid).
    root = summary["tree"]
    assert (root["pid"], root["exit_code"]) == (cmd["tgid"], 3), root
    assert [c["argv"] for c in root["children"]] == [["/bin/true", "a"], ["/bin/true", "b"]]


def run_in_a_pid_namespace(script: str) -> subprocess.CompletedProcess:
    """`run --json -- sh -c SCRIPT` as the namespace's init, its /proc its own."""
    return subprocess.run(
        ["unshare", "-fp", "--mount-proc", *CLI, "run", "--json", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=SLOW,
        cwd=ROOT,
    )


@pytest.mark.kernel
def test_run_follows_cmd_from_inside_a_pid_namespace(bpf):
    r = run_in_a_pid_namespace(SCRIPT)
    check_followed_from_a_namespace(r.returncode, r.stdout, r.stderr, "sh")


@pytest.mark.kernel
def test_run_lists_what_still_runs_from_inside_a_pid_namespace(bpf):
    """What CMD left running is named by its pid in the records (the host's), with
    the name its exec record gave it: the /proc mounted there numbers processes
    otherwise.  (Run is the namespace's init: its end kills the sleep.)"""
    wait_exec = 'until [ "$(cat /proc/$!/comm)" = sleep ]; do :; done'
    script = f"sleep 30 >/dev/null 2>&1 & {wait_exec}; exit 4"
    r = run_in_a_pid_namespace(script)
    assert r.returncode == 4, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    rows = json_lines(r.stderr.splitlines())
    sleep = next(row for row in rows if row["type"] == "exec" and row["comm"] == "sleep")
    assert summary["running"] == [{"pid": sleep["tgid"], "comm": "sleep"}], summary


def _host_paths() -> list[str]:
    """podman -v options that give a busybox container this Python, its venv, the
    package and the repository, read-only, at the paths they have here."""
    mounts = {"/usr": "/usr"}
    for top in ("/lib", "/lib64"):  # the ELF interpreter and libc, merged into /usr or not
        if os.path.exists(top):
            mounts[os.path.realpath(top)] = top
    package = Path(procmon_ctl.__file__).resolve().parents[1]
    for path in (sys.base_prefix, sys.prefix, package, ROOT):
        real = os.path.realpath(path)
        if not any(real == d or real.startswith(d.rstrip("/") + "/") for d in mounts.values()):
            mounts[real] = real
    return [arg for src, dst in mounts.items() for arg in ("-v", f"{src}:{dst}:ro")]


def test_run_follows_cmd_inside_a_podman_container(bpf):
    require_podman()
    r = run_container(
        [sys.executable, "-m", "procmon_ctl", "run", "--json", "--", "/bin/sh", "-c", SCRIPT],
        check=False,
        podman_args=["--privileged", "--workdir", str(ROOT), *_host_paths()],
    )
    check_followed_from_a_namespace(r.returncode, r.stdout, r.stderr, "/bin/sh")
