#!/usr/bin/env python3
"""procmon-ctl against bpftrace, forkstat and execsnoop, on one machine, in one run.

Three workloads made by build/storm (scripts/bench/storm.c), each as two
concurrent processes: a fork storm (fork + _exit + waitpid), a thread storm
(pthread create + join) and an exec storm (fork + execve of storm itself with
20 arguments, one of them a token unique to the exec, + waitpid).  Each storm
runs once under each contender, started afresh for it; the contenders take
turns, in an order rotated every round, each right after an untraced storm of
its own, for several rounds, and the table compares medians:

  untraced         nothing attached (the baseline)
  procmon-json     procmon-ctl attached + `procmon-ctl events --json --threads > file`
                   (exec storm: `events --json`, no --threads)
  procmon-json-noargv
                   procmon-json in the exec storm with `--argv-bytes 0`: the exec
                   program without argv, beside procmon-json's with it (argv's
                   cost, the floor of issue 28.3)
  procmon-idle     procmon-ctl attached, no reader (counters only); fork and thread
  bpftrace         bpftrace -e 'tracepoint:sched:sched_process_fork { printf(...) }' > file
                   (exec storm: sys_enter_execve + join(args->argv), execsnoop.bt's way)
  forkstat         forkstat -e fork > file (exec storm: -e exec; argv from /proc)
  execsnoop-bpfcc  bcc's execsnoop > file; exec storm only, where it runs (bcc
                   compiles against kernel headers: without them the report says
                   why it did not run)

and, for issue 27.8, procmon-ctl with several readers of one instance (fork and
thread storms; each reader `events --json --threads > a file of its own`):

  procmon-json-4   4 readers, each of them getting every record
  procmon-json-8   8 readers, likewise
  procmon-json-1+7filtered
                   1 reader getting every record, and 7 whose `--cgroup` is an empty
                   cgroup made for the run: they filter out every record of the storm
  baseline-json@COMMIT
                   procmon-json with the CLI and BPF object of an older commit, one
                   such contender per --baseline (`make bench` builds each from git
                   into build/baseline-COMMIT), each loaded in a pin directory of its
                   own: c9d106c, the commit before many readers per instance (issue
                   27.8), dc344e5, the last before exit de-duplication and argv,
                   whose kernel ns per run is issue 28.1's budget, and 152a429, the
                   last before exit records said what the process cost (issue 29.6:
                   its exit program + 100 ns at most); all three storms

Figures: completeness (the workload's own child/thread ids found in the output,
and events lost; in the exec storm, execs found with their whole argv exactly
as passed), slowdown (storm rate / untraced rate in the same round), kernel
cost per run of the fork (exec) program (bpf_stats_enabled), reader CPU per
event written (each reader's, with several), and the CLI latency of
`procmon-ctl stats --json` against `bpftool -j map dump`.  Needs root; `make bench`
installs the peers.

procmon-ctl runs in its own pin directory (PROCMON_PIN_DIR), which is removed at
the end, and kernel.bpf_stats_enabled is put back as it was.  One bench at a
time (a lock in /run): two would fight over that sysctl and the CPUs."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from procmon_ctl.errors import StateError  # noqa: E402 (the repository's, not an installed one)
from procmon_ctl.instance.state_dir import LOCK_DIR, own_state_dir  # noqa: E402
from procmon_ctl.process.cgroups import v2_root  # noqa: E402

STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
# In procmon-ctl's own state directory (root's, 0700, made and checked by procmon-ctl's
# own code): one bench or long run at a time.
LOCK = LOCK_DIR / "bench.lock"


def take_bench_lock() -> int | None:
    """An fd holding LOCK (None while another bench holds it), in procmon-ctl's
    state dir made and checked by procmon-ctl's own code (root's, 0700)."""
    own_state_dir()
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


BPFTRACE_PROG = (
    'tracepoint:sched:sched_process_fork { printf("%d %d\\n", args->parent_pid, args->child_pid); }'
)
# bpftrace's tools/execsnoop.bt prints the pid and then join(args->argv), a
# statement of its own (in 0.17 join returns nothing printf could take): one line.
BPFTRACE_EXEC_PROG = (
    'tracepoint:syscalls:sys_enter_execve { printf("%d ", pid); join(args->argv); }'
)
EXECSNOOP = "execsnoop-bpfcc"
NOARGV = "procmon-json-noargv"
FLOOR_LABEL = 'python -c "import typer, pydantic, sh"'
# One contender per --baseline tree, named BASELINE@COMMIT; in a list of contenders,
# BASELINE alone stands for all of them.
BASELINE = "baseline-json"
# procmon-ctl with 0, 1, 4 and 8 readers of one instance, and each baseline commit's with 1
# (issue 27.8), in the order of the readers' table
READER_SETS = (
    BASELINE,
    "procmon-idle",
    "procmon-json",
    "procmon-json-4",
    "procmon-json-8",
    "procmon-json-1+7filtered",
)
# the ones the table of procmon-ctl against its peers shows too
PEER_TABLE_SETS = ("procmon-json", "procmon-idle")
CONTENDERS = (
    "untraced",
    "procmon-json",
    NOARGV,
    "procmon-idle",
    "bpftrace",
    "forkstat",
    EXECSNOOP,
    "procmon-json-4",
    "procmon-json-8",
    "procmon-json-1+7filtered",
    BASELINE,
)
STORMS = ("fork", "thread", "exec")
CHILD_MARK = "--storm-exec-child"  # storm.c's: argv[1] of the exec'd child, which exits at once


DRAINED_TAG = "drained"  # the marker exec made after a storm (ProcmonJson.drain)


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def sh(*argv: str, env: dict | None = None, check: bool = True) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def bpftool_json(*args: str):
    out = sh("bpftool", "-j", *args)
    return json.loads(out) if out.strip() else None


def prog_stats(prog_id: int) -> tuple[int, int]:
    p = bpftool_json("prog", "show", "id", str(prog_id))
    return p.get("run_time_ns", 0), p.get("run_cnt", 0)


def all_prog_stats(prog_ids: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(run_time_ns, run_cnt) of each named program, from one `bpftool prog show`."""
    by_id = {p["id"]: p for p in bpftool_json("prog", "show") or []}
    return {
        name: (by_id[i].get("run_time_ns", 0), by_id[i].get("run_cnt", 0))
        for name, i in prog_ids.items()
        if i in by_id
    }


