"""`events --failed`: execs that failed, with their errno, path and arguments, from
the execve/execveat syscall tracepoints, attached only while such a reader runs.

Real failed execs of real processes: a child of the test tries a missing file
(ENOENT) or a file without an execute bit (EACCES), by execve and by execveat."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CLI, bpftool_json, lines_until, pin_tree, wait_reading

from procmon_ctl.errors import EXIT_STATE
from procmon_ctl.instance.pins import FAILED_EXEC_PROGRAMS
from procmon_ctl.process.cgroups import v2_root
from procmon_ctl.views.schema import EventLine, ExecFailedEvent

TRACEPOINTS = {"sys_exit_execve", "sys_exit_execveat"}
# `events --json` with the Python formatter (the C one is used whenever it is built).
PYTHON_JSON = (
    "from procmon_ctl.views import json_native; json_native._load = lambda: (None, 'off'); "
    "from procmon_ctl.cli import main; main()"
)


def wait_until(cond: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def failed_program_ids(pin_dir: Path) -> set[int]:
    return {
        bpftool_json("prog", "show", "pinned", str(pin_dir / "progs" / name))["id"]
        for name in FAILED_EXEC_PROGRAMS
    }


def attachments(prog_ids: set[int], pid: int | None = None) -> list[dict]:
    """The perf events (of process `pid`, or of any) that run one of prog_ids."""
    return [
        p
        for p in bpftool_json("perf", "show")
        if p.get("prog_id") in prog_ids and (pid is None or p["pid"] == pid)
    ]


def failed_reader(cli, prog_ids: set[int]) -> subprocess.Popen:
    """`events --failed --json`, piped, once its programs are attached."""
    reader = cli.popen(
        "events",
        "--failed",
        "--json",
        "--duration",
        "300",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_attached(prog_ids, reader)
    except BaseException:
        reader.kill()
        reader.wait()
        raise
    return reader


def wait_attached(prog_ids: set[int], reader: subprocess.Popen) -> None:
    def ready() -> bool:
        assert reader.poll() is None, f"the reader exited with {reader.returncode}"
        found = attachments(prog_ids, reader.pid)
        return {p["tracepoint"] for p in found} == TRACEPOINTS and len(found) == len(TRACEPOINTS)

    wait_until(ready, "the reader to attach the two failed-exec programs")


def failed_exec(path: str, argv: list[str]) -> int:
    """A child that tries execve(path, argv) and exits 0 when it fails; its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(path, argv)
        except OSError:
            os._exit(0)
        os._exit(1)  # not reached
    assert os.waitpid(pid, 0)[1] == 0, f"exec of {path} did not fail"
    return pid


def failed_execveat(dirfd: int, path: str, argv: list[str], flags: int = 0) -> int:
    """The same with execveat(dirfd, path, argv, envp, flags) (glibc >= 2.34)."""
    libc = ctypes.CDLL(None, use_errno=True)
    execveat = libc.execveat
    execveat.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    args = (ctypes.c_char_p * (len(argv) + 1))(*[a.encode() for a in argv], None)
    env = (ctypes.c_char_p * 1)(None)
    pid = os.fork()
    if pid == 0:
        execveat(dirfd, path.encode(), args, env, flags)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0, f"execveat of {path!r} did not fail"
    return pid


