#!/usr/bin/env python3
"""A long run stays flat: a million processes through each reader, and its memory
at the start and at the end (issue 12.11).

For each mode, a private instance of its own (`procmon-ctl --pin-dir
/sys/fs/bpf/procmon-longrun-PID-MODE load` and `attach`) and its reader, writing to
/dev/null, while build/forkloop (scripts/bench/forkloop.c) makes --processes
short-lived processes (vfork, _exit(0), reap) as fast as it can:

  table      procmon-ctl events
  json       procmon-ctl events --json          (the C formatter, when built)
  tree       procmon-ctl events --tree 1        (every process is followed)
  run        procmon-ctl run --json -- forkloop N   (its reader is run itself)
  wide, raw, json-tree (events --json --tree 1): on request, with --modes

The reader's VmRSS is taken once the generator has made --start processes (50,000)
and again at the end, once the reader has drained the ring; VmHWM is its peak.  The
table gives, per mode: processes made; processes counted (for `events`, the
instance's `stats` counter `processes`: every new process of the host in that
window; for `run`, the processes its summary reports); records written to the ring
and records lost (`stats`: `produced` and `dropped`; for `run`, whose instance is
pinned nowhere, the summary's `lost_records`); RSS at the start and at the end,
their ratio, the peak, the reader's CPU time and the wall time.  The RSS line
under it is VmRSS at every tenth of the run.

A reader is flat when its RSS at the end is within --tolerance (2 MiB) of its RSS at
the start; the exit code is 1 if one is not, 2 on a usage error.  Every pin dir
(and its lock files) and every process the script started are removed, also on
failure and on Ctrl-C.  One bench at a time (scripts/bench/bench.py's lock).

    .venv/bin/python scripts/bench/long_run.py [--processes 1000000] [--modes table,json,tree,run]
    make long-run [LONG_RUN_ARGS="--processes 100000"]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# bench.py's LOCK: one bench or long run at a time.
from bench import LOCK, take_bench_lock, task_cpu_ns  # noqa: E402 (beside this script)

from procmon_ctl.errors import StateError  # noqa: E402 (the repository's, not an installed one)
from procmon_ctl.instance.pinned import PinnedInstance  # noqa: E402

SOURCE = ROOT / "scripts" / "bench" / "forkloop.c"
EVENTS_MODES = {
    "table": ["events"],
    "json": ["events", "--json"],
    "tree": ["events", "--tree-of", "1"],
    "wide": ["events", "--wide"],
    "raw": ["events", "--raw"],
    "json-tree": ["events", "--json", "--tree-of", "1"],
}
MODES = (*EVENTS_MODES, "run")
DEFAULT_MODES = ("table", "json", "tree", "run")
DRAIN_LIMIT = 300.0  # s: a reader still busy this long after the generator is reported
RUN_EXIT_LIMIT = 60.0  # s: for `run` to return once its command has exited


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of `pid` in kB (empty once it has gone)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith(" kB"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + sys) of every thread of `pid`, in seconds."""
    return task_cpu_ns(pid) / 1e9


def build_generator(path: Path | None, work: Path) -> Path:
    """build/forkloop if `make` built it from the current source, else built here."""
    if path is not None:
        return path
    built = ROOT / "build" / "forkloop"
    if built.exists() and built.stat().st_mtime >= SOURCE.stat().st_mtime:
        return built
    cc = shutil.which("clang") or shutil.which("cc")
    if cc is None:
        raise SystemExit("no C compiler for scripts/bench/forkloop.c (`make` installs clang)")
    exe = work / "forkloop"
    subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-Werror", str(SOURCE), "-o", str(exe)], check=True
    )
    return exe


@dataclass
class Result:
    mode: str
    made: int = 0
    counted: int | None = None  # `processes`: every new process of the host in the window
    produced: int | None = None
    dropped: int | None = None
    rss_start: int | None = None  # kB
    rss_end: int | None = None
    peak: int | None = None
    cpu: float | None = None
    seconds: float | None = None
    trace: list[int] = field(default_factory=list)  # VmRSS at every tenth of the run
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.rss_start and self.rss_end:
            return self.rss_end / self.rss_start
        return None

    def flat(self, tolerance_kb: int) -> bool | None:
        if self.rss_start is None or self.rss_end is None:
            return None
        return self.rss_end - self.rss_start <= tolerance_kb


