#!/usr/bin/env python3
"""The kernel matrix: `pytest -m kernel` on each supported Debian kernel, in a VM.

Each series is a stock Debian kernel package, looked up by name in Debian's own
registry through a private apt configuration (nothing in /etc/apt changes):

  5.10   bullseye   linux-image-5.10.0-N-amd64-unsigned
  6.1    bookworm   linux-image-6.1.0-N-amd64-unsigned
  6.12   bookworm   linux-image-6.12.N+deb12-amd64-unsigned   (bookworm-security; an
                    older build sits in bookworm-backports)
  host   the running kernel, tested directly (there is no package for it)

The newest revision is chosen when a series is first fetched; the package is
unpacked with `dpkg -x` into build/kernels/<series>/root and kept there, so later
runs download nothing (`--refresh` looks for a newer revision).

Each kernel boots under qemu's TCG through virtme-ng (`vng`), with the host's
root shared read-only over 9p and the kernel's own modules linked into the guest
by vng (9p and virtio are modules in Debian's kernels).  In the guest, as root,
from the repository, the guest script (written into the results directory)
mounts bpffs and tracefs, then runs the project's pytest on the host's .venv and
built BPF object, writing its output and a JUnit report into
build/kernels/results/<series>/, the one directory the guest may write.  The guest
gets only the test files that hold kernel-marked tests (collected on the host first)
and no pytest plugin: collecting the whole suite cost ~45 s per kernel there.

With --suite the host's whole suite (`pytest -v`, every test) is one more run, its
output on stdout; with --jobs N, N runs go at once (a VM under TCG keeps about one
core busy), the longest first.  `make test` runs `--suite --jobs 2 5.10 6.1 6.12`.
At the end: one line per run with its verdict, then one with its time against its
limit (at most half of it leaves room for a slower machine).

A kernel passes when its VM finished within the time limit, the guest ran the
expected kernel release, pytest exited 0, the JUnit report shows no failure or
error, and at least one test passed.  Anything else fails the run (exit 1).
The VM's whole process group is killed on timeout, on failure and when the
runner itself is interrupted or terminated.

Usage (as root, after `make`):  kernels.py [SERIES ...] [--timeout S] [--suite]
                                [--suite-timeout S] [--jobs N] [--refresh]
                                [--fetch-only] [-- EXTRA PYTEST ARGS]"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "kernels"
APT_DIR = BUILD / "apt"
RESULTS = BUILD / "results"
VENV_BIN = REPO / ".venv" / "bin"
OBJECT = REPO / "procmon_ctl" / "data" / "process_monitor.bpf.o"

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The hosts of the machine's own sources; bullseye is still served there.
SOURCES = [
    ("http://deb.debian.org/debian", "bullseye"),
    ("http://deb.debian.org/debian-security", "bullseye-security"),
    ("http://deb.debian.org/debian", "bookworm"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
    ("http://deb.debian.org/debian", "bookworm-backports"),
]

GUEST_UP = "procmon-kernels: guest up"
DEFAULT_TIMEOUT = 25 * 60
DEFAULT_SUITE_TIMEOUT = 25 * 60
# The host's whole suite, as one more run (--suite).
SUITE = "suite"
GUEST_MARGIN = 60  # seconds of the limit kept for booting and shutting down
# A guest that is not up by then hung while booting: seen once in many boots of 5.10
# under TCG (the console stopped 1.7 s in, qemu spinning on both vCPUs).  Booting
# takes 11-25 s here; the VM is stopped and booted once more, instead of waiting
# out the whole limit and failing the kernel.
BOOT_TIMEOUT = 240
BOOT_ATTEMPTS = 2
TAIL_LINES = 40


@dataclass(frozen=True)
class Series:
    name: str
    dist: str
    # The full package name; group 1 is the kernel release, group 2 the number
    # that orders revisions of the series.
    pattern: str

    def newest(self, names: list[str]) -> str | None:
        found = []
        for name in names:
            m = re.fullmatch(self.pattern, name)
            if m:
                found.append((int(m.group(2)), name))
        return max(found)[1] if found else None


SERIES = {
    s.name: s
    for s in [
        Series("5.10", "bullseye", r"linux-image-(5\.10\.0-(\d+)-amd64)-unsigned"),
        Series("6.1", "bookworm", r"linux-image-(6\.1\.0-(\d+)-amd64)-unsigned"),
        Series("6.12", "bookworm", r"linux-image-(6\.12\.(\d+)\+deb12-amd64)-unsigned"),
    ]
}
ALL = [*SERIES, "host"]


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- fetching


def apt_options() -> list[str]:
    return [
        "-o", f"Dir::Etc::sourcelist={APT_DIR / 'sources.list'}",
        "-o", "Dir::Etc::sourceparts=/nonexistent",
        "-o", "Dir::Etc::preferences=/nonexistent",
        "-o", "Dir::Etc::preferencesparts=/nonexistent",
        "-o", f"Dir::State::Lists={APT_DIR / 'lists'}",
        "-o", f"Dir::Cache={APT_DIR / 'cache'}",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def apt(tool: str, *args: str, cwd: Path | None = None) -> str:
    cmd = [tool, "-q", *apt_options(), *args]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}")
    return r.stdout


def apt_update() -> None:
    for sub in ("lists/partial", "cache/archives/partial"):
        (APT_DIR / sub).mkdir(parents=True, exist_ok=True)
    lines = [f"deb [signed-by={KEYRING}] {uri} {suite} main" for uri, suite in SOURCES]
    (APT_DIR / "sources.list").write_text("\n".join(lines) + "\n")
    t = time.monotonic()
    apt("apt-get", "update")
    log(f"apt lists of {', '.join(s for _, s in SOURCES)} updated in {time.monotonic() - t:.1f} s")


def origin_suite(package: str) -> str:
    """The suite apt would download PACKAGE from (e.g. bookworm-security)."""
    out = apt("apt-cache", "policy", package)
    m = re.search(r"^\s+\d+ \S+ (\S+?)/main ", out, re.M)
    return m.group(1) if m else "?"


def cached(series: Series) -> dict | None:
    meta = BUILD / series.name / "kernel.json"
    if not meta.exists():
        return None
    info = json.loads(meta.read_text())
    root = BUILD / series.name / "root"
    if not (root / "boot" / f"vmlinuz-{info['release']}").exists():
        return None
    return info


def fetch(series: Series, names: list[str]) -> dict:
    package = series.newest(names)
    if package is None:
        raise RuntimeError(f"no package matching {series.pattern} in the apt lists")
    old = cached(series)
    if old and old["package"] == package:
        log(f"{series.name}: {package} is the newest; already unpacked")
        return old
    release = re.fullmatch(series.pattern, package).group(1)
    new = BUILD / f"{series.name}.new"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    t = time.monotonic()
    apt("apt-get", "download", package, cwd=new)
    (deb,) = new.glob("*.deb")
    size = deb.stat().st_size
    subprocess.run(["dpkg", "-x", str(deb), str(new / "root")], check=True)
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    deb.unlink()
    root = new / "root"
    for need in (f"boot/vmlinuz-{release}", f"boot/config-{release}", f"lib/modules/{release}"):
        if not (root / need).exists():
            raise RuntimeError(f"{package}: {need} missing from the package")
    # Debian's packages leave modules.dep to their postinst: make it here, once,
    # so the guest's modprobe works and vng need not write into the cache.
    subprocess.run(["depmod", "-a", "-b", str(root), release], check=True)
    info = {
        "series": series.name,
        "package": package,
        "version": version,
        "release": release,
        "suite": origin_suite(package),
    }
    (new / "kernel.json").write_text(json.dumps(info, indent=1) + "\n")
    dest = BUILD / series.name
    shutil.rmtree(dest, ignore_errors=True)
    new.rename(dest)
    log(
        f"{series.name}: fetched {package} {version} from {info['suite']} "
        f"({size / 1e6:.0f} MB) and unpacked in {time.monotonic() - t:.1f} s"
    )
    return info


def ensure_kernels(wanted: list[str], refresh: bool) -> dict[str, dict]:
    kernels = {}
    missing = []
    for name in wanted:
        info = None if refresh else cached(SERIES[name])
        if info:
            kernels[name] = info
        else:
            missing.append(name)
    if missing:
        apt_update()
        names = apt("apt-cache", "pkgnames", "linux-image-").split()
        for name in missing:
            kernels[name] = fetch(SERIES[name], names)
    return kernels


# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    label: str
    host: bool = False
    limit: float = 0.0
    ok: bool = False
    reason: str = ""
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    boot_seconds: float | None = None
    boot_hung: bool = False
    tail: str = ""


# The host's root a second time, as 9p with the guest's page cache (cache=loose):
# vng mounts it uncached, and every stat and read of a Python start-up then crosses
# into qemu (`python -c pass` took 9-16 s under TCG, a procmon-ctl call ~29 s; with
# the cache ~1.4 s and ~3 s).  Nothing in these trees changes while a kernel runs.
ROOT_TAG = "procmon_hostroot"
ROOT_VIRTFS = (
    f"-virtfs local,path=/,mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap"
)
# The guest's CPU: the x86-64 baseline (SSE2), not vng's `-cpu max`.  With max, glibc
# and the interpreter take their AVX2 paths, which TCG emulates slowly: under
# qemu64 a procmon-ctl command took 35-45 % less time here (5.10: `stats` 6.1 -> 3.9 s,
# `load` 10.3 -> 6.6 s, 100 execs of /bin/true 9.9 -> 5.2 s).  A later -cpu wins.
GUEST_CPU = "-cpu qemu64"


def cached_root(results: Path) -> str:
    """Shell lines that put the cached view over the trees the tests read: /usr
    (tools, libraries), the interpreter the venv was made from, the repository;
    the results directory (vng's writable 9p mount inside the repository) is put
    back on top."""
    python_home = Path(os.path.realpath(VENV_BIN / "python")).parents[1]
    trees = [Path("/usr"), REPO]
    if not python_home.is_relative_to("/usr"):
        trees.insert(1, python_home)
    binds = "\n".join(f"mount --bind /run/hostroot{t} {shlex.quote(str(t))}" for t in trees)
    r = shlex.quote(str(results))
    return f"""mkdir -p /run/hostroot /run/results
mount -t 9p -o ro,trans=virtio,version=9p2000.L,access=any,msize=512000,cache=loose \\
  {ROOT_TAG} /run/hostroot || {{ echo "procmon-kernels: cannot mount {ROOT_TAG}"; exit 91; }}
mount --bind {r} /run/results
{binds}
mount --bind /run/results {r}"""


def kernel_test_files() -> list[str]:
    """The test files that hold kernel-marked tests, as pytest collects them on the
    host (with `-m kernel`).  The guests import only these: collecting the whole
    suite there (every test module, the hypothesis plugin) took ~45 s per kernel
    under emulation.  Collected with bytecode written, so that the guests, which
    cannot write the repository, find each test module already rewritten by pytest."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    r = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "pytest", "--collect-only", "-q", "-m", "kernel"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    files = sorted({line.split("::", 1)[0] for line in r.stdout.splitlines() if "::" in line})
    if r.returncode != 0 or not files:
        raise RuntimeError(f"collecting the kernel tests failed ({r.returncode}):\n{r.stdout}")
    return files


def prebuild_test_programs() -> None:
    """The tests' C programs and BPF objects, compiled on the host into build/tests/
    (tests/builds.py): a guest compiles ~20 times slower and cannot write the cache."""
    t = time.monotonic()
    r = subprocess.run(
        [str(VENV_BIN / "python"), str(REPO / "tests" / "builds.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"building the tests' programs failed:\n{r.stdout}{r.stderr}")
    log(f"the tests' programs built in {time.monotonic() - t:.1f} s")


def guest_script(
    results: Path, pytest_args: list[str], limit: float, guest: bool = True, suite: bool = False
) -> str:
    """The script run as root in the guest (or on the host for its line).  pytest gets
    SIGINT after LIMIT seconds, so that a run cut short still reports what failed
    (the runner's own limit, a little later, kills the VM).  suite: the whole suite on
    the host (every test, every plugin, -v), rather than the kernel tests alone."""
    env = {
        "CI": os.environ.get("CI", ""),
        "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        # An emulated guest (qemu without KVM) runs some 20-50 times slower: tests
        # keep every exactness check there but leave wall-clock bounds to the host.
        "PROCMON_KERNEL_GUEST": "1" if guest else "",
    }
    if not suite:
        # No plugin but pytest's own: the kernel tests use none, and hypothesis's
        # import alone took ~30 s per kernel under emulation.
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    select = ["-v"] if suite else ["-m", "kernel", "-q"]
    pytest = shlex.join(
        [
            str(VENV_BIN / "python"),
            "-m",
            "pytest",
            *select,
            "-p",
            "no:cacheprovider",
            f"--junitxml={results / 'junit.xml'}",
            *pytest_args,
        ]
    )
    r = shlex.quote(str(results))
    return f"""#!/bin/bash
# Written by scripts/kernels/kernels.py for one run; runs as root in the guest
# (or on the host for the host's line).  Only {results} is writable for it.
set -u
R={r}
uname -r > "$R/uname"
echo "{GUEST_UP}, kernel $(uname -r)"
{cached_root(results) if guest else ""}
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
probe=$(mktemp -p /tmp) && rm -f "$probe" ||
  {{ echo "procmon-kernels: /tmp is not writable"; exit 90; }}
export {exports}
cd {shlex.quote(str(REPO))}
timeout --signal=INT --kill-after=20 {limit:.0f} {pytest} 2>&1 | tee "$R/pytest.log"
rc=${{PIPESTATUS[0]}}
echo "$rc" > "$R/pytest.rc"
exit "$rc"
"""


def group_members(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the whole process group of PROC (vng, qemu, helpers)."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
            if not group_members(pgid):
                return
    left = group_members(pgid)
    if left:
        log(f"warning: processes {left} of group {pgid} survived SIGKILL")


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    # Once: a second Ctrl-C must not interrupt the clean-up the first one started.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


class Runs:
    """The runs under way (a VM each, or the host's suite), several at once: each in a
    process group of its own, all stopped together when the runner is interrupted."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._print = threading.Lock()

    def say(self, msg: str) -> None:
        """One whole line on stdout, whichever run's thread prints it."""
        with self._print:
            print(msg, flush=True)

    def start(self, cmd: list[str]) -> subprocess.Popen:
        with self._lock:
            if self.stopping.is_set():
                raise Interrupted(signal.SIGTERM)
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
            )
            self._procs.add(proc)
            return proc

    def finish(self, proc: subprocess.Popen) -> None:
        kill_group(proc)
        with self._lock:
            self._procs.discard(proc)

    def stop_all(self) -> None:
        with self._lock:
            self.stopping.set()
            procs = list(self._procs)
        for proc in procs:
            kill_group(proc)


def run_one(
    runs: Runs, label: str, cmd: list[str], results: Path, timeout: float, host: bool, echo: bool
) -> Outcome:
    """Run CMD (a VM, or the guest script itself for the host) in a process group
    of its own, its output in results/console.log (and on stdout with echo); judge
    it from what the guest script left in RESULTS."""
    out = Outcome(label, host, timeout)
    start = time.monotonic()
    boot_at: list[float] = []
    console = open(results / "console.log", "wb")  # noqa: SIM115 (closed below)
    proc = runs.start(cmd)

    def pump():
        for line in proc.stdout:
            console.write(line)
            console.flush()
            if echo:
                runs.say(line.decode(errors="replace").rstrip("\n"))
            if not boot_at and GUEST_UP.encode() in line:
                boot_at.append(time.monotonic())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    code = None
    try:
        while code is None and not runs.stopping.is_set():
            try:
                code = proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                waited = time.monotonic() - start
                if waited >= timeout:
                    timed_out = True
                    break
                if not host and not boot_at and waited >= BOOT_TIMEOUT:
                    out.boot_hung = True
                    break
    finally:
        # Always: on timeout, on an interrupt, and after a normal exit (helpers the VM
        # left behind).
        runs.finish(proc)
        reader.join(timeout=5)
        console.close()
    out.seconds = time.monotonic() - start
    if boot_at:
        out.boot_seconds = boot_at[0] - start
    judge(out, results, code, timed_out, timeout)
    return out


def junit_counts(path: Path) -> tuple[int, int, int] | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    tests = failed = skipped = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


def tail(path: Path, n: int = TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def judge(out: Outcome, results: Path, code: int | None, timed_out: bool, timeout: float) -> None:
    expected = (results / "expected-release").read_text().strip()
    uname = (results / "uname").read_text().strip() if (results / "uname").exists() else None
    rc_file = results / "pytest.rc"
    rc = int(rc_file.read_text().strip() or -1) if rc_file.exists() else None
    counts = junit_counts(results / "junit.xml")
    if counts:
        out.passed, out.failed, out.skipped = counts
    out.tail = tail(results / "pytest.log") or tail(results / "console.log")
    if out.boot_hung:
        out.reason = f"not up within {BOOT_TIMEOUT} s (hung while booting)"
    elif timed_out:
        out.reason = f"timed out after {timeout:.0f} s" + ("" if uname else " (never booted)")
    elif rc == 124:
        out.reason = "pytest stopped at its time limit, before the runner's"
    elif uname is None:
        out.reason = f"did not boot (vng exit {code})"
    elif uname != expected:
        out.reason = f"booted {uname}, expected {expected}"
    elif rc is None:
        out.reason = f"pytest did not finish (exit {code})"
    elif counts is None:
        out.reason = f"no JUnit report (pytest exit {rc})"
    elif out.failed:
        out.reason = f"pytest exit {rc}"
    elif out.passed == 0:
        out.reason = f"ran no test (pytest exit {rc})"
    elif rc != 0:
        out.reason = f"pytest exit {rc}"
    else:
        out.ok = True


def run_series(
    runs: Runs, name: str, info: dict | None, timeout: float, pytest_args: list[str], vcpus: int
) -> Outcome:
    for attempt in range(1, BOOT_ATTEMPTS + 1):
        out = run_attempt(runs, name, info, timeout, pytest_args, vcpus)
        if not out.boot_hung or attempt == BOOT_ATTEMPTS:
            return out
        runs.say(f"{name}: {out.reason}; booting it again ({attempt + 1} of {BOOT_ATTEMPTS})")
    raise AssertionError("unreachable")


def run_attempt(
    runs: Runs, name: str, info: dict | None, timeout: float, pytest_args: list[str], vcpus: int
) -> Outcome:
    results = RESULTS / name
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    script = results / "guest.sh"
    suite = name == SUITE
    # Boot (~15-25 s under TCG) and power-off come out of the same budget.
    limit = timeout - GUEST_MARGIN if timeout > 2 * GUEST_MARGIN else timeout
    script.write_text(guest_script(results, pytest_args, limit, info is not None, suite))
    script.chmod(0o755)
    if info is None:  # the host
        release = os.uname().release
        label = f"{release} (host{', whole suite' if suite else ''})"
        cmd = ["/bin/bash", str(script)]
    else:
        release = info["release"]
        label = f"{release} ({info['suite']})"
        root = BUILD / name / "root"
        cmd = [
            str(VENV_BIN / "vng"),
            "--run", str(root / "boot" / f"vmlinuz-{release}"),
            "--disable-kvm",  # KVM here does not boot a stock kernel; TCG does
            "--cpus", str(vcpus),
            "--memory", "2G",
            "--user", "root",
            "--verbose",  # the kernel's console in console.log, for a failed boot
            "--force-9p",  # no virtiofsd vng can drive here: skip its attempts
            # udev would load kvm (~10 s under TCG), which no test needs.
            # tsc: TCG's TSCs count host time, the same on every vCPU; without this
            # the guest finds them unsynchronised and reads the slower HPET.
            "--append", "modprobe.blacklist=kvm,kvm_amd,kvm_intel tsc=reliable",
            f"--qemu-opts={ROOT_VIRTFS} {GUEST_CPU}",  # one word: it starts with a dash
            "--rodir", f"/boot={root / 'boot'}",  # /boot/config-<release> for doctor
            "--rwdir", str(results),
            "--exec", f"/bin/bash {shlex.quote(str(script))}",
        ]  # fmt: skip
    (results / "expected-release").write_text(release + "\n")
    runs.say(
        f"{name}: running {label} (limit {timeout:.0f} s); log in {results.relative_to(REPO)}/"
    )
    return run_one(runs, label, cmd, results, timeout, info is None, echo=suite)


def line(o: Outcome) -> str:
    counts = f"{o.passed} passed, {o.failed} failed, {o.skipped} skipped"
    boot = f" (boot {o.boot_seconds:.0f} s)" if o.boot_seconds and not o.host else ""
    verdict = "" if o.ok else f"   FAILED: {o.reason}"
    return f"{o.label:<42} {counts:<34} {o.seconds:5.0f} s{boot}{verdict}"


def time_line(o: Outcome) -> str:
    """The run's time against its limit: at most half of it leaves room for a slower
    machine."""
    share = o.seconds / o.limit if o.limit else 0.0
    over = "   over half its limit" if share > 0.5 else ""
    return f"{o.label:<42} {o.seconds:5.0f} s of its {o.limit:.0f} s limit ({share:4.0%}){over}"


def run_all(
    runs: Runs, wanted: list[str], kernels: dict, timeouts: dict[str, float], args
) -> list[Outcome]:
    """Each series in WANTED, at most args.jobs at once, in the order given (put the
    longest first); each result is printed as it comes, in the order they end."""
    pending = list(wanted)
    outcomes: dict[str, Outcome] = {}
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []
    slots = threading.Semaphore(args.jobs)

    def one(name: str) -> None:
        try:
            extra = args.suite_args if name == SUITE else args.pytest_args
            o = run_series(runs, name, kernels.get(name), timeouts[name], extra, args.vcpus)
            outcomes[name] = o
            runs.say(line(o))
            if not o.ok and name != SUITE:  # the suite's own output is on stdout already
                runs.say(f"--- last lines of {name}'s output:\n{o.tail}\n---")
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            slots.release()

    while pending:
        while not slots.acquire(timeout=0.5):
            pass  # a signal reaches the main thread between waits
        if runs.stopping.is_set():
            break
        t = threading.Thread(target=one, args=(pending.pop(0),), daemon=True)
        threads.append(t)
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.5)
    if errors:
        raise errors[0]
    return [outcomes[n] for n in wanted if n in outcomes]


def main() -> int:
    p = argparse.ArgumentParser(
        description="Run `pytest -m kernel` on each kernel of the matrix (VMs under qemu TCG).",
        epilog="Arguments after `--` go to pytest, after `-m kernel` (a later -m replaces it).",
    )
    p.add_argument("series", nargs="*", metavar="SERIES", help=f"of {ALL} (default: all)")
    p.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("KERNEL_TIMEOUT", DEFAULT_TIMEOUT)),
        help="seconds for each kernel's run, boot included (default: $KERNEL_TIMEOUT or 1500)",
    )
    p.add_argument(
        "--suite",
        action="store_true",
        help="also run the whole suite on the host (every test, as `pytest -v`), as one "
        "more run beside the kernels' (what `make test` does)",
    )
    p.add_argument(
        "--suite-timeout",
        type=float,
        default=DEFAULT_SUITE_TIMEOUT,
        help=f"seconds for the host's whole suite (default: {DEFAULT_SUITE_TIMEOUT:.0f})",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once (default 1); a VM under TCG keeps about one core busy",
    )
    p.add_argument(
        "--vcpus",
        type=int,
        default=2,
        help="each guest's CPUs (default 2); under TCG each busy vCPU keeps a host core busy",
    )
    p.add_argument("--refresh", action="store_true", help="look for newer kernel revisions")
    p.add_argument("--fetch-only", action="store_true", help="fetch the kernels, run nothing")
    argv = sys.argv[1:]
    pytest_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1 :]
    args = p.parse_args(argv)
    wanted = args.series or ALL
    unknown = [s for s in wanted if s not in ALL]
    if unknown:
        p.error(f"unknown series {unknown}; known: {' '.join(ALL)}")
    if args.jobs < 1:
        p.error("--jobs: at least 1")
    if args.vcpus < 1:
        p.error("--vcpus: at least 1")
    if args.suite and "host" in wanted:
        p.error("--suite runs every test on the host, the kernel tests included: leave out host")
    if os.geteuid() != 0:
        p.error("run as root (the tests load BPF programs)")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    BUILD.mkdir(parents=True, exist_ok=True)
    lock = open(BUILD / ".lock", "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"another kernel matrix run holds {BUILD / '.lock'}")
        return 2

    runs = Runs()
    outcomes: list[Outcome] = []
    started = time.monotonic()
    try:
        t = time.monotonic()
        kernels = ensure_kernels([s for s in wanted if s != "host"], args.refresh)
        log(f"kernels ready in {time.monotonic() - t:.1f} s")
        if args.fetch_only:
            return 0
        if not OBJECT.exists():
            log(f"{OBJECT.relative_to(REPO)} missing: run make first (the guest builds nothing)")
            return 2
        args.suite_args = pytest_args
        args.pytest_args = pytest_args
        if not any(a.startswith("tests") or ".py" in a for a in pytest_args):
            args.pytest_args = [*pytest_args, *kernel_test_files()]  # no test path given
        prebuild_test_programs()
        timeouts = {name: args.timeout for name in wanted}
        order = list(wanted)
        if args.suite:
            # After the longest kernel: the two longest runs go first, side by side.
            order.insert(1, SUITE)
            timeouts[SUITE] = args.suite_timeout
        outcomes = run_all(runs, order, kernels, timeouts, args)
    except Interrupted as e:
        signum = e.args[0]
        runs.stop_all()
        log(f"interrupted by {signal.Signals(signum).name}: every run stopped")
        return 128 + signum
    except RuntimeError as e:
        runs.stop_all()
        log(f"error: {e}")
        return 2

    log("")
    for o in outcomes:
        log(line(o))
    log("")
    log(f"time per run, {args.jobs} at once on {os.cpu_count()} CPUs:")
    for o in outcomes:
        log(time_line(o))
    bad = sum(not o.ok for o in outcomes)
    # Not pytest's "N passed, N failed" shape: CI reads that as the suite's test count.
    tests = sum(o.passed for o in outcomes), sum(o.failed for o in outcomes)
    log(
        f"kernel matrix: {len(outcomes) - bad} of {len(outcomes)} runs passed "
        f"({tests[0]} tests passed and {tests[1]} failed in all) in "
        f"{time.monotonic() - started:.0f} s"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