def failed_exec_at_page_end(path: str, argv: list[str]) -> int:
    """failed_exec with argv's pointer array (its NULL included) in the last bytes
    of a page whose next page is not mapped (a read of pointers past its end
    faults), and the first argument starting 4 bytes before the end of the page
    before it (a read of that page alone does not hold it whole)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.execve.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    page = os.sysconf("SC_PAGE_SIZE")
    strings = b"".join(a.encode() + b"\0" for a in argv)
    pid = os.fork()
    if pid == 0:
        try:
            # PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
            base = libc.mmap(None, 3 * page, 3, 0x22, -1, 0)
            libc.munmap(base + 2 * page, page)
            at = base + page - 4
            ctypes.memmove(at, strings, len(strings))
            pointers, offset = [], 0
            for a in argv:
                pointers.append(at + offset)
                offset += len(a.encode()) + 1
            array = base + 2 * page - 8 * (len(argv) + 1)
            (ctypes.c_uint64 * (len(argv) + 1)).from_address(array)[:] = [*pointers, 0]
            libc.execve(path.encode(), array, (ctypes.c_char_p * 1)(None))
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0, f"exec of {path} did not fail"
    return pid


def our_cgroup_path() -> str:
    """This process's cgroup v2 path, as /proc shows it (and records carry it)."""
    text = Path("/proc/self/cgroup").read_text()
    return next(ln for ln in text.splitlines() if ln.startswith("0::"))[3:]


def our_cgroup() -> Path:
    return v2_root() / our_cgroup_path().lstrip("/")


def failed_lines(lines: list[str], pid: int) -> list[dict]:
    found = []
    for line in lines:
        if line.startswith("{"):
            event = json.loads(line)
            if event["type"] == "exec_failed" and event["pid"] == pid:
                found.append(event)
    return found


def our_comm() -> str:
    """What a child of ours that failed to exec is called: our own name."""
    return Path("/proc/self/comm").read_text().rstrip("\n")


def not_executable(tmp_path: Path) -> Path:
    path = tmp_path / "not-executable"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o644)  # root too needs an execute bit to exec a file
    return path


@pytest.fixture
def loaded(cli):
    cli("load")
    return cli


def audit_ids() -> dict[str, int]:
    """This process's login uid and session id as its records carry them: absent
    where unset (or the kernel has no audit)."""
    ids = {}
    for name in ("loginuid", "sessionid"):
        try:
            value = int(Path(f"/proc/self/{name}").read_text())
        except FileNotFoundError:
            continue
        if value != 0xFFFFFFFF:
            ids[name] = value
    return ids


@pytest.mark.kernel
def test_failed_execs_show_errno_path_and_argv(loaded, tmp_path):
    """A missing file (ENOENT) and a file without an execute bit (EACCES), each with
    its path and the argv tried exactly (an empty argument kept); more than 128
    arguments, an argument longer than the instance keeps (4096 bytes) and an argv
    whose pointers end a mapping and whose first argument spans two pages, each
    kept as far as it can be; the programs are
    attached only while the reader runs."""
    cli = loaded
    ids = failed_program_ids(cli.pin_dir)
    assert not attachments(ids)
    missing = str(tmp_path / "no-such-program")
    denied = not_executable(tmp_path)
    reader = failed_reader(cli, ids)
    try:
        enoent = failed_exec(missing, ["no-such-program", "one", "", "two words"])
        eacces = failed_exec(str(denied), ["not-executable", ""])
        many = failed_exec(missing, [f"a{i}" for i in range(130)])
        long = failed_exec(missing, ["long", "x" * 5000])
        at_end = failed_exec_at_page_end(missing, ["across-pages", "b", "", "d"])
        pids = (enoent, eacces, many, long, at_end)
        lines, err = lines_until(reader, lambda ls: all(failed_lines(ls, p) for p in pids))
    finally:
        reader.kill()
        reader.wait()
    assert reader.returncode == 0, err
    shared = {"ppid": os.getpid(), "uid": 0, "euid": 0, "egid": 0}
    shared.update(audit_ids(), comm=our_comm(), thread=False)
    shared.update(cgroup_id=our_cgroup().stat().st_ino, cgroup=our_cgroup_path())
    assert failed_lines(lines, enoent) == [
        {
            "type": "exec_failed",
            "time": failed_lines(lines, enoent)[0]["time"],
            "ts_ns": failed_lines(lines, enoent)[0]["ts_ns"],
            "pid": enoent,
            "tgid": enoent,
            **shared,
            "filename": missing,
            "argv": ["no-such-program", "one", "", "two words"],
            "argv_truncated": False,
            "argc": 4,
            "errno": 2,
            "error": "ENOENT",
        }
    ]
    (line,) = failed_lines(lines, eacces)
    assert line["filename"] == str(denied) and line["argv"] == ["not-executable", ""], line
    assert (line["errno"], line["error"], line["argc"]) == (13, "EACCES", 2), line
    (line,) = failed_lines(lines, many)
    assert line["argv"] == [f"a{i}" for i in range(128)] and line["argv_truncated"], line
    (line,) = failed_lines(lines, long)
    assert line["argv"] == ["long", "x" * (4096 - len("long") - 1)] and line["argv_truncated"]
    (line,) = failed_lines(lines, at_end)
    assert line["argv"] == ["across-pages", "b", "", "d"] and not line["argv_truncated"], line
    for text in lines:
        if '"exec_failed"' in text:
            assert isinstance(EventLine.model_validate_json(text).root, ExecFailedEvent)
    # Its end detached them: nothing pinned, nothing attached.
    wait_until(lambda: not attachments(ids), "the programs to be detached")
    assert not (cli.pin_dir / "links").exists()


