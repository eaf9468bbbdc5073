"""One exit record per process, whichever of its threads goes last, with the exit
status its parent's waitpid() saw, on every kernel of the matrix.  Older kernels do
not tell the exit tracepoint which thread ends the group; these are the cases where
guessing goes wrong.  (All in one test: on the matrix's emulated kernels each
procmon-ctl call costs seconds.)"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

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


# --- what each process cost (exit records' usage) ----------------------------------

# What the kernel adds to a process's usage after its exit record is made, and so
# wait4() has but the record has not: its exiting thread's CPU time since its last
# scheduler tick, and a tick of each thread still running beside it (10 ms at the
# lowest HZ, 100); the rest of its exit path (closing its files, waking its parent),
# microseconds on hardware but up to tens of ms in the matrix's emulated (TCG) guests;
# its last switch (to die), and a wait for each file whose last close blocks (the
# guests' 9p root).  wait4() gives microseconds.
TICK_NS = 10_000_000
EXIT_PATH_NS = 50_000_000
SWITCHES_AFTER = 8
# And a preemption per half millisecond of CPU the exit path took after the record (the
# scheduler's shortest slice is longer): on a loaded host (CI runs the matrix's guests
# beside the host suite) a process unmapping 200 MB was preempted 13 times after it.
PREEMPTION_NS = 500_000
SPIN_MS = 200
TOUCH_MIB = 64
READ_MIB = 16


def held_run(argv: list[str]) -> tuple[int, resource.struct_rusage, dict[str, int]]:
    """Runs a usage_work process to its end: its pid, what wait4() said of it, and
    its /proc/PID/io as it waited to end (every thread's, "ready" already said)."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    with p.stdin, p.stdout:
        assert p.stdout.readline() == b"ready\n", argv
        with open(f"/proc/{p.pid}/io") as f:
            io = {k: int(v) for k, v in (line.split(": ") for line in f)}
        p.stdin.write(b"go\n")
        p.stdin.flush()
        _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, argv
    return p.pid, usage, io


def on_a_block_device(path: Path) -> bool:
    """Whether `path`'s file system is on a block device (not tmpfs, 9p, overlay):
    only there do reads count as storage I/O."""
    return os.major(path.stat().st_dev) != 0


def check_usage(record: dict, usage, io: dict[str, int], running: int, exact: bool) -> None:
    """The record's usage against wait4()'s and /proc/PID/io's.  `running`: the
    threads that may still run as the record is made; `exact`: the process's last
    thread ends it alone (no thread exits beside it), so the counts that do not
    grow in the exit path are the kernel's own."""
    why = (record, usage, io)
    slack = TICK_NS * running + EXIT_PATH_NS + 2_000  # and microseconds, rounded twice
    user, system = round(usage.ru_utime * 1e9), round(usage.ru_stime * 1e9)
    assert -2_000 <= user + system - record["cpu_user_ns"] - record["cpu_system_ns"] <= slack, why
    assert abs(record["cpu_user_ns"] - user) <= slack, why
    assert abs(record["cpu_system_ns"] - system) <= slack, why
    assert 0 <= usage.ru_nvcsw - record["voluntary_switches"] <= SWITCHES_AFTER * running, why
    cpu_after = max(0, user + system - record["cpu_user_ns"] - record["cpu_system_ns"])
    preempted = SWITCHES_AFTER * running + cpu_after // PREEMPTION_NS
    assert 0 <= usage.ru_nivcsw - record["involuntary_switches"] <= preempted, why
    if exact:
        assert record["max_rss_kib"] == usage.ru_maxrss, why
        assert record["minor_faults"] == usage.ru_minflt, why
        assert record["major_faults"] == usage.ru_majflt, why
    else:  # threads killed beside the last may fault on their way out
        assert record["max_rss_kib"] <= usage.ru_maxrss, why
        assert 0 <= usage.ru_minflt - record["minor_faults"] <= 64 * running, why
    if "read_bytes" not in io:  # a kernel without CONFIG_TASK_IO_ACCOUNTING
        assert "read_bytes" not in record and "write_bytes" not in record, why
        return
    assert record["read_bytes"] == io["read_bytes"] == usage.ru_inblock * 512, why
    assert record["write_bytes"] == io["write_bytes"] == usage.ru_oublock * 512, why


def test_exit_records_say_what_the_process_cost(attached, usage_work, tmp_path):
    """Processes of known work, one thread or many (those that end before the last,
    a leader that ends first, threads killed by exit_group(), a copy of a file
    read with O_DIRECT): each exit record's
    CPU time, peak RSS, faults, switches and storage I/O against what wait4() says
    of the process and /proc/PID/io said just before it ended."""
    cli = attached
    data = tmp_path / "data"
    with open(data, "wb") as f:
        f.write(os.urandom(1 << 20) * READ_MIB)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    work = str(usage_work)
    # (arguments, CPU time it spins in ms, threads that may run as the record is
    # made, whether its last thread ends it alone)
    runs = [
        (["spin", str(SPIN_MS), str(TOUCH_MIB)], SPIN_MS, 1, True),
        (["threads", "3", str(SPIN_MS // 2)], 4 * (SPIN_MS // 2), 1, True),
        (["leader-first", str(SPIN_MS // 2)], 2 * (SPIN_MS // 2), 1, True),
        (["group", "2", str(SPIN_MS // 2)], SPIN_MS // 2, 3, False),
        (["copy", str(data), str(tmp_path / "copy")], 0, 1, True),
    ]
    done = []
    with cli.reading("events", "--json") as reading:
        for args, _spun_ms, _running, _exact in runs:
            done.append(held_run([work, *args]))
    events = reading.json_lines()
    for (args, spun_ms, running, exact), (pid, usage, io) in zip(runs, done, strict=True):
        [record] = [e for e in events if e["type"] == "exit" and e["tgid"] == pid]
        check_usage(record, usage, io, running, exact)
        cpu = record["cpu_user_ns"] + record["cpu_system_ns"]
        assert cpu >= spun_ms * 1_000_000 - TICK_NS * running, (args, record)
        if args[0] == "spin":
            assert record["max_rss_kib"] >= TOUCH_MIB * 1024, record
        if args[0] == "copy" and "read_bytes" in io and on_a_block_device(data):
            assert record["read_bytes"] >= READ_MIB << 20, record
            assert record["write_bytes"] >= READ_MIB << 20, record
