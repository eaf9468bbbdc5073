#!/usr/bin/env python3
"""Events per CPU-second of the `events` reader (issue 3's per-event cost figure).

Loads a private instance, starts `procmon-ctl events --json --threads > /dev/null`,
makes a thread storm, and divides the events the reader delivered by the CPU time
(user + sys) the reader process used.  With --forks N the storm is N processes
instead (scripts/bench/forkloop.c: a fork and an exit record each; the reader
without --threads), --tree adds `--tree 1` (every process followed), and
--lineage adds `--lineage` (each record's ancestors, from the reader's process
table).  Run as root after `make`:

    .venv/bin/python scripts/reader_cost.py [--threads 20000 | --forks 100000]
        [--mode json|table|wide|raw] [--tree] [--lineage]
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
from procmon_ctl.pins import PinLayout  # noqa: E402 (the repository's, not an installed one)

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=20000)
    ap.add_argument("--forks", type=int, help="a storm of this many processes instead")
    ap.add_argument("--mode", choices=("json", "table", "wide", "raw"), default="json")
    ap.add_argument("--tree", action="store_true", help="the reader follows --tree 1")
    ap.add_argument("--lineage", action="store_true", help="the reader adds --lineage")
    args = ap.parse_args()
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
        flags += ["--tree", "1"] if args.tree else []
        flags += ["--lineage"] if args.lineage else []
        flags += [] if args.forks else ["--threads"]
        reader = subprocess.Popen([*CLI, "events", *flags], env=env, stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # start-up (imports, bpftool) is not the per-event cost
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
        for path in PinLayout(Path(pin_dir)).state_paths():  # if unload could not run
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


if __name__ == "__main__":
    raise SystemExit(main())
