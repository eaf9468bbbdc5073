"""One exit record per process, whichever of its threads goes last, with the exit
status its parent's waitpid() saw, on every kernel of the matrix.  Older kernels do
not tell the exit tracepoint which thread ends the group; these are the cases where
guessing goes wrong."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

pytestmark = pytest.mark.kernel

LIFETIME_NS = 200_000_000  # exit_modes.c sleeps this long before it starts threads


def run_and_read(cli, argv: list[str], repeat: int = 1):
    """Run argv `repeat` times; returns [(pid, returncode, wall_ns)] and the JSON events."""
    cli("events", "--from-now", "--duration", "0.1")
    runs = []
    for _ in range(repeat):
        t0 = time.monotonic_ns()
        p = subprocess.run(argv)
        runs.append((p.returncode, t0, time.monotonic_ns() - t0))
    # The pids: each run's process is the fork whose exec is exit_modes.
    events = cli.json_lines("events", "--json", "--duration", "0.5")
    return runs, events


def exits_of(events: list[dict], pid: int) -> list[dict]:
    return [e for e in events if e["type"] == "exit" and e["tgid"] == pid]


def status_of(record: dict) -> int:
    """The record's status as subprocess reports a waitpid() status."""
    return -record["exit_signal"] if record["exit_signal"] else record["exit_code"]


def exec_pids(events: list[dict], exe) -> list[int]:
    return [e["tgid"] for e in events if e["type"] == "exec" and e["filename"] == str(exe)]


@pytest.mark.parametrize(("args", "expected"), [
    (["group-exit", "51", "7"], 7),
    (["all-exit", "20", "9"], 9),
    (["killed", "30"], -signal.SIGKILL),
    (["leader-first", "5"], None),  # 5 since 5.19's synchronize_group_exit, 0 before
])
def test_one_exit_record_per_process_with_its_status(attached, exit_modes, args, expected):
    cli = attached
    repeat = 5
    runs, events = run_and_read(cli, [str(exit_modes), *args], repeat=repeat)
    pids = exec_pids(events, exit_modes)
    assert len(pids) == repeat, f"{len(pids)} execs of {exit_modes} in the ring"
    for pid, (returncode, _t0, wall_ns) in zip(pids, runs, strict=True):
        if expected is not None:
            assert returncode == expected
        records = exits_of(events, pid)
        assert len(records) == 1, f"pid {pid}: {len(records)} exit records: {records}"
        exit_record = records[0]
        # The process's record: its id and name, not the last thread's.
        assert exit_record["pid"] == pid and exit_record["tgid"] == pid
        assert exit_record["comm"] == exit_modes.name[:15]
        assert exit_record["thread"] is False
        assert status_of(exit_record) == returncode, exit_record
        # Its lifetime runs from the process's start: longer than the leader's sleep,
        # which comes before any thread exists.
        assert LIFETIME_NS <= exit_record["duration_ns"] <= wall_ns + 50_000_000, exit_record


def test_thread_exits_are_not_process_exits(attached, exit_modes):
    """50 threads end with the process: the `exits` counter grows by the processes only."""
    cli = attached
    before = cli.json("stats", "--json")
    runs, events = run_and_read(cli, [str(exit_modes), "group-exit", "50", "3"], repeat=3)
    after = cli.json("stats", "--json")
    ours = [e for e in events if e["type"] == "exit" and e["comm"] == exit_modes.name[:15]]
    assert [r[0] for r in runs] == [3, 3, 3]
    assert len(ours) == 3
    all_exits = [e for e in events if e["type"] == "exit"]
    assert after["dropped"] == before["dropped"]
    # Other processes on the host may exit meanwhile, but never fewer than are in the ring.
    assert after["exits"] - before["exits"] >= len(all_exits) >= 3
    assert after["threads"] - before["threads"] >= 150
