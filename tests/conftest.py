"""Shared fixtures.  Kernel tests run for real: root, bpffs, the built object.

Every test that touches BPF gets its own pin directory, removed afterwards even
when the test fails; in CI (CI set) a machine that cannot run BPF fails the
suite instead of skipping."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import builds
import pytest

from procmon_ctl.instance.attach import attach as attach_programs
from procmon_ctl.instance.load import load as load_instance
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.pins import PROGRAMS
from procmon_ctl.instance.readers import ReaderSlots
from procmon_ctl.instance.startup import find_object
from procmon_ctl.process.cgroups import v2_root
from procmon_ctl.views import json_native

ROOT = Path(__file__).resolve().parents[1]
OBJECT = ROOT / "procmon_ctl" / "data" / "process_monitor.bpf.o"
CLI = [sys.executable, "-m", "procmon_ctl"]


def _bpf_problem() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "kernel without BTF (/sys/kernel/btf/vmlinux)"
    if not OBJECT.exists():
        return f"{OBJECT} not built (run make)"
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        r = subprocess.run(
            ["mount", "-t", "bpf", "-o", "mode=700", "bpf", "/sys/fs/bpf"], capture_output=True
        )
        if r.returncode != 0:
            return "cannot mount bpffs"
    r = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True)
    if r.returncode != 0:
        return f"bpftool cannot list programs: {r.stderr.decode().strip()}"
    return None


# Set in a test's own process by the private_bpffs marker (see pytest_pyfunc_call).
INSIDE_PRIVATE_BPFFS = "PROCMON_TEST_PRIVATE_BPFFS"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test marked private_bpffs runs in a pytest of its own, in a mount namespace
    of its own with a fresh bpffs on /sys/fs/bpf and a fresh /run/procmon-ctl: what it
    finds at the top of bpffs is what its commands made, whatever other users of the
    machine pin meanwhile.  This process only reports how that run went."""
    if not pyfuncitem.get_closest_marker("private_bpffs") or os.environ.get(INSIDE_PRIVATE_BPFFS):
        return None
    problem = _bpf_problem()
    if problem:
        pytest.fail(f"a private bpffs needs BPF, which is unusable here: {problem}")
    Path("/run/procmon-ctl").mkdir(mode=0o700, exist_ok=True)
    r = subprocess.run(
        [
            "unshare", "-m", "--propagation", "private", "sh", "-euc",
            "mount -t bpf -o mode=700 bpf /sys/fs/bpf; "
            'mount -t tmpfs -o mode=700 tmpfs /run/procmon-ctl; exec "$@"', "sh",
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
            pyfuncitem.nodeid,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, INSIDE_PRIVATE_BPFFS: "1"},
    )  # fmt: skip
    report = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0 and "1 passed" in r.stdout, report
    return True


@pytest.fixture(scope="session")
def bpf() -> None:
    problem = _bpf_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the kernel tests, but BPF is unusable here: {problem}")
        pytest.skip(f"BPF unusable: {problem}")


def remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            (Path(dirpath) / name).unlink(missing_ok=True)
        for name in dirnames:
            (Path(dirpath) / name).rmdir()
    path.rmdir()


def bpftool_json(*args: str):
    out = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout) if out.stdout.strip() else []


