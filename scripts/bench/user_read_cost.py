#!/usr/bin/env python3
"""What reading a new image's argv costs a program on sched_process_exec, on this
kernel: the floor of issue 28.3, apart from everything else the exec program does.

    scripts/bench/user_read_cost.py [--rounds N] [--execs N]

The probes (scripts/bench/user_read.bpf.c, `make bench-user-read` builds it into
build/) are programs of their own on the tracepoint (one on task_rename, earlier in
the exec), each doing one thing: nothing (`empty`, a program run and bpf_stats'
clock around it), handle_exec's argv read (`bpf_probe_read_user` of
mm->arg_start..arg_end, at most load's default), the same number of bytes read from
kernel memory, a read of 0 bytes from user memory (the helper's path, no page
touched, no byte moved) or from kernel memory, the loads a read needs without the
read, or argv[0] by the user string reader.  Six passes, each a line of probes
attached in the order they run at each exec:

  argv    empty, argv_first, argv_again, kernel_same_size
  zero    empty, zero_first, argv_after_zero
  kernel  empty, kernel_zero_first, zero_first
  loads   empty, arg_loads, zero_first
  string  empty, string_first, string_again
  earlier zero_at_rename (on task_rename), empty, zero_first

The last four tell what the first user read pays for: the helpers' common path
made warm first (kernel), the read's own loads made first (loads), the other
user-copy path (string), or a user read earlier in the same exec, before the ELF
loader runs (earlier).

Each round runs every pass (their order reversed every other round), each over an
exec storm of build/storm (fork + execve of storm itself with 20 arguments +
waitpid).  The report: each probe's ns per run, median over rounds, and that less
the pass's `empty` of the same round.  Nothing is pinned: the probes are this
process's and go with it, and bpf_stats counts only while it runs.  Needs root."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from procmon_ctl.errors import ProcmonError  # noqa: E402 (the repository's, not an installed one)
from procmon_ctl.kernel import bpftool, libbpf  # noqa: E402
from procmon_ctl.kernel.bpftool_json import ProgInfo  # noqa: E402

PASSES = {
    "argv": ("empty", "argv_first", "argv_again", "kernel_same_size"),
    "zero": ("empty", "zero_first", "argv_after_zero"),
    "kernel": ("empty", "kernel_zero_first", "zero_first"),
    "loads": ("empty", "arg_loads", "zero_first"),
    "string": ("empty", "string_first", "string_again"),
    "earlier": ("zero_at_rename", "empty", "zero_first"),
}
WHAT = {
    "empty": "nothing: a program run, and bpf_stats' clock around it",
    "argv_first": "argv read from user memory, the exec's first user read",
    "argv_again": "the same read again, right after it",
    "kernel_same_size": "as many bytes read from kernel memory",
    "zero_first": "0 bytes read from user memory, the exec's first user read",
    "argv_after_zero": "argv read from user memory, right after it",
    "kernel_zero_first": "0 bytes read from kernel memory",
    "arg_loads": "mm->arg_start and arg_end loaded, nothing read",
    "string_first": "argv[0] by the user string reader, the exec's first user read",
    "string_again": "the same string read again, right after it",
    "zero_at_rename": "0 bytes read from user memory earlier in the exec (task_rename)",
}
# What a probe is where a pass makes it something else.
WHAT_IN_PASS = {
    ("earlier", "zero_first"): "0 bytes read from user memory, the exec's second user read",
}


def run_time(prog_ids: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(run_time_ns, run_cnt) of each probe, from one `bpftool prog show`."""
    shown = bpftool.run("prog", "show", what="the probes' bpf_stats")
    infos = {p.id: p for p in (ProgInfo.model_validate(x) for x in shown)}
    return {
        name: (infos[i].run_time_ns or 0, infos[i].run_cnt or 0) for name, i in prog_ids.items()
    }


def exec_storm(storm: Path, execs: int) -> dict:
    out = subprocess.run(
        [str(storm), "exec", str(execs), "60"], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def one_pass(
    probes: libbpf.BpfObject, names: tuple[str, ...], storm: Path, execs: int
) -> tuple[dict[str, float], dict]:
    """Each probe's ns per run over one exec storm, the probes attached in `names`'
    order (a tracepoint runs its programs in the order they were attached)."""
    fds = {name: probes.program_fd(name) for name in names}
    prog_ids = {name: libbpf.prog_info(fd)[0] for name, fd in fds.items()}
    links = []
    try:
        for fd in fds.values():
            links.append(libbpf.raw_tracepoint_open(fd))
        before = run_time(prog_ids)
        report = exec_storm(storm, execs)
        after = run_time(prog_ids)
    finally:
        for link in links:
            os.close(link)
    ns = {}
    for name in names:
        runs = after[name][1] - before[name][1]
        ns[name] = (after[name][0] - before[name][0]) / runs if runs else float("nan")
    return ns, report


def argv_bytes(report: dict) -> int:
    """The storm's children's argv, NULs included, with a token as long as the last."""
    token = f"{report['pid']}.{report['made']}"
    return sum(len(a.replace("{token}", token).encode()) + 1 for a in report["argv"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--execs", type=int, default=4000, help="execs per pass and round")
    p.add_argument("--object", type=Path, default=ROOT / "build" / "user_read.bpf.o")
    p.add_argument("--storm", type=Path, default=ROOT / "build" / "storm")
    a = p.parse_args()
    if a.rounds < 1 or a.execs < 1:
        p.error("--rounds and --execs: 1 or more")
    for path in (a.object, a.storm):
        if not path.exists():
            p.error(f"{path} not built: `make bench-user-read` builds it")
    if os.geteuid() != 0:
        p.error("run as root")

    rounds: list[dict[str, dict[str, float]]] = []  # each round: pass -> probe -> ns per run
    report: dict = {}
    try:
        stats = libbpf.enable_run_time_stats()
        try:
            with libbpf.BpfObject(a.object) as probes:
                probes.load()
                for n in range(a.rounds):
                    order = list(PASSES) if n % 2 == 0 else list(reversed(PASSES))
                    rounds.append({})
                    for pass_name in order:
                        ns, report = one_pass(probes, PASSES[pass_name], a.storm, a.execs)
                        rounds[-1][pass_name] = ns
                    print(f"round {n + 1} of {a.rounds} done", file=sys.stderr, flush=True)
        finally:
            os.close(stats)
    except ProcmonError as e:
        print(f"user_read_cost: {e}", file=sys.stderr)
        return 1

    print(
        f"exec storm, {a.rounds} rounds of {a.execs:,} execs a pass; argv of "
        f"{argv_bytes(report)} bytes; ns per program run, median over rounds (bpf_stats)"
    )
    print()
    print("| pass | probe, in the order run at each exec | ns per run | less `empty` |")
    print("|---|---|---:|---:|")
    for pass_name, names in PASSES.items():
        for name in names:
            runs = [r[pass_name] for r in rounds]
            ns = statistics.median(r[name] for r in runs)
            # less the pass's own empty program in the same round
            less = (
                ""
                if name == "empty"
                else f"{statistics.median(r[name] - r['empty'] for r in runs):+,.0f}"
            )
            what = WHAT_IN_PASS.get((pass_name, name), WHAT[name])
            print(f"| {pass_name} | `{name}`: {what} | {ns:,.0f} | {less} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