class LongRun:
    def __init__(self, args: argparse.Namespace, generator: Path, work: Path):
        self.args = args
        self.generator = generator
        self.work = work
        venv_cli = ROOT / ".venv" / "bin" / "procmon-ctl"
        self.cli = [str(venv_cli)] if venv_cli.exists() else [sys.executable, "-m", "procmon_ctl"]
        self.pin_dirs: list[Path] = []
        self.procs: list[subprocess.Popen] = []
        self.progress_files: list[Path] = []

    # -- helpers ---------------------------------------------------------------------

    def procmon(self, pin_dir: Path, *args: str, check: bool = True) -> str:
        r = subprocess.run(
            [*self.cli, "--pin-dir", str(pin_dir), *args], capture_output=True, text=True
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"procmon-ctl {shlex.join(args)} exited {r.returncode}: {r.stderr}")
        return r.stdout

    def stats(self, pin_dir: Path) -> dict | None:
        with contextlib.suppress(RuntimeError, ValueError):
            return json.loads(self.procmon(pin_dir, "stats", "--json"))
        return None

    def pin_dir(self, mode: str) -> Path:
        path = Path(f"/sys/fs/bpf/procmon-longrun-{os.getpid()}-{mode}")
        self.pin_dirs.append(path)
        return path

    def progress(self, path: Path) -> tuple[int, int, bool]:
        """(generator pid, processes made, done) from forkloop -p."""
        with contextlib.suppress(OSError, ValueError):
            pid, made, done = path.read_text().split()
            return int(pid), int(made), done == "1"
        return 0, 0, False

    def follow_generator(self, res: Result, reader: int, progress: Path, proc) -> None:
        """Until the generator reports it is done: RSS at --start processes and at
        every tenth of the run.  `proc` is the process that must stay alive meanwhile
        (the generator, or `run`)."""
        n, start_at = self.args.processes, min(self.args.start, self.args.processes // 2)
        marks = [n * k // 10 for k in range(1, 11)]
        while True:
            _, made, done = self.progress(progress)
            rss = status_kb(reader).get("VmRSS")
            if res.rss_start is None and made >= start_at and rss:
                res.rss_start = rss
            while marks and made >= marks[0] and rss:
                res.trace.append(rss)
                marks.pop(0)
            if done:
                res.made = made
                return
            if proc.poll() is not None:
                raise RuntimeError(f"{shlex.join(map(str, proc.args))} exited {proc.returncode}")
            time.sleep(0.1)

    def wait_drained(self, pid: int) -> None:
        """Until the reader's CPU time stops growing (it sleeps between polls): it has
        read everything the generator made."""
        deadline = time.monotonic() + DRAIN_LIMIT
        last = cpu_seconds(pid)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = cpu_seconds(pid)
            if now - last < 0.01:
                return
            last = now
        raise RuntimeError(f"the reader (pid {pid}) was still busy after {DRAIN_LIMIT:.0f} s")

    def wait_reading(self, pin_dir: Path, reader: subprocess.Popen) -> None:
        """Until `reader` holds its pin dir's reader lock (read from /proc/locks:
        taking the lock to try it could make the reader fail)."""
        locks = PinnedInstance.at(pin_dir).locks
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if reader.poll() is not None:
                raise RuntimeError(f"the reader exited {reader.returncode} before reading")
            if locks.slot_holder(0) == reader.pid:
                return
            time.sleep(0.05)
        raise RuntimeError("the reader did not start reading within 60 s")

    def finish(self, res: Result, pid: int) -> None:
        status = status_kb(pid)
        res.rss_end, res.peak = status.get("VmRSS"), status.get("VmHWM")
        res.cpu = cpu_seconds(pid)

    @staticmethod
    def counters(res: Result, before: dict | None, after: dict | None) -> None:
        if before and after:
            res.counted = after["processes"] - before["processes"]
            res.produced = after["produced"] - before["produced"]
            res.dropped = after["dropped"] - before["dropped"]

    # -- the modes -------------------------------------------------------------------

    def events_mode(self, mode: str) -> Result:
        res, t0 = Result(mode), time.monotonic()
        pin_dir = self.pin_dir(mode)
        self.procmon(pin_dir, "load")
        self.procmon(pin_dir, "attach")
        err = (self.work / f"{mode}.err").open("w")
        reader = subprocess.Popen(
            [*self.cli, "--pin-dir", str(pin_dir), *EVENTS_MODES[mode]],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        self.procs.append(reader)
        self.wait_reading(pin_dir, reader)
        before = self.stats(pin_dir)
        progress = self.work / f"{mode}.progress"
        self.progress_files.append(progress)
        gen = subprocess.Popen(
            [str(self.generator), "-p", str(progress), str(self.args.processes)],
            stdout=subprocess.DEVNULL,
        )
        self.procs.append(gen)
        self.follow_generator(res, reader.pid, progress, gen)
        gen.wait()
        self.wait_drained(reader.pid)
        self.finish(res, reader.pid)
        self.counters(res, before, self.stats(pin_dir))
        reader.send_signal(signal.SIGINT)
        code = reader.wait(timeout=30)
        if code != 0:
            res.note = f"reader exited {code}: {(self.work / f'{mode}.err').read_text()[-300:]}"
        self.procmon(pin_dir, "unload", check=False)
        res.seconds = time.monotonic() - t0
        return res

    def run_mode(self) -> Result:
        """`procmon-ctl run --json -- forkloop -e N`: forkloop holds on after its last
        child until its stdin closes, so the run can be measured before it ends."""
        res, t0 = Result("run"), time.monotonic()
        progress = self.work / "run.progress"
        self.progress_files.append(progress)
        out = (self.work / "run.out").open("w+")
        err = (self.work / "run.err").open("w+")
        run = subprocess.Popen(
            [
                *self.cli,
                "run",
                "--json",
                "--",
                str(self.generator),
                "-p",
                str(progress),
                "-e",
                str(self.args.processes),
            ],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
        )
        self.procs.append(run)
        self.follow_generator(res, run.pid, progress, run)
        self.wait_drained(run.pid)
        self.finish(res, run.pid)
        run.stdin.close()  # forkloop exits now, and so should run
        try:
            code = run.wait(timeout=RUN_EXIT_LIMIT)
        except subprocess.TimeoutExpired:
            run.send_signal(signal.SIGINT)
            code = run.wait(timeout=30)
            res.note = f"run had not returned {RUN_EXIT_LIMIT:.0f} s after its command; "
        out.seek(0)
        lines = out.read().splitlines()
        summary = None
        with contextlib.suppress(IndexError, ValueError):
            summary = json.loads(lines[-1])
        if summary is not None:
            res.counted = summary.get("processes")  # run pins nothing: no stats to read
            lost = summary.get("lost_records")
            if lost is not None:
                res.dropped = lost
            res.note += f"run exited {code}, summary: {summary.get('processes')} process(es)"
        else:
            err.seek(0)
            res.note += f"run exited {code}, no summary: {err.read()[-300:]!r}"
        res.seconds = time.monotonic() - t0
        return res

    # -- cleanup ---------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Every process and pin dir of ours gone; returns what had to be forced."""
        forced = []
        for path in self.progress_files:  # run's generator is not our child
            pid, _, _ = self.progress(path)
            with contextlib.suppress(OSError):
                if pid and b"forkloop" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
                    forced.append(f"killed forkloop {pid}")
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    forced.append(f"killed {proc.pid}")
        for pin_dir in self.pin_dirs:
            if pin_dir.exists():
                self.procmon(pin_dir, "unload", check=False)
            if pin_dir.exists():
                forced.append(f"removed {pin_dir} by hand")
                for dirpath, dirnames, filenames in os.walk(pin_dir, topdown=False):
                    for name in filenames:
                        (Path(dirpath) / name).unlink(missing_ok=True)
                    for name in dirnames:
                        (Path(dirpath) / name).rmdir()
                pin_dir.rmdir()
            for path in PinnedInstance.at(pin_dir).state_paths():
                path.unlink(missing_ok=True)
        return forced


def mib(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"


def num(v: int | None) -> str:
    return "n/a" if v is None else f"{v:,}"


def table(results: list[Result], tolerance_kb: int) -> str:
    head = (
        "| mode | made | counted | records | lost | RSS start | RSS end | end/start "
        "| peak (VmHWM) | reader CPU | wall | flat |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        flat = r.flat(tolerance_kb)
        lines.append(
            f"| {r.mode} | {num(r.made)} | {num(r.counted)} | {num(r.produced)} "
            f"| {num(r.dropped)} | {mib(r.rss_start)} | {mib(r.rss_end)} "
            f"| {'n/a' if r.ratio is None else f'{r.ratio:.3f}'} | {mib(r.peak)} "
            f"| {'n/a' if r.cpu is None else f'{r.cpu:.1f} s'} "
            f"| {'n/a' if r.seconds is None else f'{r.seconds:.0f} s'} "
            f"| {'n/a' if flat is None else 'yes' if flat else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=1_000_000, help="per mode [1,000,000]")
    p.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"of {', '.join(MODES)}")
    p.add_argument(
        "--start", type=int, default=50_000, help="RSS 'start' after this many processes [50,000]"
    )
    p.add_argument(
        "--tolerance", type=float, default=2.0, help="MiB an RSS may grow and be flat [2]"
    )
    p.add_argument("--generator", type=Path, help="forkloop [build/forkloop, else built here]")
    a = p.parse_args()
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        p.error(f"--modes: one or more of {', '.join(MODES)}")
    if a.processes < 100:
        p.error("--processes: at least 100")
    if os.geteuid() != 0:
        p.error("run as root")
    try:
        lock = take_bench_lock()
    except StateError as e:
        p.error(str(e))
    if lock is None:
        p.error(f"another bench is running (it holds {LOCK})")

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    work = Path(tempfile.mkdtemp(prefix="procmon-longrun-"))
    results: list[Result] = []
    lr = None
    t0 = time.monotonic()
    try:
        lr = LongRun(a, build_generator(a.generator, work), work)
        for mode in modes:
            print(f"{mode}: {a.processes:,} processes ...", file=sys.stderr, flush=True)
            try:
                res = lr.run_mode() if mode == "run" else lr.events_mode(mode)
            except RuntimeError as err:
                res = Result(mode, note=f"failed: {err}")
            results.append(res)
            forced = lr.cleanup()  # each mode alone on the machine, and its pins gone
            lr.pin_dirs.clear()
            lr.procs.clear()
            lr.progress_files.clear()
            if forced:
                res.note += ("; " if res.note else "") + ", ".join(forced)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # cleanup goes to the end
            signal.signal(sig, signal.SIG_IGN)
        if lr is not None:
            lr.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    tolerance_kb = int(a.tolerance * 1024)
    print(f"Command: {shlex.join(['scripts/bench/long_run.py', *sys.argv[1:]])}")
    print(
        f"RSS start: after {min(a.start, a.processes // 2):,} processes; flat: grew at most "
        f"{a.tolerance:g} MiB\n"
    )
    print(table(results, tolerance_kb))
    print()
    for r in results:
        trace = " ".join(f"{kb / 1024:.1f}" for kb in r.trace)
        print(f"{r.mode}: VmRSS (MiB) at every tenth: {trace or 'n/a'}")
        if r.note:
            print(f"{r.mode}: {r.note}")
    print(f"done in {time.monotonic() - t0:.0f} s")
    return 0 if all(r.flat(tolerance_kb) for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Interrupted, KeyboardInterrupt) as err:
        print(f"long run interrupted: {err}", file=sys.stderr)
        sys.exit(130)