def test_execveat_failures(loaded, tmp_path):
    """execveat: a path relative to a directory fd, and an fd (AT_EMPTY_PATH) of a
    file that is not executable; the filename is what the caller passed."""
    cli = loaded
    ids = failed_program_ids(cli.pin_dir)
    denied = not_executable(tmp_path)
    dirfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    filefd = os.open(denied, os.O_RDONLY)
    reader = failed_reader(cli, ids)
    try:
        relative = failed_execveat(dirfd, "missing-here", ["missing-here", "x"])
        empty_path = failed_execveat(filefd, "", ["by-fd"], 0x1000)  # AT_EMPTY_PATH
        lines, err = lines_until(
            reader, lambda ls: failed_lines(ls, relative) and failed_lines(ls, empty_path)
        )
    finally:
        reader.kill()
        reader.wait()
        os.close(dirfd)
        os.close(filefd)
    assert reader.returncode == 0, err
    (line,) = failed_lines(lines, relative)
    assert (line["filename"], line["argv"], line["error"]) == (
        "missing-here",
        ["missing-here", "x"],
        "ENOENT",
    ), line
    (line,) = failed_lines(lines, empty_path)
    assert (line["filename"], line["argv"], line["error"]) == ("", ["by-fd"], "EACCES"), line


def test_without_failed_nothing_is_attached(loaded, tmp_path):
    """ "Without the option they cost nothing": a reader without --failed attaches
    none of the two programs, and a failed exec then leaves no record."""
    cli = loaded
    cli("attach")
    ids = failed_program_ids(cli.pin_dir)
    reader = cli.popen(
        "events", "--json", "--duration", "300", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_reading(cli.pin_dir, reader)
        assert not attachments(ids), "programs attached without --failed"
        assert not [p for p in bpftool_json("perf", "show") if p["pid"] == reader.pid]
        tried = failed_exec(str(tmp_path / "missing"), ["missing"])
        # A marker after it: once its fork shows, the failed exec's record would have too.
        marker = subprocess.Popen(["true"])
        marker.wait()
        lines, err = lines_until(
            reader, lambda ls: any(f'"pid":{marker.pid},' in x and '"fork"' in x for x in ls)
        )
    finally:
        reader.kill()
        reader.wait()
    assert reader.returncode == 0, err
    assert not [x for x in lines if "exec_failed" in x], "exec_failed lines without --failed"
    assert any(f'"pid":{tried},' in x for x in lines), "the child's own fork is there"
    for prog in bpftool_json("prog", "show"):
        if prog["id"] in ids:
            assert prog.get("run_cnt", 0) == 0, prog


def leave_failed_records(cli, tmp_path: Path) -> tuple[int, str]:
    """A named --failed reader attached, stopped, a failed exec, the reader killed:
    the exec's record stays in its ring, for its next run.  SIGKILL detaches the
    programs (no pin, no link outlives the reader).  Returns the pid and the path
    tried."""
    ids = failed_program_ids(cli.pin_dir)
    before = pin_tree(cli.pin_dir)
    reader = cli.popen(
        "events", *LEFT, "--failed", "--json", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_attached(ids, reader)
        reader.send_signal(signal.SIGSTOP)
        path = str(tmp_path / "left-behind")
        pid = failed_exec(path, ["left-behind", "a", "", "b c"])
    finally:
        reader.kill()
        reader.wait()
    assert reader.returncode == -signal.SIGKILL
    wait_until(lambda: not attachments(ids), "SIGKILL of the reader to detach the programs")
    # Nothing of the failed-exec programs: only the named reader's ring is pinned.
    made = {p for p in pin_tree(cli.pin_dir) - before if not p.startswith("readers")}
    assert not made, f"the reader pinned {made}"
    return pid, path


# The named reader whose ring keeps what it did not read.
LEFT = ("--name", "left")

MODES = {
    "json": ("--json",),
    "json-python": ("--json",),
    "raw": ("--raw",),
    "table": (),
    "wide": ("--wide",),
}


@pytest.mark.parametrize("failed", [False, True], ids=["without", "with-failed"])
@pytest.mark.parametrize("mode", list(MODES))
def test_records_left_in_the_ring(loaded, tmp_path, mode, failed):
    """exec_failed records a named --failed reader left in its ring are shown by its
    next run only with --failed, in every output mode (and both JSON formatters)."""
    cli = loaded
    pid, path = leave_failed_records(cli, tmp_path)
    failed_arg = ["--failed"] if failed else []
    args = ["events", *LEFT, *MODES[mode], "--duration", "1", *failed_arg]
    if mode == "json-python":
        r = subprocess.run(
            [sys.executable, "-c", PYTHON_JSON, *args],
            capture_output=True,
            text=True,
            env=cli.env,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        out = r.stdout
    else:
        out = cli(*args).stdout
    if not failed:
        assert path not in out and "exec_failed" not in out and "exec!" not in out, out
        return
    mine = [x for x in out.splitlines() if path in x]
    assert len(mine) == 1, out
    (line,) = mine
    if mode.startswith("json"):
        event = json.loads(line)
        assert (event["pid"], event["argv"], event["error"]) == (
            pid,
            ["left-behind", "a", "", "b c"],
            "ENOENT",
        )
    elif mode == "raw":
        fields = ["exec!", str(pid), str(pid), str(os.getpid()), "0", our_comm()]
        assert line.split()[:6] == fields, line
        assert line.endswith(f"ENOENT: {path} left-behind a '' 'b c'"), line
    else:
        fields = line.split()[1:] if mode == "wide" else line.split()  # --wide: TIME first
        assert fields[:2] == [str(pid), str(os.getpid())], line
        assert line.endswith(f"ENOENT: {path} left-behind a '' 'b c'"), line
        assert our_comm() in line


def test_failed_needs_the_programs(loaded):
    """An instance without the failed-exec programs (loaded by an older object):
    one line, exit 3, nothing attached, no output."""
    cli = loaded
    (cli.pin_dir / "progs" / "handle_execveat_exit").unlink()
    r = cli("events", "--failed", "--duration", "1", check=False)
    assert r.returncode == EXIT_STATE, r.stderr
    assert r.stderr.count("\n") == 1 and "failed-exec programs" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    # Without --failed the instance is still read.
    assert cli("events", "--duration", "0.2").returncode == 0


def test_failed_is_an_events_option_only(loaded):
    """`run` has no --failed: typer's own one-line usage error."""
    r = subprocess.run(
        [*CLI, "run", "--failed", "--", "true"],
        capture_output=True,
        text=True,
        env=loaded.env,
        timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
