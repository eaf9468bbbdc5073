#!/usr/bin/env python3
"""What `events --failed` costs in the kernel: BPF ns per successful exec and per
failed exec, summed over the failed-exec programs, for several procmon-ctl trees
in interleaved rounds (issue 28.4).

    scripts/bench/failed_cost.py [--rounds N] LABEL=TREE [LABEL=TREE ...]

Each TREE is a procmon-ctl source tree with its BPF object built (this one, or
one `make bench` builds from git into build/baseline-COMMIT); each is loaded in a
pin directory of its own (/sys/fs/bpf/procmon-failed-cost-LABEL) and attached.
In each round, for each tree in turn (the order reversed every other round): an
`events --failed --json` reader is started, then build/storm makes an exec storm
(fork + execve + waitpid: successful execs) and a failed-exec storm (execve of a
missing path with the same 20 arguments), and bpf_stats gives each program's run
time over each storm.  The report: medians over the rounds, per exec of each
storm (all the failed-exec programs' time over the storm / the storm's execs) and
per run of each program.  Needs root; puts kernel.bpf_stats_enabled back as it was."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
# Every failed-exec program any version had: the syscalls' entries and exits, and
# (before issue 28) two that forgot execs in progress.
FAILED_EXEC_PROGRAMS = (
    "handle_execve_enter",
    "handle_execveat_enter",
    "handle_execve_exit",
    "handle_execveat_exit",
    "forget_on_exec",
    "forget_on_exit",
)
SYSCALL_PROGRAMS = FAILED_EXEC_PROGRAMS[:4]  # each attached as a perf event
STORMS = {"exec": (3000, 4), "failed": (100000, 3)}  # mode: (count, seconds)


def bpftool(*args: str):
    out = subprocess.run(["bpftool", "-j", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


class Tree:
    def __init__(self, label: str, path: Path) -> None:
        self.label = label
        self.pin_dir = Path(f"/sys/fs/bpf/procmon-failed-cost-{label}")
        self.env = {**os.environ, "PROCMON_PIN_DIR": str(self.pin_dir), "PYTHONPATH": str(path)}
        self.cli = [sys.executable, "-m", "procmon_ctl"]
        self.prog_ids: dict[str, int] = {}

    def run(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.cli, *args], env=self.env, check=check, capture_output=True, cwd="/")

    def load(self) -> None:
        self.run("unload", "--force", check=False)
        self.run("load")
        self.run("attach")
        for name in FAILED_EXEC_PROGRAMS:
            pin = self.pin_dir / "progs" / name
            if pin.exists():
                self.prog_ids[name] = bpftool("prog", "show", "pinned", str(pin))["id"]

    def stats(self) -> dict[str, tuple[int, int]]:
        """run_time_ns and run_cnt of each failed-exec program."""
        by_id = {p["id"]: p for p in bpftool("prog", "show")}
        return {
            name: (by_id[i].get("run_time_ns", 0), by_id[i].get("run_cnt", 0))
            for name, i in self.prog_ids.items()
        }

    def failed_reader(self) -> subprocess.Popen:
        """`events --failed --json`, once its syscall programs are attached."""
        reader = subprocess.Popen(
            [*self.cli, "events", "--failed", "--json"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            cwd="/",
        )
        wanted = len([n for n in self.prog_ids if n in SYSCALL_PROGRAMS])
        deadline = time.monotonic() + 30
        while len([p for p in bpftool("perf", "show") if p["pid"] == reader.pid]) < wanted:
            if reader.poll() is not None or time.monotonic() > deadline:
                reader.kill()
                raise RuntimeError(f"{self.label}: the --failed reader did not attach")
            time.sleep(0.05)
        return reader


def storm(path: Path, mode: str) -> int:
    count, seconds = STORMS[mode]
    out = subprocess.run(
        [str(path), mode, str(count), str(seconds)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)["made"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--storm", type=Path, default=ROOT / "build" / "storm")
    p.add_argument("trees", nargs="+", metavar="LABEL=TREE")
    a = p.parse_args()
    pairs = (t.split("=", 1) for t in a.trees)
    trees = [Tree(label, Path(path).resolve()) for label, path in pairs]
    per_exec: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_run: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    stats_before = STATS_SYSCTL.read_text()
    STATS_SYSCTL.write_text("1")
    try:
        for tree in trees:
            tree.load()
        for rnd in range(a.rounds):
            for tree in trees if rnd % 2 == 0 else trees[::-1]:
                reader = tree.failed_reader()
                try:
                    for mode in STORMS:
                        before = tree.stats()
                        made = storm(a.storm, mode)
                        after = tree.stats()
                        spent = {
                            n: (after[n][0] - before[n][0], after[n][1] - before[n][1])
                            for n in after
                        }
                        per_exec[tree.label, mode].append(
                            sum(ns for ns, _ in spent.values()) / made
                        )
                        for name, (ns, runs) in spent.items():
                            if runs:
                                per_run[tree.label, mode, name].append(ns / runs)
                finally:
                    reader.send_signal(signal.SIGTERM)
                    reader.wait()
                print(
                    f"round {rnd} {tree.label}: "
                    + ", ".join(f"{m} {per_exec[tree.label, m][-1]:.0f} ns" for m in STORMS),
                    flush=True,
                )
    finally:
        for tree in trees:
            tree.run("unload", "--force", check=False)
        STATS_SYSCTL.write_text(stats_before)
    print("\nmedian BPF ns per exec (all failed-exec programs), and per run of each program:")
    for tree in trees:
        for mode in STORMS:
            runs = per_exec[tree.label, mode]
            what = "successful exec" if mode == "exec" else "failed exec"
            print(
                f"{tree.label:>10}  per {what}: {statistics.median(runs):6.0f} ns"
                f"  (rounds: {' '.join(f'{r:.0f}' for r in runs)})"
            )
            for (label, m, name), values in per_run.items():
                if (label, m) == (tree.label, mode):
                    print(f"{'':>12}{name}: {statistics.median(values):.0f} ns/run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