def in_private_mount_ns(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A shell script (`sh -eu`, `$CLI` is procmon-ctl) in a mount namespace of its
    own: what it mounts or unmounts is invisible to the host and goes with it."""
    if not shutil.which("unshare"):
        pytest.skip("unshare not installed")
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-euc", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "CLI": " ".join(CLI)},
    )


def pin_tree(path: Path) -> set[str]:
    """Every file and directory below path, relative, plus path itself if it exists."""
    if not path.exists():
        return set()
    found = {"."}
    for dirpath, dirnames, filenames in os.walk(path):
        rel = Path(dirpath).relative_to(path)
        found |= {str(rel / n) for n in dirnames + filenames}
    return found


def reader_state(pin_dir: Path, pid: int):
    """The reader slot process `pid` reads, as `readers` shows it (None: none)."""
    for state in ReaderSlots(PinnedInstance.at(pin_dir)).states():
        if state.pid == pid:
            return state
    return None


def wait_reading(pin_dir: Path, reader: subprocess.Popen, timeout: float = 60) -> None:
    """Poll until `reader` (a procmon-ctl process) has its reader slot: from then on
    every record it asks for goes into its ring.  Fails early if it ended.  A light
    look (two maps) every 50 ms: in an emulated guest a heavier one slows the reader."""
    slots = ReaderSlots(PinnedInstance.at(pin_dir))
    deadline = time.monotonic() + timeout
    while slots.slot_of(reader.pid) is None:
        assert reader.poll() is None, f"the reader ended ({reader.returncode}) before reading"
        assert time.monotonic() < deadline, "the reader did not take a slot"
        time.sleep(0.05)


def stop_reading(pin_dir: Path, reader: subprocess.Popen) -> None:
    """SIGSTOP `reader` once it has its slot and is out of the slots lock it took the
    slot under (sent while this process holds that lock): stopped inside, it would
    keep every other reader from taking a slot until it runs again."""
    wait_reading(pin_dir, reader)
    with PinnedInstance.at(pin_dir).slots_lock():
        reader.send_signal(signal.SIGSTOP)


# Kept for the tests written before reader slots: a --threads reader streams
# thread forks from the moment it has its slot.
def wait_threads_streamed(pin_dir: Path, reader: subprocess.Popen) -> None:
    wait_reading(pin_dir, reader)


def wait_drained(pin_dir: Path, reader: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until `reader` has written out everything its ring holds (it commits a
    record only once its line is written), or it has ended."""
    slots = ReaderSlots(PinnedInstance.at(pin_dir))
    deadline = time.monotonic() + timeout
    while reader.poll() is None:
        slot = slots.slot_of(reader.pid)
        if slot is None or slots.waiting(slot) == 0:
            return
        assert time.monotonic() < deadline, "the reader did not catch up"
        time.sleep(0.05)


class Reading:
    """What a reader started by Cli.reading() wrote, once it has ended."""

    stdout = stderr = ""
    returncode: int | None = None

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def our_program_ids(pin_dir: Path) -> set[int]:
    ids = set()
    progs = pin_dir / "progs"
    if progs.exists():
        for pin in progs.iterdir():
            ids.add(bpftool_json("prog", "show", "pinned", str(pin))["id"])
    return ids


@pytest.fixture
def pin_dir(bpf) -> Path:
    """A fresh pin directory of this test's own; whatever is left in it is removed
    afterwards, and the test fails if its programs outlive that."""
    path = Path(f"/sys/fs/bpf/procmon-test-{uuid.uuid4().hex[:10]}")
    prog_ids: set[int] = set()
    yield path
    state_files = state_files_of(path)
    try:
        prog_ids = our_program_ids(path)
    finally:
        remove_tree(path)
        # Nothing of this test runs any more: its lock files and pin records can go
        # too, with those of the pin dirs it used below its own (nobody else's).
        for state_file in state_files:
            state_file.unlink(missing_ok=True)
    assert not programs_left(prog_ids), f"programs {prog_ids} outlived their pins"


def state_files_of(path: Path) -> list[Path]:
    """The files in /run/procmon-ctl (locks, record) of a pin dir and of every
    directory below it."""
    dirs = [path]
    if path.is_dir() and not path.is_symlink():
        dirs += [Path(top) / name for top, names, _ in os.walk(path) for name in names]
    return [f for d in dirs for f in PinnedInstance.at(d).state_paths()]


def programs_left(prog_ids: set[int], wait: float = 5.0) -> set[int]:
    """Which of prog_ids the kernel still lists.  Programs go away once no pin or fd
    holds them, after an RCU grace period: give the kernel a moment."""
    deadline = time.monotonic() + wait
    while True:
        left = {p["id"] for p in bpftool_json("prog", "show")} & prog_ids
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class Cli:
    def __init__(self, pin_dir: Path):
        self.pin_dir = pin_dir
        self.env = {**os.environ, "PROCMON_PIN_DIR": str(pin_dir)}

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 60,
        env: dict | None = None,
        input: str | None = None,
    ):
        result = subprocess.run(
            [*CLI, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"procmon-ctl {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def json(self, *args: str):
        return json.loads(self(*args).stdout)

    def json_lines(self, *args: str) -> list[dict]:
        return [json.loads(line) for line in self(*args).stdout.splitlines() if line.strip()]

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([*CLI, *args], env=self.env, text=True, **kw)

    @contextlib.contextmanager
    def reading(self, *args: str, check: bool = True, timeout: float = 120) -> Iterator[Reading]:
        """A reader (`procmon-ctl ARGS`, e.g. events --json) started before the with
        block's work, as a reader must be to see it: yields once it has its slot; on
        leaving, waits until it has written everything its ring holds (unless it
        ended by itself: --count, --duration), stops it with SIGINT and fills in the
        Reading (with `check`, failing unless it exited 0)."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([*CLI, *args], stdout=out, stderr=err, env=self.env)
            result = Reading(proc)
            try:
                wait_reading(self.pin_dir, proc)
                yield result
                wait_drained(self.pin_dir, proc)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                for f, field in ((out, "stdout"), (err, "stderr")):
                    f.seek(0)
                    setattr(result, field, f.read().decode(errors="replace"))
                result.returncode = proc.returncode
        if check and result.returncode != 0:
            raise AssertionError(
                f"procmon-ctl {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )


def lines_until(proc: subprocess.Popen, done, timeout: float = 120) -> tuple[list[str], str]:
    """Read proc's stdout (a pipe) until done(lines) holds, then stop it with SIGINT
    and take the rest: (every line, stderr).  For readers started with a --duration
    long enough for the slowest kernel of the matrix (qemu without KVM), which
    should not make the test that long on a fast one."""
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
            # Only whole lines: a long record can arrive in two reads.
            whole = data[: data.rfind(b"\n") + 1]
            if done(whole.decode(errors="replace").splitlines()):
                break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    # Readers started without text=True hand back bytes here (the last write after
    # SIGINT), the others str.
    if isinstance(rest, bytes):
        rest = rest.decode(errors="replace")
    if isinstance(err, bytes):
        err = err.decode(errors="replace")
    text = data.decode(errors="replace") + (rest or "")
    return text.splitlines(), err


@pytest.fixture
def cli(pin_dir) -> Cli:
    return Cli(pin_dir)


@pytest.fixture
def attached(cli) -> Cli:
    """Loaded and attached (a new instance: its ring holds nothing yet).  Set up
    through the library, in this process: `load` and `attach` as commands are what
    test_workflow and test_bad_input test (on every kernel of the matrix); here they
    are the set-up only, and each start of the CLI costs seconds in the matrix's
    emulated guests."""
    layout = PinnedInstance.at(cli.pin_dir)
    load_instance(layout, find_object())
    attach_programs(layout, list(PROGRAMS))
    return cli


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_python() -> str | None:
    """An interpreter uid 65534 can run with our packages: the venv's own python may
    sit under /root (mode 0700); Debian's /usr/bin/python3 of the same version can
    import the venv's site-packages (see nobody_env)."""
    if not shutil.which("setpriv"):
        return None
    for exe in (sys.executable, "/usr/bin/python3"):
        r = subprocess.run(
            [*AS_NOBODY, exe, "-c", "import sys; print(tuple(sys.version_info[:2]))"],
            capture_output=True,
            text=True,
            cwd="/",
        )
        if r.returncode == 0 and r.stdout.strip() == str(tuple(sys.version_info[:2])):
            return exe
    return None


def nobody_env(**extra: str) -> dict:
    return {
        "PATH": "/usr/sbin:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}",
        **extra,
    }


def fork_processes(n: int) -> list[int]:
    """Fork n children of this process that exit at once; returns their pids.  By
    vfork() (tests/programs/libforks.c): each is a process as a fork makes one, but
    os.fork() copied this process's page tables each time, 16 ms a fork once the
    suite had grown to 480 MB (2,000 forks took 45 s of a CI run)."""
    pids = (ctypes.c_int * n)()
    made = _forks_library().fork_exit_children(n, pids)
    assert made == n, f"vfork failed after {made} children: {os.strerror(ctypes.get_errno())}"
    return list(pids)


@functools.cache
def _forks_library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(builds.build(ROOT / "tests" / "programs" / "libforks.c")), use_errno=True)
    lib.fork_exit_children.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.fork_exit_children.restype = ctypes.c_int
    return lib


def build_program(tmp_path_factory, source: Path) -> Path:
    """A C program of the tests (or a BPF object, for *.bpf.c), from tests/builds.py's
    cache: the kernel matrix's guests find it built on the host."""
    try:
        return builds.build(source, tmp_path_factory.getbasetemp())
    except builds.NoCompiler as e:
        pytest.skip(str(e))


build_bpf_object = build_program


@pytest.fixture(scope="session")
def native_lib():
    """The C JSON writer (libprocmon_json.so), which `make` builds."""
    lib = json_native.library()
    assert lib is not None, f"{json_native.LIBRARY} is not built: run `make`"
    return lib


@pytest.fixture(scope="session")
def storm(tmp_path_factory) -> Path:
    """scripts/bench/storm.c built for the tests: forks or threads by the thousand."""
    return build_program(tmp_path_factory, ROOT / "scripts" / "bench" / "storm.c")


@pytest.fixture(scope="session")
def exit_modes(tmp_path_factory) -> Path:
    """tests/programs/exit_modes.c: multi-threaded processes that end in awkward ways."""
    return build_program(tmp_path_factory, ROOT / "tests" / "programs" / "exit_modes.c")


@pytest.fixture(scope="session")
def usage_work(tmp_path_factory) -> Path:
    """tests/programs/usage_work.c: processes of known cost that wait before they end."""
    return build_program(tmp_path_factory, ROOT / "tests" / "programs" / "usage_work.c")


def bpf_held_by(pid: int) -> dict[str, set[int]]:
    """The BPF objects a process holds through its fds: {"prog": ids, "link": ids,
    "map": ids}, from /proc/PID/fdinfo (what an unpinned instance is made of)."""
    held: dict[str, set[int]] = {"prog": set(), "link": set(), "map": set()}
    fields = {
        "anon_inode:bpf-prog": "prog",
        "anon_inode:bpf_link": "link",
        "anon_inode:bpf-map": "map",
    }
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return held
    for fd in fds:
        try:
            kind = fields.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
            if kind is None:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        held[kind].add(int(info[f"{kind}_id"]))
    return held


def bpf_ids_alive(kind: str, ids: set[int], wait: float = 5.0) -> set[int]:
    """Which of these prog/link/map ids the kernel still lists, after giving it a
    moment to free what nothing holds any more (RCU, deferred work)."""
    deadline = time.monotonic() + wait
    while True:
        left = {o["id"] for o in bpftool_json(kind, "show")} & ids
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


# -- a cgroup of the test's own ---------------------------------------------------


def move_out_and_remove(cgroup: Path) -> None:
    """Every process left in `cgroup` back to the root, then the cgroup removed."""
    root = v2_root()
    deadline = time.monotonic() + 10
    while cgroup.exists():
        for pid in (cgroup / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # gone meanwhile
                (root / "cgroup.procs").write_text(pid)
        try:
            cgroup.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def test_cgroup() -> Iterator[Path]:
    """A cgroup of this test's own, right below the cgroup v2 root."""
    path = v2_root() / f"procmon-test-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    try:
        yield path
    finally:
        move_out_and_remove(path)


def in_cgroup(cgroup: Path, script: str) -> list[str]:
    """`sh -c script`, moved into `cgroup` before it runs anything."""
    return ["sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && {script}']


def shown(cgroup: Path) -> str:
    """A cgroup's path as records and /proc/PID/cgroup show it."""
    return "/" + str(cgroup.relative_to(v2_root()))
