"""One exit record per process, whichever of its threads goes last, with the exit
status its parent's waitpid() saw, on every kernel of the matrix.  Older kernels do
not tell the exit tracepoint which thread ends the group; these are the cases where
guessing goes wrong.  (All in one test: on the matrix's emulated kernels each
procmon-ctl call costs seconds.)"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

pytestmark = pytest.mark.kernel

LIFETIME_NS = 200_000_000  # exit_modes.c sleeps this long before it starts threads
REPEAT = 3
MODES = [  # (arguments, waitpid's status, threads the process makes)
    (["group-exit", "51", "7"], 7, 51),
    (["all-exit", "20", "9"], 9, 20),
    (["killed", "30"], -signal.SIGKILL, 30),
    # The last thread ends the process with exit(5) after the leader has gone: 5 since
    # 5.19 (the kernel records it as the group's code), the leader's 0 before.
    (["leader-first", "5"], None, 1),
]


def status_of(record: dict) -> int:
    """The record's status as subprocess reports a waitpid() status."""
    return -record["exit_signal"] if record["exit_signal"] else record["exit_code"]


def test_one_exit_record_per_process_with_its_status(attached, exit_modes):
    cli = attached
    before = cli.json("stats", "--json")
    runs = []
    with cli.reading("events", "--json") as reading:
        for args, expected, threads in MODES:
            for _ in range(REPEAT):
                t0 = time.monotonic_ns()
                p = subprocess.run([str(exit_modes), *args])
                runs.append((args, expected, threads, p.returncode, time.monotonic_ns() - t0))
    events = reading.json_lines()
    after = cli.json("stats", "--json")
    assert after["dropped"] == before["dropped"]
    # Each run's process is the one that exec'd exit_modes, in order.
    pids = [e["tgid"] for e in events if e["type"] == "exec" and e["filename"] == str(exit_modes)]
    assert len(pids) == len(runs), f"{len(pids)} execs of {exit_modes} read"
    for pid, (args, expected, _threads, returncode, wall_ns) in zip(pids, runs, strict=True):
        if expected is not None:
            assert returncode == expected, args
        records = [e for e in events if e["type"] == "exit" and e["tgid"] == pid]
        assert len(records) == 1, f"{args} pid {pid}: {len(records)} exit records: {records}"
        exit_record = records[0]
        # The process's record: its id and name, not the last thread's.
        assert exit_record["pid"] == pid, (args, exit_record)
        assert exit_record["comm"] == exit_modes.name[:15]
        assert exit_record["thread"] is False
        assert status_of(exit_record) == returncode, (args, exit_record)
        # Its lifetime runs from the process's start: longer than the leader's sleep,
        # which comes before any thread exists.
        assert LIFETIME_NS <= exit_record["duration_ns"] <= wall_ns + 50_000_000, (
            args,
            exit_record,
        )
    # The threads were counted as threads, and none of their exits as a process's.
    made = sum(threads for _args, _e, threads, _rc, _w in runs)
    assert after["threads"] - before["threads"] >= made
    assert not [e for e in events if e["type"] == "exit" and e["pid"] != e["tgid"]]
