#!/usr/bin/env python3
"""Events per CPU-second of the `events` reader (issue 3's per-event cost figure).

Loads a private instance, starts `procmon-ctl events --json --threads > /dev/null`,
makes a thread storm, and divides the events the reader delivered by the CPU time
(user + sys) the reader process used.  Run as root after `make`:

    .venv/bin/python scripts/reader_cost.py [--threads 20000] [--mode json|table]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=20000)
    ap.add_argument("--mode", choices=("json", "table", "raw"), default="json")
    args = ap.parse_args()
    pin_dir = f"/sys/fs/bpf/procmon-reader-cost-{os.getpid()}"
    env = {**os.environ, "PROCMON_PIN_DIR": pin_dir}

    def cli(*a: str) -> str:
        return subprocess.run(
            [*CLI, *a], env=env, check=True, capture_output=True, text=True
        ).stdout

    cli("load")
    try:
        cli("attach")
        flags = {"json": ["--json"], "table": [], "raw": ["--raw"]}[args.mode]
        reader = subprocess.Popen(
            [*CLI, "events", *flags, "--threads"], env=env, stdout=subprocess.DEVNULL
        )
        time.sleep(1.0)  # start-up (imports, bpftool) is not the per-event cost
        cpu0 = cpu_seconds(reader.pid)
        s0 = json.loads(cli("stats", "--json"))
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", STORM, str(args.threads)], check=True)
        time.sleep(0.5)  # let the reader drain the ring
        cpu1 = cpu_seconds(reader.pid)
        wall = time.monotonic() - t0
        s1 = json.loads(cli("stats", "--json"))
        reader.terminate()
        reader.wait(timeout=10)
    finally:
        subprocess.run([*CLI, "unload"], env=env, capture_output=True)
    delivered = (s1["produced"] - s0["produced"]) - (s1["dropped"] - s0["dropped"])
    cpu = cpu1 - cpu0
    print(
        f"mode={args.mode} events={delivered} dropped={s1['dropped'] - s0['dropped']} "
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
