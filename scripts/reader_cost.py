#!/usr/bin/env python3
"""Events per CPU-second of the `events` reader (issue 3's per-event cost figure).

Loads a private instance, starts `procmon-ctl events --json --threads > /dev/null`,
makes a thread storm, and divides the events the reader delivered by the CPU time
(user + sys) the reader process used.  With --forks N the storm is N processes
instead (scripts/bench/forkloop.c: a fork and an exit record each; the reader
without --threads), --tree adds `--tree 1` (every process followed), and
--lineage adds `--lineage` (each record's ancestors, from the reader's process
table).  --cgroup-paths runs the fork storm (--forks, default 6000) in a cgroup
with a short path (the baseline) and in one whose path is 2,000 bytes long (a
Kubernetes pod under a systemd slice, nested deep: issue 25.10), twice each,
alternating, under one `events --json` reader, and prints each one's reader CPU
per event and the ratio to the short path's.  Run as root after `make`:

    .venv/bin/python scripts/reader_cost.py [--threads 20000 | --forks 100000]
        [--mode json|table|wide|raw] [--tree] [--lineage] [--cgroup-paths]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The repository's, not an installed one:
from procmon_ctl.instance.pinned import PinnedInstance  # noqa: E402
from procmon_ctl.process.cgroups import v2_root  # noqa: E402

CLI = [sys.executable, "-m", "procmon_ctl"]
STORM = """
import sys, threading
n = int(sys.argv[1])
for _ in range(n // 100):
    ts = [threading.Thread(target=lambda: None) for _ in range(100)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
"""


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid`, in ns steps (schedstat's run time): the
    clock-tick counts of /proc/PID/stat are 10 ms coarse, as long as the reader's
    whole share of a 60,000-thread storm."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def forkloop(work: Path) -> Path:
    """build/forkloop if `make` built it from the current source, else built in `work`."""
    source = ROOT / "scripts" / "bench" / "forkloop.c"
    built = ROOT / "build" / "forkloop"
    if built.exists() and built.stat().st_mtime >= source.stat().st_mtime:
        return built
    exe = work / "forkloop"
    cc = shutil.which("clang") or "cc"
    subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-Werror", str(source), "-o", str(exe)], check=True
    )
    return exe


LONG_PATH_BYTES = 2000
POD = "0f8e6b3c_5a1d_4e2f_9c7b_1d2e3f4a5b6c"
CONTAINER = "4f" * 32


def shown_path(cgroup: Path) -> str:
    return "/" + str(cgroup.relative_to(v2_root()))


def bench_cgroups(top: Path) -> dict[str, Path]:
    """Below `top` (made here): a cgroup with a short path, and one whose path
    (as /proc/PID/cgroup shows it) is LONG_PATH_BYTES long."""
    tail = (
        "kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod{POD}.slice/cri-containerd-{CONTAINER}.scope"
    )
    length = len(shown_path(top)) + 1 + len(tail)
    levels: list[str] = []
    while length < LONG_PATH_BYTES:
        name = f"tenant-{len(levels):02d}-" + "d" * 200 + ".slice"
        name = name[: LONG_PATH_BYTES - length - 1]
        levels.append(name)
        length += len(name) + 1
    cgroups = {"short": top / "short", "long": top.joinpath(*levels, *tail.split("/"))}
    for path in cgroups.values():
        path.mkdir(parents=True)
    return cgroups


def remove_cgroups(top: Path) -> None:
    """The cgroups of bench_cgroups(), deepest first (their processes have exited)."""
    for path in sorted(top.rglob("*/"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            path.rmdir()
    top.rmdir()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=20000)
    ap.add_argument("--forks", type=int, help="a storm of this many processes instead")
    ap.add_argument("--mode", choices=("json", "table", "wide", "raw"), default="json")
    ap.add_argument("--tree", action="store_true", help="the reader follows --tree-of 1")
    ap.add_argument("--lineage", action="store_true", help="the reader adds --lineage")
    ap.add_argument(
        "--cgroup-paths",
        action="store_true",
        help="the fork storm in a cgroup with a short path, then in a 2,000-byte one",
    )
    args = ap.parse_args()
    if args.cgroup_paths:
        args.forks = args.forks or 6000
    if args.forks:
        work = Path(tempfile.mkdtemp(prefix="procmon-reader-cost-"))
        storm = [str(forkloop(work)), str(args.forks)]
    else:
        storm = [sys.executable, "-c", STORM, str(args.threads)]
    pin_dir = f"/sys/fs/bpf/procmon-reader-cost-{os.getpid()}"
    env = {**os.environ, "PROCMON_PIN_DIR": pin_dir}

    def cli(*a: str) -> str:
        return subprocess.run(
            [*CLI, *a], env=env, check=True, capture_output=True, text=True
        ).stdout

    cli("load")
    try:
        cli("attach")
        flags = {"json": ["--json"], "table": [], "wide": ["--wide"], "raw": ["--raw"]}[args.mode]
        flags += ["--tree-of", "1"] if args.tree else []
        flags += ["--lineage"] if args.lineage else []
        flags += [] if args.forks else ["--threads"]
        reader = subprocess.Popen([*CLI, "events", *flags], env=env, stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # start-up (imports, bpftool) is not the per-event cost
        if args.cgroup_paths:
            return cgroup_paths(reader, storm, cli)
        cpu0 = cpu_seconds(reader.pid)
        s0 = json.loads(cli("stats", "--json"))
        t0 = time.monotonic()
        subprocess.run(storm, check=True, stdout=subprocess.DEVNULL)
        time.sleep(0.5)  # let the reader drain the ring
        cpu1 = cpu_seconds(reader.pid)
        wall = time.monotonic() - t0
        s1 = json.loads(cli("stats", "--json"))
        reader.terminate()
        reader.wait(timeout=10)
    finally:
        subprocess.run([*CLI, "unload"], env=env, capture_output=True)
        for path in PinnedInstance.at(Path(pin_dir)).state_paths():  # if unload could not run
            path.unlink(missing_ok=True)
        if args.forks:
            shutil.rmtree(work, ignore_errors=True)
    delivered = (s1["produced"] - s0["produced"]) - (s1["dropped"] - s0["dropped"])
    cpu = cpu1 - cpu0
    print(
        f"mode={args.mode}{' --tree 1' if args.tree else ''}"
        f"{' --lineage' if args.lineage else ''} events={delivered} "
        f"dropped={s1['dropped'] - s0['dropped']} "
        f"reader_cpu={cpu:.3f}s wall={wall:.2f}s"
    )
    if cpu > 0:
        print(
            f"events per reader CPU-second: {delivered / cpu:,.0f} "
            f"({cpu / delivered * 1e6:.2f} us/event)"
        )
    return 0


def cgroup_paths(reader: subprocess.Popen, storm: list[str], cli) -> int:
    """The storm in each cgroup, short and long alternating, twice: each one's
    reader CPU per event, over its two runs."""
    top = v2_root() / f"procmon-reader-cost-{os.getpid()}"
    cgroups = bench_cgroups(top)
    cpu = dict.fromkeys(cgroups, 0.0)
    events = dict.fromkeys(cgroups, 0)
    try:
        for name in ("short", "long", "short", "long"):
            cpu0, s0 = cpu_seconds(reader.pid), json.loads(cli("stats", "--json"))
            script = f'echo $$ > "{cgroups[name]}/cgroup.procs" && exec "$@"'
            subprocess.run(
                ["sh", "-c", script, "sh", *storm], check=True, stdout=subprocess.DEVNULL
            )
            time.sleep(0.5)  # let the reader drain the ring
            cpu[name] += cpu_seconds(reader.pid) - cpu0
            s1 = json.loads(cli("stats", "--json"))
            events[name] += (s1["produced"] - s0["produced"]) - (s1["dropped"] - s0["dropped"])
    finally:
        reader.terminate()
        reader.wait(timeout=10)
        remove_cgroups(top)
    per_event = {name: cpu[name] / events[name] * 1e6 for name in cgroups}
    for name, cgroup in cgroups.items():
        print(
            f"cgroup path of {len(shown_path(cgroup)):,} bytes: {events[name]:,} events, "
            f"reader_cpu={cpu[name]:.3f}s, {per_event[name]:.2f} us/event, "
            f"{per_event[name] / per_event['short']:.2f}x the short path's"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