def task_cpu_ns(pid: int) -> int:
    """CPU time (user + sys, ns) of every live thread of `pid`, from schedstat."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    return total


def wait_stable(path: Path, quiet: float, limit: float) -> None:
    """Until `path` has not grown for `quiet` seconds (the reader has caught up)."""
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


@dataclass
class StormResult:
    created: int
    rate: float
    # pid_max is 32768 here: a big storm reuses ids.  In the exec storm, each
    # exec's whole argv (a tuple; the token in it makes each one unique).
    ids: Counter


def run_storm(storm: Path, mode: str, count: int, seconds: float, work: Path) -> StormResult:
    """Two storms at once, released together through a pipe."""
    r, w = os.pipe()
    procs, id_files = [], []
    for i in range(2):
        ids = work / f"ids-{mode}-{i}"
        id_files.append(ids)
        procs.append(
            subprocess.Popen(
                [str(storm), "-w", str(r), "-o", str(ids), mode, str(count), str(seconds)],
                stdout=subprocess.PIPE,
                text=True,
                pass_fds=(r,),
            )
        )
    os.close(r)
    os.write(w, b"go")
    os.close(w)
    reports = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 30)
        if p.returncode != 0:
            raise RuntimeError(f"storm {mode} exited {p.returncode}")
        reports.append(json.loads(out))
    made = sum(x["made"] for x in reports)
    span = max(x["end"] for x in reports) - min(x["start"] for x in reports)
    ids: Counter = Counter()
    for report, f in zip(reports, id_files, strict=True):
        if mode == "exec":
            argv = report["argv"]
            at = argv.index("{token}")
            for line in f.read_text().splitlines():
                token = line.split()[1]
                ids[(*argv[:at], token, *argv[at + 1 :])] += 1
        else:
            ids.update(int(x) for x in f.read_text().split())
        f.unlink()
    return StormResult(made, made / span, ids)


def exec_marker(out: Path, limit: float = 30) -> None:
    """Until `out` (a tracer's output) shows an exec made after the tracer started:
    it is then attached and reading."""
    exec_markers([out], None, limit)


def exec_markers(
    outs: list[Path], cgroup: Path | None, limit: float = 30, tag: str = "ready"
) -> None:
    """Until each of `outs` (fresh outputs of tracers or readers) shows a marker exec
    (named with `tag`): they are then attached and reading, or with another tag, have
    read all that came before it.  The marker lives 0.2 s (a shell running sleep), so
    a tracer that reads the command line from /proc finds it too.  With `cgroup`, the
    marker runs in that cgroup (moved there before its exec), so readers whose
    --cgroup is that cgroup see it too."""
    deadline = time.monotonic() + limit
    prefix = f"procmon-bench-{tag}-{os.getpid()}-"
    pending = list(outs)
    n = 0
    # The shell is exec'd through a link named after the marker: the name is then in the
    # exec's filename and comm too, which a procmon-ctl older than argv shows (dc344e5).
    with tempfile.TemporaryDirectory(prefix="procmon-bench-marker-") as links:
        while pending and time.monotonic() < deadline:
            marker = f"{prefix}{n}"
            shell = Path(links) / marker
            shell.symlink_to("/bin/sh")
            if cgroup is None:
                argv = [str(shell), "-c", "sleep 0.2", marker]
            else:
                script = 'echo $$ > "$1" && exec "$3" -c "sleep 0.2" "$2"'
                procs = str(cgroup / "cgroup.procs")
                argv = ["/bin/sh", "-c", script, "sh", procs, marker, str(shell)]
            subprocess.run(argv, check=True)
            n += 1
            t = time.monotonic()
            while pending and time.monotonic() - t < 1.0:
                pending = [o for o in pending if prefix not in o.read_text(errors="replace")]
                time.sleep(0.05)
    if pending:
        names = ", ".join(o.name for o in pending)
        raise RuntimeError(f"{names}: no exec seen within {limit:g} s of starting")
    time.sleep(0.2)  # and let the markers' other lines (sleep's exec, exits) pass


# --- contenders ---------------------------------------------------------------


@dataclass
class Contender:
    name: str
    bench: Bench
    proc: subprocess.Popen | None = None
    out: Path | None = None
    # Programs whose bpf_stats give the kernel cost: the time of all of them over
    # the runs of the one that ran most (one run of each per event).
    prog_ids: list[int] = field(default_factory=list)
    storms = STORMS  # the storms it takes part in

    def start(self, work: Path, storm: str) -> None: ...

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def drain(self) -> None:
        # Quiet for 0.5 s: ten poll periods of procmon-ctl's reader, and time for a
        # reader the busy machine kept off the CPU for a moment to catch up.
        if self.out is not None:
            wait_stable(self.out, 0.5, 30)

    def lines(self) -> int:
        """Records written to the output so far."""
        return 0

    def seen(self, storm: str) -> tuple[Counter, int]:
        """(child ids in the output, events reported lost) once stopped; in the
        exec storm, the argv (a tuple) of every exec in the output, as shown (an
        argv cut short is not the storm's, so it does not count as delivered)."""
        return Counter(), 0


class Untraced(Contender):
    pass


class ProcmonIdle(Contender):
    storms = ("fork", "thread")

    def start(self, work: Path, storm: str) -> None:
        inst = self.bench.current
        inst.run("attach")
        self.prog_ids = [inst.progs["handle_fork"]]

    def stop(self) -> None:
        inst = self.bench.current
        inst.run("detach")
        if inst.shared_ring:
            # Nobody read the one ring: it is full.  Skip what it holds, so the next
            # reader does not start on a full ring (its first records would be dropped).
            inst.run("events", "--from-now", "--duration", "0.1")


@dataclass
class Reader:
    """One `procmon-ctl events --json` of a ProcmonJson contender, writing to `out`."""

    proc: subprocess.Popen
    out: Path
    filtering: bool  # its --cgroup is the empty cgroup: it must get none of the storm
    lines0: int = 0
    cpu0: int = 0


@dataclass
class ReaderFigures:
    """One reader's share of one storm."""

    filtering: bool
    events: int  # lines it wrote during the storm
    cpu_us: float  # its CPU time over the storm, µs
    delivered: int = 0  # the storm's children (threads, execs) found in its output
    lost: int = 0  # dropped records its stream's gap lines report

    @property
    def us_per_event(self) -> float | None:
        return self.cpu_us / self.events if self.events else None


class ProcmonJson(Contender):
    """procmon-ctl attached and `receivers` readers of `events --json`, each into a file
    of its own (with --threads but in the exec storm), plus `filtering` readers whose
    --cgroup is an empty cgroup; all of this tree's instance."""

    receivers = 1
    filtering = 0
    extra_flags: tuple[str, ...] = ()  # each reader's, after --json (and --threads)
    reads_argv = True

    def __init__(self, name: str, bench: Bench) -> None:
        super().__init__(name, bench)
        self.readers: list[Reader] = []
        self.attached = False

    @property
    def inst(self) -> Instance:
        return self.bench.current

    def start(self, work: Path, storm: str) -> None:
        inst = self.inst
        inst.run("attach")
        self.attached = True
        flags = ["--json"]
        if storm != "exec":
            flags.append("--threads")
        flags += self.extra_flags
        if inst.shared_ring:  # before issue 27, a reader started on whatever the ring held
            flags.append("--from-now")
        # The exec program is the one measured in the exec storm; the fork and exit
        # programs run for each exec too (Sample.kernel_all_ns counts all three).
        self.prog_ids = [inst.progs["handle_exec" if storm == "exec" else "handle_fork"]]
        cgroup = self.bench.empty_cgroup
        for i in range(self.receivers + self.filtering):
            filtering = i >= self.receivers
            out = work / f"{self.name}-{i}.jsonl"
            extra = ["--cgroup", "/" + str(cgroup.relative_to(v2_root()))] if filtering else []
            with open(out, "w") as f:
                proc = subprocess.Popen(
                    [*inst.cli, "events", *flags, *extra], stdout=f, env=inst.env
                )
            self.readers.append(Reader(proc, out, filtering))
        try:
            exec_markers([r.out for r in self.readers], cgroup if self.filtering else None)
        except RuntimeError:
            gone = [r.out.name for r in self.readers if r.proc.poll() is not None]
            if gone:
                raise RuntimeError(f"procmon-ctl events exited early: {gone}") from None
            raise
        if storm != "exec":
            self.wait_thread_lease()

    def wait_thread_lease(self) -> None:
        """Before issue 27, --threads was a lease in the one `settings` map (struct
        settings.threads_until_ns, on bpf_ktime_get_ns's clock): wait until it runs."""
        settings = self.inst.pin_dir / "maps/settings"
        if not settings.exists():
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            dump = bpftool_json("map", "dump", "pinned", str(settings))
            value = dump[0]["formatted"]["value"] if dump else {}
            if "threads_until_ns" not in value:
                return
            if value["threads_until_ns"] > time.monotonic_ns():
                return
            time.sleep(0.05)
        raise RuntimeError("the --threads lease was not taken within 20 s")

    def stop(self) -> None:
        for r in self.readers:
            with contextlib.suppress(ProcessLookupError):
                r.proc.send_signal(signal.SIGTERM)
        for r in self.readers:
            try:
                r.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
        if self.attached:
            self.inst.run("detach")
            self.attached = False

    def drain(self) -> None:
        # Until each has written a marker exec made after the storm: a reader's ring
        # is in the order records were made, and the storm's were all made by then
        # (its children's exits before their parent's waitpid returned).  Not until
        # the files are quiet: the rest of the machine's processes reach them too.
        exec_markers(
            [r.out for r in self.readers],
            self.bench.empty_cgroup if self.filtering else None,
            tag=DRAINED_TAG,
        )

    def mark(self) -> None:
        """Each reader's lines and CPU time before the storm."""
        for r in self.readers:
            r.lines0 = count_lines(r.out)
            r.cpu0 = task_cpu_ns(r.proc.pid)

    def figures(self) -> list[ReaderFigures]:
        """Each reader's lines over the storm (up to drain()'s marker) and CPU time
        (it has drained)."""
        return [
            ReaderFigures(
                r.filtering,
                count_lines(r.out, until=DRAINED_TAG) - r.lines0,
                (task_cpu_ns(r.proc.pid) - r.cpu0) / 1e3,
            )
            for r in self.readers
        ]

    def remove_outputs(self) -> None:
        for r in self.readers:
            r.out.unlink(missing_ok=True)


class ProcmonJson4(ProcmonJson):
    storms = ("fork", "thread")
    receivers = 4


class ProcmonJson8(ProcmonJson):
    storms = ("fork", "thread")
    receivers = 8


class ProcmonJson1Filtering7(ProcmonJson):
    storms = ("fork", "thread")
    filtering = 7


class ProcmonJsonNoArgv(ProcmonJson):
    storms = ("exec",)
    extra_flags = ("--argv-bytes", "0")
    reads_argv = False


class BaselineJson(ProcmonJson):
    """procmon-json run by the CLI and object of the --baseline tree its name ends with."""

    @property
    def inst(self) -> Instance:
        return self.bench.baselines[baseline_of(self.name)]


def count_lines(path: Path, until: str | None = None) -> int:
    """Lines in `path`; with `until`, those before the first marker of that tag."""
    stop = f"procmon-bench-{until}-".encode() if until else None
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if stop is not None and stop in line:
                break
            n += 1
    return n


def read_stream(path: Path, storm: str) -> tuple[Counter, int]:
    """(the storm's ids in a reader's output, records its gap lines report lost): fork
    records' pids (threads' ids with --threads), or in the exec storm each exec's argv
    (an argv cut short is not the storm's, so it does not count as delivered)."""
    ids, lost = Counter(), 0
    wanted = b'"exec"' if storm == "exec" else b'"fork"'
    with open(path, "rb") as f:
        for line in f:
            if wanted not in line and b'"gap"' not in line:
                continue  # not worth parsing
            e = json.loads(line)
            if e["type"] == "gap":
                lost += e["dropped"]
            elif storm == "exec":
                # a procmon-ctl older than argv (dc344e5) delivers no exec of the storm
                if e["type"] == "exec" and "argv" in e:
                    cut = ("<argv_truncated>",) if e["argv_truncated"] else ()
                    ids[(*e["argv"], *cut)] += 1
            elif e["type"] == "fork":
                ids[e["pid"]] += 1
    return ids, lost


class Bpftrace(Contender):
    def start(self, work: Path, storm: str) -> None:
        before = {p["id"] for p in bpftool_json("prog", "show")}
        self.out = work / "bpftrace.txt"
        prog = BPFTRACE_EXEC_PROG if storm == "exec" else BPFTRACE_PROG
        with open(self.out, "w") as f:
            self.proc = subprocess.Popen(
                ["bpftrace", "-e", prog], stdout=f, stderr=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.out.read_text(errors="replace").startswith("Attaching"):
                # bpftrace names its program after the probe (15 characters, the
                # kernel's limit); by name, since tests running beside the bench
                # load tracepoint programs of their own
                probe = prog.split("{")[0].strip().split(":")[-1][:15]
                new = [
                    p
                    for p in bpftool_json("prog", "show")
                    if p["id"] not in before
                    and p["type"] == "tracepoint"
                    and p.get("name") == probe
                ]
                if new:
                    self.prog_ids = [new[0]["id"]]
                    break
            if self.proc.poll() is not None:
                raise RuntimeError("bpftrace exited early")
            time.sleep(0.05)
        else:
            raise RuntimeError("bpftrace did not attach within 60 s")
        if storm == "exec":
            exec_marker(self.out)
        else:
            time.sleep(0.3)

    def lines(self) -> int:
        with open(self.out, "rb") as f:
            return sum(1 for line in f if line[:1].isdigit())

    def seen(self, storm: str) -> tuple[Counter, int]:
        ids = Counter()
        with open(self.out, errors="replace") as f:
            for line in f:
                parts = line.split()
                if storm == "exec":
                    # "PID ARGV0 ARGV1 ...": join() separates with a space (the
                    # storm's arguments have none)
                    if len(parts) >= 2 and parts[0].isdigit():
                        ids[tuple(parts[1:])] += 1
                elif len(parts) == 2 and parts[1].isdigit():
                    ids[int(parts[1])] += 1
        return ids, 0


class Forkstat(Contender):
    event = "fork"

    def start(self, work: Path, storm: str) -> None:
        self.out = work / "forkstat.txt"
        self.event = "exec" if storm == "exec" else "fork"
        with open(self.out, "w") as f:
            self.proc = subprocess.Popen(
                ["forkstat", "-e", self.event], stdout=f, stderr=subprocess.DEVNULL
            )
        # It connects to the proc connector at once, and its output to a file is
        # block-buffered until it exits (a marker line would not show): nothing to
        # watch for, in either storm.
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError("forkstat exited early")

    def lines(self) -> int:
        word = f" {self.event} ".encode()
        with open(self.out, "rb") as f:
            return sum(1 for line in f if word in line)

    def seen(self, storm: str) -> tuple[Counter, int]:
        ids = Counter()
        with open(self.out, errors="replace") as f:
            for line in f:
                parts = line.split()
                if storm == "exec":
                    # "TIME exec PID CMDLINE...": the command line read from
                    # /proc/PID/cmdline, NULs as spaces
                    if len(parts) >= 4 and parts[1] == "exec" and parts[2].isdigit():
                        ids[tuple(parts[3:])] += 1
                elif len(parts) >= 4 and parts[1] == "fork" and parts[3] == "child":
                    ids[int(parts[2])] += 1
        return ids, 0


def execsnoop_runs() -> str | None:
    """None if bcc's execsnoop starts here; else why not, in its own words (bcc
    compiles its programs at start, against the running kernel's headers)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([EXECSNOOP], stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            out.seek(0)
            if out.read().startswith("PCOMM"):
                break
            time.sleep(0.1)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out.seek(0)
            if out.read().startswith("PCOMM"):
                return None
            return "it did not start within 60 s"
        out.seek(0)
        err.seek(0)
        # libbcc says what it missed on stdout, Python's traceback goes to stderr
        said = [ln.strip() for ln in out.read().splitlines() if "kernel headers" in ln]
        said += [ln.strip() for ln in err.read().splitlines() if ln.strip()][-1:]
    return f"exits {proc.returncode}: " + (" ".join(said) if said else "(nothing said)")


class Execsnoop(Contender):
    """bcc's execsnoop with its defaults: argv read at execve's entry (kprobe), at
    most 20 fields (the filename and argv[1..19]), "..." appended after the 20th."""

    storms = ("exec",)

    def start(self, work: Path, storm: str) -> None:
        before = {p["id"] for p in bpftool_json("prog", "show")}
        self.out = work / "execsnoop.txt"
        with open(self.out, "w") as f:
            self.proc = subprocess.Popen([EXECSNOOP], stdout=f, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self.out.read_text(errors="replace").startswith("PCOMM"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{EXECSNOOP} exited early")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{EXECSNOOP} did not start within 60 s")
            time.sleep(0.1)
        names = ("syscall__execve", "do_ret_sys_execve"[:15])  # its two, named by bcc
        self.prog_ids = [
            p["id"]
            for p in bpftool_json("prog", "show")
            if p["id"] not in before and p.get("name") in names
        ]
        exec_marker(self.out)

    def lines(self) -> int:
        with open(self.out, "rb") as f:
            return sum(1 for line in f if not line.startswith(b"PCOMM"))

    def seen(self, storm: str) -> tuple[Counter, int]:
        ids = Counter()
        with open(self.out, errors="replace") as f:
            for line in f:
                # "PCOMM PID PPID RET ARGS...": ARGS starts with the filename
                parts = line.split()
                if len(parts) >= 5 and parts[1].isdigit() and parts[3] == "0":
                    ids[tuple(parts[4:])] += 1
        return ids, 0


KINDS = {
    "untraced": Untraced,
    "procmon-json": ProcmonJson,
    NOARGV: ProcmonJsonNoArgv,
    "procmon-idle": ProcmonIdle,
    "procmon-json-4": ProcmonJson4,
    "procmon-json-8": ProcmonJson8,
    "procmon-json-1+7filtered": ProcmonJson1Filtering7,
    BASELINE: BaselineJson,
    "bpftrace": Bpftrace,
    "forkstat": Forkstat,
    EXECSNOOP: Execsnoop,
}


def baseline_of(name: str) -> str:
    """The commit of a BASELINE@COMMIT contender; "" for any other."""
    kind, _, commit = name.partition("@")
    return commit if kind == BASELINE else ""


def is_baseline(name: str) -> bool:
    return name.partition("@")[0] == BASELINE


def kind_of(name: str) -> type[Contender]:
    return KINDS[name.partition("@")[0]]


def in_peer_table(name: str) -> bool:
    """Whether the table of procmon-ctl against its peers has a row for it."""
    return not is_baseline(name) and (name not in READER_SETS or name in PEER_TABLE_SETS)


# --- the run ------------------------------------------------------------------


@dataclass
class Sample:
    rate: float
    created: int
    delivered: int | None = None  # with several readers: the least any reader got
    partial: int | None = None  # exec storm: execs shown with an incomplete argv
    lost: int | None = None
    kernel_ns: float | None = None
    kernel_all_ns: float | None = None  # procmon-json, exec storm: all its programs' ns per run
    reader_us: float | None = None  # with several readers: the median of theirs
    events: int | None = None
    ids: Counter[int] | None = None
    prog_ns: dict[str, float] = field(default_factory=dict)  # procmon-ctl: ns/run per program
    readers: list[ReaderFigures] = field(default_factory=list)  # ProcmonJson: each reader's
    slowdown: float | None = None  # against the untraced storm just before it

    def reader_us_med(self) -> float | None:
        """The median of its receiving readers' CPU per event."""
        return med(r.us_per_event for r in self.readers if not r.filtering)


@dataclass
class Instance:
    """One loaded procmon-ctl: this tree's, or the baseline commit's."""

    label: str
    cli: list[str]
    env: dict
    pin_dir: Path
    progs: dict[str, int] = field(default_factory=dict)  # name -> id
    shared_ring: bool = False  # one `events` ring for all its readers (before issue 27)
    argv: bool = True  # its exec records have argv (dc344e5's have not)

    def run(self, *args: str) -> str:
        return sh(*self.cli, *args, env=self.env)

    def load(self) -> None:
        self.run("load")
        for prog in sorted((self.pin_dir / "progs").iterdir()):
            self.progs[prog.name] = bpftool_json("prog", "show", "pinned", str(prog))["id"]
        self.shared_ring = (self.pin_dir / "maps" / "events").exists()
        self.argv = '"argv"' in self.run("schema")

    def unload(self) -> None:
        sh(*self.cli, "unload", env=self.env, check=False)

    def dropped(self) -> int | None:
        """The instance's dropped records (every reader's, since issue 27)."""
        return json.loads(self.run("stats", "--json")).get("dropped")


@dataclass
class Bench:
    args: argparse.Namespace
    current: Instance
    work: Path
    baselines: dict[str, Instance] = field(default_factory=dict)  # commit -> its instance
    empty_cgroup: Path | None = None  # for the readers that filter out every record
    results: dict = field(default_factory=dict)  # (storm, contender) -> [Sample]
    slowdowns: dict = field(default_factory=dict)  # (storm, contender) -> [ratio per round]
    unrunnable: dict[str, str] = field(default_factory=dict)  # contender -> why not
    names: list[str] = field(default_factory=list)  # the contenders, in the given order

    def round(self, n: int, order: list[str]) -> None:
        """Each storm under each contender in `order`, each with a fresh contender
        (so its output holds exactly one storm).  Each contender's storm follows an
        untraced storm of its own, and its slowdown is against that one: on this
        shared VM the untraced rate drifts by 15-30 % within a minute, and the pair
        a few seconds apart sees the same drift."""
        counts = {"fork": self.args.forks, "thread": self.args.threads, "exec": self.args.execs}
        for storm in STORMS:
            if counts[storm] <= 0:
                continue
            ratios = {}
            for name in order:
                if name == "untraced" or storm not in kind_of(name).storms:
                    continue
                if name in self.unrunnable:
                    continue
                base = self.run_one("untraced", storm, counts[storm])
                s = self.run_one(name, storm, counts[storm])
                ratios[name] = s.slowdown = s.rate / base.rate
                self.slowdowns.setdefault((storm, "untraced"), []).append(1.0)
                self.slowdowns.setdefault((storm, name), []).append(ratios[name])
            print(
                f"round {n + 1}, {storm} storm: "
                + ", ".join(f"{name} {ratio:.2f}" for name, ratio in ratios.items()),
                flush=True,
            )

    def run_one(self, name: str, storm: str, count: int) -> Sample:
        c = kind_of(name)(name, self)
        try:
            c.start(self.work, storm)
            s = self.measure(c, storm, count)
        finally:
            c.stop()
        ids0 = None  # the first reader's (the tracer's)
        if isinstance(c, ProcmonJson):
            for figures, r in zip(s.readers, c.readers, strict=True):
                ids, figures.lost = read_stream(r.out, storm)
                figures.delivered = sum(min(k, ids[i]) for i, k in s.ids.items())
                ids0 = ids if ids0 is None else ids0
            receiving = [r for r in s.readers if not r.filtering]
            s.delivered = min((r.delivered for r in receiving), default=None)
            if storm == "exec" and not (c.inst.argv and c.reads_argv):
                s.delivered = None  # no exec can be told from another without argv
            # `lost` is the dropped counter over the storm's window; the gap lines are
            # each reader's own (with one ring for all, before issue 27, the first ones
            # may report drops from before this reader).
            if s.lost is None:
                s.lost = sum(r.lost for r in s.readers)
            s.reader_us = med(r.us_per_event for r in receiving)
            s.events = receiving[0].events if receiving else None
            c.remove_outputs()
        elif c.out is not None:
            ids0, _ = c.seen(storm)
            s.delivered = sum(min(k, ids0[i]) for i, k in s.ids.items())
            c.out.unlink(missing_ok=True)
        if storm == "exec" and ids0 is not None and s.delivered is not None:
            # Execs shown, but not with the argv they were given (storm.c puts the
            # token third): the tracer cut or lost some of it.
            tokens = Counter(argv[2] for argv in ids0 if len(argv) > 2)
            s.partial = sum(1 for argv in s.ids if tokens[argv[2]]) - s.delivered
        s.ids = None
        self.results.setdefault((storm, name), []).append(s)
        return s

    def measure(self, c: Contender, storm: str, count: int) -> Sample:
        procmon = c.inst if isinstance(c, ProcmonJson) else self.current
        is_procmon = isinstance(c, ProcmonJson | ProcmonIdle)
        reader = c.proc.pid if c.proc else None  # a peer's (ProcmonJson: mark())
        lines0 = c.lines() if reader else 0
        cpu0 = task_cpu_ns(reader) if reader else 0
        if isinstance(c, ProcmonJson):
            c.mark()
        k0 = [prog_stats(i) for i in c.prog_ids]
        all0 = all_prog_stats(procmon.progs) if is_procmon else {}
        drop0 = procmon.dropped() if isinstance(c, ProcmonJson) else None
        res = run_storm(self.args.storm, storm, count, self.args.seconds, self.work)
        c.drain()
        cpu1 = task_cpu_ns(reader) if reader else 0
        k1 = [prog_stats(i) for i in c.prog_ids]
        all1 = all_prog_stats(procmon.progs) if is_procmon else {}
        s = Sample(rate=res.rate, created=res.created, ids=res.ids)
        runs = max((b[1] - a[1] for a, b in zip(k0, k1, strict=True)), default=0)
        if runs > 0:
            s.kernel_ns = sum(b[0] - a[0] for a, b in zip(k0, k1, strict=True)) / runs
        # Each of procmon-ctl's programs that ran, its own mean per run: the other
        # processes of the machine run them too, so a sum over the storm's children
        # would overstate it.
        for prog, (ns0, cnt0) in all0.items():
            ns1, cnt1 = all1.get(prog, (ns0, cnt0))
            if cnt1 > cnt0:
                s.prog_ns[prog] = (ns1 - ns0) / (cnt1 - cnt0)
        if storm == "exec" and s.prog_ns:
            # fork, exec and exit: once per exec each
            s.kernel_all_ns = sum(s.prog_ns.values())
        if isinstance(c, ProcmonJson):
            s.readers = c.figures()
        elif c.out is not None:
            s.events = c.lines() - lines0
            if reader and s.events:
                s.reader_us = (cpu1 - cpu0) / 1e3 / s.events
        if drop0 is not None:
            drop1 = procmon.dropped()
            s.lost = drop1 - drop0 if drop1 is not None else None
        return s

    def cli_latency(self) -> dict[str, float]:
        """Median wall times, the commands taking turns (so drift hits all alike).
        The two bare interpreters say where the floor is: `stats` must import Typer,
        pydantic and sh (issue 2: bpftool through sh into the models, via Typer)."""
        if self.args.cli_runs <= 0:
            return {}
        inst = self.current
        cmds = {
            "procmon-ctl stats --json": [*inst.cli, "stats", "--json"],
            "bpftool -j map dump pinned …/counters": [
                "bpftool",
                "-j",
                "map",
                "dump",
                "pinned",
                str(inst.pin_dir / "maps/counters"),
            ],
            "python -c pass": [sys.executable, "-c", "pass"],
            FLOOR_LABEL: [sys.executable, "-c", "import typer, pydantic, sh"],
        }
        times: dict[str, list[float]] = {label: [] for label in cmds}
        for _ in range(self.args.cli_runs):
            for label, argv in cmds.items():
                t = time.perf_counter()
                subprocess.run(argv, env=inst.env, check=True, capture_output=True)
                times[label].append(time.perf_counter() - t)
        return {label: statistics.median(v) * 1e3 for label, v in times.items()}


def med(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec: str, none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def table(bench: Bench, names: list[str]) -> str:
    rows = [
        "| storm | contender | rate /s (median) | slowdown (median, min-max) "
        "| delivered / created | lost | kernel ns/run | reader µs/event |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for storm in STORMS:
        for name in names:
            ss = bench.results.get((storm, name), [])
            if not ss:
                continue
            sd = bench.slowdowns[(storm, name)]
            created = sum(s.created for s in ss)
            delivered = [s.delivered for s in ss if s.delivered is not None]
            lost = [s.lost for s in ss if s.lost is not None]
            if delivered:
                pct = 100 * sum(delivered) / created
                comp = f"{sum(delivered)} / {created} ({pct:.2f} %)"
                partial = sum(s.partial or 0 for s in ss)
                if partial:
                    comp += f"; {partial} more with argv incomplete"
            else:
                comp = "n/a"
            rng = f"{min(sd):.2f}-{max(sd):.2f}"
            rows.append(
                f"| {storm} | {name} | {med(s.rate for s in ss):,.0f} | "
                f"{med(sd):.2f} ({rng}) | {comp} | "
                f"{sum(lost) if lost else 'n/a'} | {fmt(med(s.kernel_ns for s in ss), '.0f')} | "
                f"{fmt(med(s.reader_us for s in ss), '.2f')} |"
            )
        for name in names:
            if name in bench.unrunnable and storm in kind_of(name).storms:
                why = bench.unrunnable[name].replace("|", "\\|")
                rows.append(f"| {storm} | {name} | not runnable on this kernel: {why} | | | | | |")
    return "\n".join(rows)


def verdicts(bench: Bench, lat: dict[str, float]) -> list[str]:
    """The issue-5 targets, checked against this run's figures."""

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    out = []
    for storm in ("fork", "thread"):
        ss = bench.results.get((storm, "procmon-json"), [])
        if not ss:
            continue
        created = sum(s.created for s in ss)
        delivered = sum(s.delivered or 0 for s in ss)
        lost = sum(s.lost or 0 for s in ss)
        slow = med(bench.slowdowns[(storm, "procmon-json")])
        kern = med(s.kernel_ns for s in ss)
        cpu = med(s.reader_us for s in ss)
        out += [
            f"- {storm} storm, completeness 100 % with 0 lost: {delivered} / {created}, "
            f"{lost} lost: {ok(delivered == created and lost == 0)}",
            f"- {storm} storm, slowdown >= 0.90 with the JSON reader: {slow:.2f}: "
            f"{ok(slow >= 0.90)}",
            f"- {storm} storm, kernel cost <= 1 µs per event with a reader: "
            f"{fmt(kern, '.0f')} ns: {ok(kern is not None and kern <= 1000)}",
            f"- {storm} storm, reader CPU <= 2 µs per event: {fmt(cpu, '.2f')} µs: "
            f"{ok(cpu is not None and cpu <= 2.0)}",
        ]
    out += exec_verdicts(bench, ok)
    stats_ms = next((v for k, v in lat.items() if k.startswith("procmon-ctl")), None)
    if stats_ms is not None:
        floor = lat.get(FLOOR_LABEL)
        why = (
            f" (importing the libraries it must use alone takes {floor:.0f} ms)"
            if floor is not None and stats_ms > 250
            else ""
        )
        out.append(
            f"- `procmon-ctl stats` median <= 250 ms: {stats_ms:.0f} ms: {ok(stats_ms <= 250)}{why}"
        )
        if floor:
            ratio = stats_ms / floor
            # one more digit where two would show the target itself but miss it
            shown = f"{ratio:.2f}" if f"{ratio:.2f}" != "1.30" or ratio == 1.3 else f"{ratio:.3f}"
            out.append(
                f"- `procmon-ctl stats` <= 1.3x its import floor (issue 28.6): {stats_ms:.0f} / "
                f"{floor:.0f} ms = {shown}x: {ok(ratio <= 1.3)}"
            )
    return out


def exec_figures(bench: Bench, name: str) -> dict:
    """A contender's exec-storm figures, as issue 28.5 compares them.  Kernel ns per exec:
    all the programs it ran for the storm (procmon-ctl: fork, exec and exit, each once
    per exec; bpftrace: one; execsnoop: two), not only the one that writes the exec."""
    rs = bench.results[("exec", name)]
    created = sum(s.created for s in rs)
    done = [s.delivered for s in rs if s.delivered is not None]
    events = sum(s.events or 0 for s in rs)
    per_exec = [s.kernel_all_ns if s.kernel_all_ns is not None else s.kernel_ns for s in rs]
    reader = med(s.reader_us for s in rs)
    lines = events / created if created else None
    return {
        "slowdown": med(bench.slowdowns[("exec", name)]),
        "complete": 100 * sum(done) / created if done and created else None,
        "kernel": med(per_exec),
        "reader": reader,
        "per_exec": lines,
        "reader_per_exec": reader * lines if reader is not None and lines else None,
    }


def exec_peers(bench: Bench) -> list[str]:
    """The peers that ran the exec storm, in the given order."""
    return [
        n
        for n in bench.names
        if n not in ("untraced", "procmon-json", NOARGV)
        and not is_baseline(n)
        and ("exec", n) in bench.results
    ]


EXEC_TABLE_TITLE = "Exec storm, one reader, against each peer (issue 28.5)"


def exec_table(bench: Bench) -> str:
    """Issue 28.5: the exec storm with one reader against each peer, figure by figure."""
    if ("exec", "procmon-json") not in bench.results:
        return ""
    rows = [
        "| exec storm | slowdown (median) | execs with their complete argv "
        "| kernel ns per exec (all its programs) | reader µs per event "
        "| lines per exec | reader µs per exec |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("procmon-json", *exec_peers(bench)):
        f = exec_figures(bench, name)
        rows.append(
            f"| {name} | {fmt(f['slowdown'], '.2f')} | {fmt(f['complete'], '.2f')} % | "
            f"{fmt(f['kernel'], ',.0f')} | {fmt(f['reader'], '.2f')} | "
            f"{fmt(f['per_exec'], '.1f')} | {fmt(f['reader_per_exec'], '.2f')} |"
        )
    for name in bench.unrunnable:
        rows.append(f"| {name} | not runnable on this kernel | | | | | |")
    return "\n".join(rows)


def exec_verdicts(bench: Bench, ok) -> list[str]:
    """Issues 14.6 and 28.5: the exec storm's targets, and procmon-ctl against each peer
    that ran."""
    ss = bench.results.get(("exec", "procmon-json"), [])
    if not ss:
        return []
    me = exec_figures(bench, "procmon-json")
    created = sum(s.created for s in ss)
    delivered = sum(s.delivered or 0 for s in ss)
    lost = sum(s.lost or 0 for s in ss)
    slow, cpu = me["slowdown"], me["reader"]
    kern = med(s.kernel_ns for s in ss)
    kern_all = me["kernel"]
    per_exec = me["per_exec"] or 0
    out = [
        f"- exec storm, slowdown >= 0.95 with the JSON reader: {slow:.2f}: {ok(slow >= 0.95)}",
        f"- exec storm, slowdown >= 0.97 with one reader (issue 28.5): {slow:.2f}: "
        f"{ok(slow >= 0.97)}",
        f"- exec storm, 100 % of execs delivered with their complete argv, 0 lost: "
        f"{delivered} / {created}, {lost} lost: {ok(delivered == created and lost == 0)}",
        f"- exec storm, kernel cost <= 1.5 µs per exec record (`handle_exec`): "
        f"{fmt(kern, '.0f')} ns: {ok(kern is not None and kern <= 1500)}"
        + (
            f" (its fork, exec and exit programs together, each once per exec: {kern_all:.0f} ns)"
            if kern_all is not None
            else ""
        ),
        f"- exec storm, reader CPU per event: {fmt(cpu, '.2f')} µs "
        f"({per_exec:.1f} lines per exec: fork, exec, exit; "
        f"{fmt(cpu * per_exec if cpu is not None else None, '.2f')} µs per exec)",
    ]
    better = {  # figure: (label, its format, procmon-ctl's is better)
        "slowdown": ("slowdown", "{:.2f}", lambda a, b: a > b),
        "complete": ("complete argv", "{:.1f} %", lambda a, b: a > b),
        "kernel": ("kernel ns per exec", "{:,.0f}", lambda a, b: a < b),
        "reader": ("reader CPU per event", "{:.2f} µs", lambda a, b: a < b),
    }
    for name in exec_peers(bench):
        peer = exec_figures(bench, name)
        parts, ahead = [], True
        for key, (label, spec, wins) in better.items():
            if me[key] is None or peer[key] is None:
                parts.append(f"{label} n/a")  # no BPF program (forkstat), or no lines
                continue
            won = wins(me[key], peer[key])
            ahead = ahead and won
            side_by_side = f"{spec.format(me[key])} against {spec.format(peer[key])}"
            parts.append(f"{label} {side_by_side} {'ahead' if won else 'NOT ahead'}")
        out.append(f"- exec storm, ahead of {name} on each figure: {', '.join(parts)}: {ok(ahead)}")
    for name, why in bench.unrunnable.items():
        out.append(f"- exec storm, {name}: not runnable on this kernel: {why}")
    out += argv_cost(bench)
    return out


def argv_cost(bench: Bench) -> list[str]:
    """Issue 28.3's floor: what reading argv adds, procmon-json against procmon-json-
    noargv (`--argv-bytes 0`) round by round."""
    if ("exec", NOARGV) not in bench.results:
        return []
    parts = []
    figures = (
        ("`handle_exec`", ns_per_run("handle_exec")),
        ("fork + exec + exit per exec", ns_per_exec),
    )
    for what, figure in figures:
        with_argv = med(figure(s) for s in bench.results[("exec", "procmon-json")])
        without = med(figure(s) for s in bench.results[("exec", NOARGV)])
        added = per_round(
            bench, "exec", "procmon-json", NOARGV, lambda a, b, f=figure: _minus(f(a), f(b))
        )
        parts.append(
            f"{what} {fmt(with_argv, ',.0f')} ns with argv, {fmt(without, ',.0f')} without "
            f"({fmt(added, '+,.0f')} ns round by round)"
        )
    return [
        f"- exec storm, what argv costs (issue 28.3, against `--argv-bytes 0`): {'; '.join(parts)}"
    ]


# Readers of one instance (issue 27.8): per added reader, at most this much kernel time
# per record it receives, and per record it filters out; "no worse than the baseline"
# allows this much (the spread of one contender between rounds here is wider).
ADDED_RECEIVING_NS = 150
ADDED_FILTERING_NS = 30
NO_WORSE = 1.05


def reader_count(name: str) -> tuple[int, int]:
    """(readers getting every record, readers filtering every record out) of a set."""
    kind = kind_of(name)
    if name == "procmon-idle":
        return 0, 0
    return kind.receivers, kind.filtering


def reader_label(bench: Bench, name: str) -> str:
    if is_baseline(name):
        return f"1 ({baseline_of(name)})"
    receiving, filtering = reader_count(name)
    return f"{receiving} + {filtering} filtering all out" if filtering else str(receiving)


def reader_phrase(name: str) -> str:
    """A set of readers in a sentence: "4 readers", "1 reader + 7 filtering all out"."""
    receiving, filtering = reader_count(name)
    phrase = f"{receiving} reader{'s' if receiving != 1 else ''}"
    return phrase + (f" + {filtering} filtering all out" if filtering else "")


def measured_progs(storm: str) -> tuple[str, str]:
    """The program that writes the storm's records, and the exit program."""
    return ("handle_exec" if storm == "exec" else "handle_fork"), "handle_exit"


def prog_med(bench: Bench, storm: str, name: str, prog: str) -> float | None:
    return med(s.prog_ns.get(prog) for s in bench.results.get((storm, name), []))


def per_round(bench: Bench, storm: str, name: str, other: str, f) -> float | None:
    """The median over rounds of f(name's sample, other's sample of the same round):
    the two ran a minute apart at most, so this machine's drift (tens of % within
    minutes) hits both alike; a difference of medians would take it in whole."""
    pairs = zip(
        bench.results.get((storm, name), []), bench.results.get((storm, other), []), strict=False
    )
    return med(f(a, b) for a, b in pairs)


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def added_per_reader(bench: Bench, storm: str, name: str, prog: str) -> float | None:
    """Kernel ns per run that each reader beyond the first adds to `prog`, against
    procmon-json (one reader) in the same round."""
    receiving, filtering = reader_count(name)
    extra = receiving + filtering - 1
    if extra <= 0:
        return None

    def added(many: Sample, one: Sample) -> float | None:
        if prog not in many.prog_ns or prog not in one.prog_ns:
            return None
        return (many.prog_ns[prog] - one.prog_ns[prog]) / extra

    return per_round(bench, storm, name, "procmon-json", added)


def reader_sets(bench: Bench) -> list[str]:
    """READER_SETS as they ran, BASELINE as each baseline's contender."""
    out = []
    for name in READER_SETS:
        out += [n for n in bench.names if is_baseline(n)] if name == BASELINE else [name]
    return out


def readers_table(bench: Bench) -> str:
    """The figures of READER_SETS side by side; empty unless more than one reader or a
    baseline ran (else the table of procmon-ctl against its peers has them all)."""
    if not any(not in_peer_table(name) for _, name in bench.results):
        return ""
    rows = [
        "| storm | readers | rate /s (median) | slowdown (median, min-max) "
        "| record program ns/run | exit program ns/run "
        "| added per extra reader, ns (record / exit program; median of rounds) "
        "| reader µs/event (median; max) | delivered / created (the least any reader got) "
        "| lost (dropped counter; gap lines) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for storm in STORMS:
        record, exits = measured_progs(storm)
        for name in reader_sets(bench):
            ss = bench.results.get((storm, name), [])
            if not ss:
                continue
            sd = bench.slowdowns[(storm, name)]
            figs = [r for s in ss for r in s.readers]
            receiving = [r for r in figs if not r.filtering]
            per_event = [r.us_per_event for r in receiving if r.us_per_event is not None]
            cpu = (
                f"{med(per_event):.2f}; {max(per_event):.2f}"
                if per_event
                else ("none read" if name == "procmon-idle" else "n/a")
            )
            created = sum(s.created for s in ss)
            if receiving and all(s.delivered is not None for s in ss):
                got = sum(s.delivered or 0 for s in ss)
                comp = f"{got} / {created} ({100 * got / created:.2f} %)"
            elif receiving and storm == "exec":
                comp = "n/a (exec records without argv)"
            else:
                comp = "n/a"
            if any(r.filtering for r in figs):
                shown = sum(r.events for r in figs if r.filtering)
                idle = med(r.cpu_us for r in figs if r.filtering)
                comp += f"; filtering readers: {shown} lines, {idle:.0f} µs CPU each"
            lost = [s.lost for s in ss if s.lost is not None]
            gaps = sum(r.lost for r in figs)
            lost_cell = f"{sum(lost) if lost else 'n/a'}; {gaps}" if figs else "n/a"
            added = [added_per_reader(bench, storm, name, p) for p in (record, exits)]
            shown_added = any(x is not None for x in added)
            added_cell = " / ".join(fmt(x, "+.0f") for x in added) if shown_added else ""
            rows.append(
                f"| {storm} | {reader_label(bench, name)} | {med(s.rate for s in ss):,.0f} | "
                f"{med(sd):.2f} ({min(sd):.2f}-{max(sd):.2f}) | "
                f"{fmt(prog_med(bench, storm, name, record), '.0f')} | "
                f"{fmt(prog_med(bench, storm, name, exits), '.0f')} | {added_cell} | {cpu} | "
                f"{comp} | {lost_cell} |"
            )
    return "\n".join(rows) if len(rows) > 2 else ""


def reader_verdicts(bench: Bench) -> list[str]:
    """Issue 27.8's targets, checked against this run's figures."""

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    out = []
    for storm in STORMS:
        record, exits = measured_progs(storm)
        progs = (record, exits) if storm == "fork" else (record,)
        one = bench.results.get((storm, "procmon-json"), [])
        for name in (n for n in bench.names if is_baseline(n)):
            if not one or (storm, name) not in bench.results:
                continue
            if baseline_of(name)[:7] in KERNEL_BUDGETS:
                continue  # issue 28.1's: judged on kernel ns per run alone (kernel_table)
            # Each figure, as this tree's / the baseline's of the same round: the median
            # of those ratios is what is judged.  Kernel ns per run: kernel_table().
            base, pair = baseline_of(name), ("procmon-json", name)
            new = med(s.reader_us_med() for s in one)
            old = med(s.reader_us_med() for s in bench.results[(storm, name)])
            r = per_round(
                bench, storm, *pair, lambda a, b: ratio(a.reader_us_med(), b.reader_us_med())
            )
            if r is not None:
                out.append(
                    f"- {storm} storm, 1 reader, reader CPU per event no worse than {base}'s: "
                    f"{new:.2f} µs against {old:.2f}, {r:.2f}x round by round: "
                    f"{ok(r <= NO_WORSE)}"
                )
            new = med(bench.slowdowns[(storm, "procmon-json")])
            old = med(bench.slowdowns[(storm, name)])
            r = per_round(bench, storm, *pair, lambda a, b: ratio(a.slowdown, b.slowdown))
            if r is not None:
                out.append(
                    f"- {storm} storm, 1 reader, slowdown no worse than {base}'s: "
                    f"{new:.2f} against {old:.2f}, {r:.2f}x round by round: "
                    f"{ok(r >= 1 / NO_WORSE)}"
                )
        for name in ("procmon-json-4", "procmon-json-8", "procmon-json-1+7filtered"):
            if (storm, name) not in bench.results:
                continue
            receiving, filtering = reader_count(name)
            limit = ADDED_FILTERING_NS if filtering else ADDED_RECEIVING_NS
            what = "filters out" if filtering else "receives"
            for prog in progs:
                added = added_per_reader(bench, storm, name, prog)
                if added is None:
                    continue
                out.append(
                    f"- {storm} storm, {reader_phrase(name)}: each added reader adds "
                    f"<= {limit} ns to `{prog}` per record it {what}: {added:+.0f} ns: "
                    f"{ok(added <= limit)}"
                )
        if storm in ("fork", "thread") and (storm, "procmon-json-4") in bench.results:
            slow = med(bench.slowdowns[(storm, "procmon-json-4")])
            out.append(
                f"- {storm} storm, 4 readers, slowdown >= 0.90 of untraced: {slow:.2f}: "
                f"{ok(slow >= 0.90)}"
            )
        for name in reader_sets(bench):
            ss = bench.results.get((storm, name), [])
            if not ss or name == "procmon-idle" or is_baseline(name):
                continue
            figs = [(s, r) for s in ss for r in s.readers]
            short = sum(1 for s, r in figs if not r.filtering and r.delivered != s.created)
            gaps = sum(r.lost for _, r in figs)
            dropped = sum(s.lost or 0 for s in ss)
            leaked = sum(r.events for _, r in figs if r.filtering)
            receiving = sum(1 for _, r in figs if not r.filtering)
            line = (
                f"- {storm} storm, {reader_phrase(name)}: every reader got 100 % of the "
                f"storm with 0 lost: {receiving - short} of {receiving} reader-storms complete, "
                f"{dropped} dropped, {gaps} in gap lines"
            )
            good = short == 0 and gaps == 0 and dropped == 0
            if any(r.filtering for _, r in figs):
                line += f", {leaked} lines in the filtering readers' files"
                good = good and leaked == 0
            out.append(f"{line}: {ok(good)}")
    return out


# Kernel ns per run, this tree / a baseline's, in the same rounds: issue 28.1's budget is
# dc344e5's (the last main before exit de-duplication and argv), with the thread record
# at most 0.85x; against any other baseline, issue 27.8's "no worse" (NO_WORSE).
KERNEL_BUDGETS = {"dc344e5": (1.0, {("thread", "handle_fork"): 0.85})}
# Issue 29.6: against 152a429 (the last main before exit records said what the
# process cost), the exit program may add at most this many ns per run, in every
# storm; the other programs no more than NO_WORSE.
ADDED_NS_BUDGETS = {"152a429": {"handle_exit": 100.0}}


def ns_per_run(prog: str):
    """A Sample's kernel ns per run of `prog`."""
    return lambda s: s.prog_ns.get(prog)


def ns_per_exec(s: Sample) -> float | None:
    """A Sample's kernel ns per exec, its fork, exec and exit programs together."""
    return s.kernel_all_ns


# (storm, what, its figure in a Sample, the contender of this tree) for each row of
# kernel_table(): procmon-json's, and the exec program and the sum without argv
KERNEL_ROWS = (
    *(
        (storm, f"{prog} program (`handle_{prog}`)", ns_per_run(f"handle_{prog}"), "procmon-json")
        for storm, progs in (
            ("fork", "fork exit"),
            ("thread", "fork exit"),
            ("exec", "fork exec exit"),
        )
        for prog in progs.split()
    ),
    ("exec", "fork + exec + exit, per exec (all programs)", ns_per_exec, "procmon-json"),
    (
        "exec",
        "exec program (`handle_exec`), reader with --argv-bytes 0",
        ns_per_run("handle_exec"),
        NOARGV,
    ),
    ("exec", "fork + exec + exit, per exec, reader with --argv-bytes 0", ns_per_exec, NOARGV),
)


KERNEL_TABLE_TITLE = (
    "Kernel ns per run, this tree / each older commit (issue 28.1: dc344e5's, thread "
    "record <= 0.85x, the rest <= 1.00x; issue 29.6: 152a429's exit program + 100 ns at "
    "most; issue 27.8 and the rest: no worse, 5 % for noise)"
)


def kernel_target(commit: str, storm: str, what: str) -> float:
    default, rows = KERNEL_BUDGETS.get(commit[:7], (NO_WORSE, {}))
    return rows.get((storm, _program(what)), default)


def added_ns_target(commit: str, what: str) -> float | None:
    """The ns per run `what` may add to the baseline's (None: a ratio's target)."""
    return ADDED_NS_BUDGETS.get(commit[:7], {}).get(_program(what))


def _program(what: str) -> str:
    return what.split("`")[1] if "`" in what else ""


def kernel_table(bench: Bench) -> str:
    """Each program's kernel ns per run with one reader, this tree's and each baseline's,
    and the median of the per-round ratios against each, with its target met or not."""
    bases = [n for n in bench.names if is_baseline(n)]
    if not bases or not any((st, "procmon-json") in bench.results for st in STORMS):
        return ""
    head = "| storm | kernel ns per run, 1 reader | this tree |"
    rule = "|---|---|---:|"
    for name in bases:
        head += f" {baseline_of(name)} | this / {baseline_of(name)} (round by round) |"
        rule += "---:|---:|"
    rows = [head, rule]
    for storm, what, figure, who in KERNEL_ROWS:
        ours = bench.results.get((storm, who), [])
        if not ours or med(figure(s) for s in ours) is None:
            continue
        row = f"| {storm} | {what} | {med(figure(s) for s in ours):,.0f} |"
        for name in bases:
            theirs = bench.results.get((storm, name), [])
            r = per_round(
                bench,
                storm,
                who,
                name,
                lambda a, b, figure=figure: ratio(figure(a), figure(b)),
            )
            added = added_ns_target(baseline_of(name), what)
            if added is not None:
                d = per_round(bench, storm, who, name, lambda a, b, f=figure: _minus(f(a), f(b)))
                verdict = (
                    "n/a"
                    if d is None
                    else f"{d:+,.0f} ns, target <= +{added:.0f} ns: "
                    f"{'met' if d <= added else 'NOT met'}"
                )
                row += f" {fmt(med(figure(s) for s in theirs), ',.0f')} | {verdict} |"
                continue
            limit = kernel_target(baseline_of(name), storm, what)
            # one more digit where two would show the target itself but miss it
            shown = "n/a" if r is None else f"{r:.2f}"
            if r is not None and shown == f"{limit:.2f}" and r != limit:
                shown = f"{r:.3f}"
            verdict = (
                "n/a"
                if r is None
                else f"{shown}x, target <= {limit:.2f}x: {'met' if r <= limit else 'NOT met'}"
            )
            row += f" {fmt(med(figure(s) for s in theirs), ',.0f')} | {verdict} |"
        rows.append(row)
    return "\n".join(rows) if len(rows) > 2 else ""


def baseline_label(tree: Path) -> str:
    """The commit a baseline tree was made from (its stamp), else its directory's name
    (a link's own name: two links to one tree are two baselines)."""
    stamp = tree / "built.stamp"
    with contextlib.suppress(OSError):
        return stamp.read_text().strip()[:7]
    return Path(os.path.abspath(tree)).name


def code_state() -> str:
    """The commit measured, and which of procmon-ctl's own files differ from it."""
    head = sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD", check=False).strip()
    dirty = sh(
        "git", "-C", str(ROOT), "status", "--porcelain", "--", "procmon_ctl", "bpf", check=False
    ).split()
    changed = [x for x in dirty if "/" in x]
    if not head:
        return "not a git checkout"
    return f"commit {head}" + (
        f", with uncommitted changes in {', '.join(changed)}" if changed else ""
    )


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    distro = "?"
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    versions = []
    for argv in (["bpftool", "version"], ["bpftrace", "--version"], ["forkstat", "-h"]):
        with contextlib.suppress(Exception):
            versions.append(sh(*argv, check=False).splitlines()[0].strip())
    return (
        f"{distro}, kernel {platform.release()}, {os.cpu_count()} CPUs ({model}), "
        f"{mem_kb / 1048576:.0f} GiB; {'; '.join(versions)}"
    )


def chart(bench: Bench, names: list[str], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): no chart", file=sys.stderr)
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    storms = [st for st in STORMS if any(k[0] == st for k in bench.results)]
    width = 0.8 / max(len(storms), 1)
    shown = [
        n
        for n in names
        if n != "untraced" and in_peer_table(n) and any((st, n) in bench.results for st in STORMS)
    ]
    readers = [
        n
        for n in shown
        if any(s.reader_us for st in STORMS for s in bench.results.get((st, n), []))
    ]
    for i, storm in enumerate(storms):
        offset = (i - (len(storms) - 1) / 2) * width
        xs = [j + offset for j in range(len(shown))]
        ax1.bar(
            xs,
            [med(bench.slowdowns.get((storm, n), [0])) or 0 for n in shown],
            width,
            label=f"{storm} storm",
        )
        xs2 = [j + offset for j in range(len(readers))]
        ax2.bar(
            xs2,
            [med(s.reader_us for s in bench.results.get((storm, n), [])) or 0 for n in readers],
            width,
            label=f"{storm} storm",
        )
    ax1.axhline(0.9, color="grey", linestyle="--", linewidth=1, label="target 0.90")
    if "exec" in storms:
        ax1.axhline(0.95, color="grey", linestyle=":", linewidth=1, label="target 0.95 (exec)")
    ax1.set_xticks(range(len(shown)), shown)
    ax1.set_ylabel("storm rate / untraced rate (higher is better)")
    ax1.set_title("Workload slowdown (median of rounds)")
    tallest = max((med(v) or 0 for v in bench.slowdowns.values()), default=1.0)
    ax1.set_ylim(0, max(1.1, tallest * 1.08))
    ax1.legend(fontsize=8)
    ax2.axhline(2.0, color="grey", linestyle="--", linewidth=1, label="target 2 µs")
    ax2.set_xticks(range(len(readers)), readers)
    ax2.set_ylabel("reader CPU per event, µs (lower is better)")
    ax2.set_title("Reader CPU per event written")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    tmp.replace(path)
    return True


def write_doc(
    bench: Bench,
    names: list[str],
    tbl: str,
    etbl: str,
    ktbl: str,
    rtbl: str,
    lat: dict,
    command: str,
    png: Path | None,
    started: dt.datetime,
    elapsed: float,
) -> None:
    a = bench.args
    notes = Path(__file__).with_name("notes.md")
    lines = [
        "# Benchmarks: procmon-ctl, bpftrace, forkstat and execsnoop",
        "",
        "Generated by `scripts/bench/bench.py` (`make bench`); do not edit the figures by hand.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC ({elapsed:.0f} s)",
        f"- Machine: {machine()}",
        f"- Command: `{command}`",
        f"- Code: {code_state()}",
        f"- Workloads: two concurrent `build/storm` processes, {a.forks} forks each "
        f"(fork + _exit + waitpid), {a.threads} threads each (pthread create + join) "
        f"and {a.execs} execs each (fork + execve of storm itself with 20 arguments "
        "+ waitpid), "
        f"at most {a.seconds:g} s; {a.rounds} rounds, contenders in a rotated order, "
        "each right after an untraced storm of its own.",
        "",
        tbl,
        "",
        "CLI latency (median wall time of "
        f"{a.cli_runs} runs): " + "; ".join(f"`{k}` {v:.0f} ms" for k, v in lat.items()) + ".",
        "",
    ]
    if png is not None:
        lines += [f"![slowdown and reader CPU per event]({png.name})", ""]
    if etbl:
        lines += [
            f"## {EXEC_TABLE_TITLE}, in this run",
            "",
            etbl,
            "",
        ]
    lines += [
        "## Targets (issue 5; exec storm: issues 14.6 and 28.5), in this run",
        "",
        *verdicts(bench, lat),
        "",
    ]
    bases = ", ".join(f"`{baseline_of(n)}`" for n in names if is_baseline(n))
    if ktbl:
        lines += [
            f"## {KERNEL_TABLE_TITLE}, in this run",
            "",
            "Each with one reader (`events --json --threads`; exec storm: `events --json`): "
            f"this tree's, and the CLI and BPF object of each older commit ({bases}), "
            "loaded beside this tree's.",
            "",
            ktbl,
            "",
        ]
    if rtbl:
        lines += [
            "## Readers of one instance (issue 27.8), in this run",
            "",
            "Each reader `events --json --threads > file`; 1 (COMMIT) is that commit's"
            f" CLI and BPF object ({bases}), loaded beside this tree's.",
            "",
            rtbl,
            "",
            *reader_verdicts(bench),
            "",
        ]
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    a.doc.write_text("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="small counts, 2 rounds: a few minutes on a quiet machine",
    )
    p.add_argument("--rounds", type=int)
    p.add_argument("--forks", type=int, help="forks per storm process")
    p.add_argument("--threads", type=int, help="threads per storm process")
    p.add_argument("--execs", type=int, help="execs per storm process (0: no exec storm)")
    p.add_argument("--seconds", type=float, default=20.0, help="time limit of one storm")
    p.add_argument("--cli-runs", type=int)
    p.add_argument(
        "--contenders",
        help="comma-separated [default: all; baseline-json (each --baseline) or "
        "baseline-json@COMMIT only with --baseline]",
    )
    p.add_argument(
        "--readers",
        action="store_true",
        help="only procmon-ctl with 0, 1, 4 and 8 readers and the baselines' (issue 27.8): "
        "fork and thread storms, no CLI latency",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="a tree of an older commit with its BPF object built (`make bench` builds "
        "build/baseline-COMMIT), run as baseline-json@COMMIT; may be given more than once",
    )
    p.add_argument("--storm", type=Path, default=ROOT / "build" / "storm")
    p.add_argument("--pin-dir", type=Path, default=Path("/sys/fs/bpf/procmon-bench"))
    p.add_argument(
        "--doc",
        type=Path,
        help="write the Markdown report here [default: docs/benchmarks.md; none with --quick]",
    )
    p.add_argument("--png", type=Path, help="the chart [default: beside --doc]")
    a = p.parse_args()
    quick = {"rounds": 2, "forks": 4000, "threads": 20000, "execs": 1500, "cli_runs": 5}
    full = {"rounds": 5, "forks": 20000, "threads": 60000, "execs": 8000, "cli_runs": 15}
    if a.readers:
        # 3 rounds: the comparisons are judged on the median of per-round ones
        quick |= {"rounds": 3, "execs": 0, "cli_runs": 0}
        full |= {"execs": 0, "cli_runs": 0}
    for k, v in (quick if a.quick else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.doc is None and not a.quick and not a.readers:
        a.doc = ROOT / "docs" / "benchmarks.md"
    if a.png is None and a.doc is not None:
        a.png = a.doc.with_name("benchmarks.png")
    trees = {}  # commit -> its tree, in the order given
    for tree in a.baseline:
        if not (tree / "procmon_ctl" / "data").is_dir():
            p.error(f"--baseline {tree}: not a tree with its object built")
        trees.setdefault(baseline_label(tree), tree)
    if a.contenders is not None:
        given = [n.strip() for n in a.contenders.split(",") if n.strip()]
    else:
        given = ["untraced", *READER_SETS] if a.readers else list(CONTENDERS)
    names = []
    for n in given:
        names += [f"{BASELINE}@{commit}" for commit in trees] if n == BASELINE else [n]
    unknown = [n for n in names if n.partition("@")[0] not in KINDS]
    if unknown or "untraced" not in names:
        p.error(f"--contenders: need untraced, and only {', '.join(CONTENDERS)}")
    for n in names:
        if is_baseline(n) and baseline_of(n) not in trees:
            p.error(f"{n} needs --baseline DIR, the tree of {baseline_of(n) or 'a commit'}")
    baseline_pin_dirs = {
        baseline_of(n): a.pin_dir.with_name(f"{a.pin_dir.name}-baseline-{baseline_of(n)}")
        for n in names
        if is_baseline(n)
    }
    for pin_dir in baseline_pin_dirs.values():
        if pin_dir.exists():
            p.error(f"{pin_dir} exists: another bench running? (unload it first)")
    if os.geteuid() != 0:
        p.error("run as root")
    for tool in ("bpftool", *(t for t in ("bpftrace", "forkstat", EXECSNOOP) if t in names)):
        if shutil.which(tool) is None:
            p.error(f"{tool} not found: `make bench` installs it")
    if not a.storm.exists():
        p.error(f"{a.storm} not built: `make bench` builds it")
    if a.pin_dir.exists():
        p.error(f"{a.pin_dir} exists: another bench running? (unload it first)")

    try:
        lock = take_bench_lock()
    except StateError as e:
        p.error(str(e))
    if lock is None:
        p.error(f"another bench is running (it holds {LOCK})")
    venv_cli = ROOT / ".venv" / "bin" / "procmon-ctl"
    cli = [str(venv_cli)] if venv_cli.exists() else [sys.executable, "-m", "procmon_ctl"]
    started = dt.datetime.now(dt.UTC)
    t_start = time.monotonic()
    command = shlex.join(["scripts/bench/bench.py", *sys.argv[1:]])
    work = Path(tempfile.mkdtemp(prefix="procmon-bench-"))
    env = {**os.environ, "PROCMON_PIN_DIR": str(a.pin_dir)}
    bench = Bench(a, Instance("this tree", cli, env, a.pin_dir), work, names=names)
    for commit, pin_dir in baseline_pin_dirs.items():
        # -P: the working directory (this tree, under `make`) must not come first
        base_env = {**env, "PROCMON_PIN_DIR": str(pin_dir)}
        base_env["PYTHONPATH"] = str(trees[commit].resolve())
        bench.baselines[commit] = Instance(
            commit, [sys.executable, "-P", "-m", "procmon_ctl"], base_env, pin_dir
        )
    stats_before = STATS_SYSCTL.read_text().strip()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        STATS_SYSCTL.write_text("1")
        if EXECSNOOP in names and a.execs > 0:
            why = execsnoop_runs()
            if why is not None:
                bench.unrunnable[EXECSNOOP] = why
                print(f"{EXECSNOOP}: not runnable on this kernel: {why}", flush=True)
        if any(getattr(kind_of(n), "filtering", 0) for n in names):
            bench.empty_cgroup = v2_root() / f"procmon-bench-empty-{os.getpid()}"
            bench.empty_cgroup.mkdir()
        bench.current.load()
        for inst in bench.baselines.values():
            inst.load()
        for n in range(a.rounds):
            k = n % len(names)
            bench.round(n, names[k:] + names[:k])
        lat = bench.cli_latency()
    finally:
        STATS_SYSCTL.write_text(stats_before)
        for inst in (bench.current, *bench.baselines.values()):
            with contextlib.suppress(Exception):
                inst.unload()
        if bench.empty_cgroup is not None:
            with contextlib.suppress(OSError):
                bench.empty_cgroup.rmdir()
        shutil.rmtree(work, ignore_errors=True)
    tbl = table(bench, [n for n in names if in_peer_table(n)])
    print()
    print(tbl)
    print()
    for label, ms in lat.items():
        print(f"CLI latency: {label}: {ms:.0f} ms (median of {a.cli_runs})")
    print()
    print("\n".join(verdicts(bench, lat)))
    etbl = exec_table(bench)
    if etbl:
        print()
        print(f"{EXEC_TABLE_TITLE}:")
        print(etbl)
    ktbl = kernel_table(bench)
    if ktbl:
        print()
        print(f"{KERNEL_TABLE_TITLE}:")
        print(ktbl)
    rtbl = readers_table(bench)
    if rtbl:
        print()
        print(rtbl)
        print()
        print("\n".join(reader_verdicts(bench)))
    if a.doc is not None:
        png = a.png if a.png and chart(bench, names, a.png) else None
        elapsed = time.monotonic() - t_start
        write_doc(bench, names, tbl, etbl, ktbl, rtbl, lat, command, png, started, elapsed)
        print(f"wrote {a.doc}" + (f" and {png}" if png else ""))
    print(f"done in {time.monotonic() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Interrupted, KeyboardInterrupt) as err:
        print(f"bench interrupted: {err}", file=sys.stderr)
        sys.exit(130)
