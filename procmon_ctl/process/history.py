"""Who started a process, asked after the fact (`procmon-ctl lineage PID`).

Two sources, each with its own reach:

- /proc knows the processes alive now, and only their current parent: a process
  whose parent exited has been handed to a reaper (init, a subreaper), and /proc
  has forgotten who started it.
- The JSON log a named reader writes (`events --output FILE`, the log service's
  /var/log/procmon/events.jsonl) knows every process the instance saw while the
  log was written, exited ones included: replayed through a ProcessTable, it gives
  the lineage "who started it" that `events --lineage` gives live.

A process in the log is taken from it, and its lineage from the log as far as the
log knows it, then from /proc above a living ancestor the log saw no fork of.  A
pid the log knows but that /proc shows started at another time is another process
(the pid was used again): then /proc alone answers.  Records from an earlier boot
(their clock runs backwards) are not this boot's processes and are left out."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from ..kernel.abi import EXEC, EXIT, FORK
from .decode import Event
from .lineage import Process, ProcessTable
from .procfs import read_process

# Where the log service (scripts/procmon-ctl-log.service) writes its log.
SERVICE_LOG = "/var/log/procmon/events.jsonl"

# A record this much earlier than one before it was made after a reboot: the clock
# (CLOCK_MONOTONIC) starts again at boot.  Records of one boot may be out of order
# across CPUs by far less.
REBOOT_STEP_NS = 1_000_000_000

# How far /proc's start time of a process (clock ticks since boot) and its fork
# record's time may differ and still be the same process: a tick, the clock's
# resolution, plus the time the machine was suspended (BOOTTIME counts it).
SAME_START_SLACK_NS = 50_000_000

_TYPES = {"fork": FORK, "exec": EXEC, "exit": EXIT}
_WANTED = tuple(f'{{"type":"{t}"'.encode() for t in _TYPES)


class Found(NamedTuple):
    """The process asked about: its entry (its `parent` chain is its lineage), and
    where the answer came from."""

    process: Process
    from_log: bool  # the process, and its lineage as far as it goes, from the log
    from_proc: bool  # the process, or ancestors above what the log knows, from /proc


def event_of(record: dict) -> Event | None:
    """A line of `events --json` back to a record, as far as a ProcessTable reads
    one (None for the other types, gap lines included)."""
    kind = _TYPES.get(record.get("type"))
    if kind is None:
        return None
    argv = record.get("argv")
    return Event(
        kind,
        record["ts_ns"],
        record["pid"],
        record["tgid"],
        record["ppid"],
        record.get("uid", 0),
        record["comm"],
        record.get("thread", False),
        None,
        None,
        None,
        None,
        0,
        tuple(argv) if argv is not None else None,
    )


class LogReplay(NamedTuple):
    process: Process | None  # the last process with the pid in the log
    fork_ns: int | None  # when it was forked, if the log saw it
    # The wall-clock time of the first record of the last boot in the log.
    first_time: datetime | None


def replay(lines: Iterable[bytes], pid: int) -> LogReplay:
    """The log's lines through a ProcessTable: the last process `pid` was, with
    its lineage as the log knows it.  Lines that are not whole JSON records (a
    line being written) are skipped."""
    table = ProcessTable(None)
    found = fork_ns = first_time = None
    last_ns = 0
    for line in lines:
        if not line.startswith(_WANTED) or b'"thread":true' in line:
            continue  # a thread's fork changes no process's lineage
        try:
            record = json.loads(line)
            e = event_of(record)
        except (ValueError, KeyError, TypeError):
            continue
        if e is None:
            continue
        if e.ts_ns < last_ns - REBOOT_STEP_NS:
            table, found, fork_ns, first_time = ProcessTable(None), None, None, None
        if first_time is None:
            first_time = _wall_time(record)
        last_ns = max(last_ns, e.ts_ns)
        process = table.feed(e)
        if e.tgid == pid:
            found = process
            if e.type == FORK:
                fork_ns = e.ts_ns
    return LogReplay(found, fork_ns, first_time)


def _wall_time(record: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(record["time"])
    except (KeyError, TypeError, ValueError):
        return None


def _booted_at() -> datetime:
    since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    return datetime.fromtimestamp(time.time() - since_boot, UTC)


def _boot_offset_ns() -> int:
    """CLOCK_BOOTTIME minus CLOCK_MONOTONIC: the time the machine was suspended."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _start_ns(start_ticks: int) -> int:
    return start_ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def find(pid: int, log_lines: Iterable[bytes] | None, proc_root: str = "/proc") -> Found | None:
    """The process `pid` and who started it, from the log (when given) and /proc;
    None when neither knows it."""
    alive = read_process(pid, proc_root)
    logged = replay(log_lines, pid) if log_lines is not None else LogReplay(None, None, None)
    process = logged.process
    first = logged.first_time
    if process is not None and first is not None and first < _booted_at() - timedelta(seconds=1):
        process = None  # the log's last records are an earlier boot's
    if process is not None and alive is not None:
        if process.exited:
            process = None  # the log's process has exited: this is another with its pid
        elif logged.fork_ns is not None:
            started = _start_ns(alive.start_ticks) - _boot_offset_ns()
            if abs(started - logged.fork_ns) > SAME_START_SLACK_NS + _boot_offset_ns():
                process = None
    if process is None:
        if alive is None:
            return None
        return Found(ProcessTable(proc_root).adopt(pid), False, True)
    if alive is None and not process.exited:
        # Gone, though the log has no exit for it (the log's reader is behind, or
        # lost it): it has exited all the same.
        process.exited = True
    top = process
    while top.parent is not None:
        top = top.parent
    above = None
    if not top.exited and top.pid > 1:
        info = read_process(top.pid, proc_root)
        if info is not None:
            if not top.argv:
                top.argv = info.argv  # the log saw it fork, never exec
            if info.ppid > 0:
                above = ProcessTable(proc_root).adopt(info.ppid)
                top.parent = above
    return Found(process, True, above is not None)
