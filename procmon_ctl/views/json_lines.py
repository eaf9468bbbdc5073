"""The Python writer of `events --json` lines (schema: `procmon-ctl schema`).

One of the two writers: native/json_lines.c writes the same text faster and hands
back to this one what it does not format itself (names that are not plain ASCII,
unknown record types); without the C library this one writes everything.
tests/test_json_native.py checks the two byte for byte.

Per record: one unpack, one dict lookup and one format of the record's own
numbers.  The part from "ppid" to "thread" is what a record shares with the
records before it (a storm comes from one parent under one name): it is built
once per (ppid, uid, flags, comm) and looked up after that.

Exit lines end with what their process last ran ("filename", "argv",
"argv_truncated": the text of its exec line, kept per pid in a table,
process/last_execs.py), when it is known: a writer is given the table
(ExecTexts here, json_native.NativeExecs for the C writer's) and keeps it from
every record it is shown, and from those it is not (track()).

"time" is the record's ts_ns (CLOCK_MONOTONIC) plus clock.offset_ns() as it is
when the line is written: the reading loop takes the offset again each batch
(clock.resync), so it follows a resume or a clock step.  Gap lines carry no
kernel stamp: their time is the reader's now (clock.monotonic_ns()) on that
same offset."""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable
from typing import Protocol

from ..kernel.abi import ArgvLimits, EventFlag, EventType
from ..process import clock
from ..process.decode import (
    AUDIT_ID_UNSET,
    Event,
    cstr,
    errno_name,
    exec_parts,
    json_string,
    unpack_event,
    unpack_privileges,
    usage_at,
)
from ..process.last_execs import CAP, MAX_BYTES, LastExecs, running_programs

# How every line begins, records and gap lines, from both writers: a file that
# ends in part of a line begun so was cut by one of our writers (stream/logfile).
LINE_START = b'{"type":"'
_GAP = '{"type":"gap","time":"%s","dropped":%d}'
_SHARED = '"ppid":%d,"uid":%d,"euid":%d,"egid":%d%s,"comm":%s,"thread":%s%s'
CACHE_LIMIT = 4096  # a storm of distinct names must not grow the caches forever
_comm_cache: dict[bytes, str] = {}
_shared_cache: dict[tuple[int, int, int, int, int, int, int, bytes, int], str] = {}
_PIDNS = EventFlag.PIDNS.value
_THREAD = EventFlag.THREAD.value
_SETID = EventFlag.SETID.value
# Module constants, not enum lookups per call: --lineage and the filters call
# json_lines() once per record.
_FORK, _EXIT, _EXEC = EventType.FORK.value, EventType.EXIT.value, EventType.EXEC.value
_EXEC_FAILED = EventType.EXEC_FAILED.value
# A line's "type": the name of the record's EventType in lower case.
TYPE_NAMES = {t.value: t.name.lower() for t in EventType}

# What a record's cgroup adds to its line, after "thread": the fragment
# (`,"cgroup_id":N,"cgroup":"…"`, then the container's fields) of
# cgroups.CgroupNames.json_fragment.
CgroupJson = Callable[[int], str]


def gap_json(dropped: int, now_ns: int | None = None) -> str:
    """The line that marks where `dropped` records were lost, at `now_ns` (a
    CLOCK_MONOTONIC stamp; default: now)."""
    return _GAP % (clock.rfc3339(clock.monotonic_ns() if now_ns is None else now_ns), dropped)


def _comm_json(raw: bytes) -> str:
    text = _comm_cache.get(raw)
    if text is None:
        if len(_comm_cache) >= CACHE_LIMIT:
            _comm_cache.clear()
        text = _comm_cache[raw] = json_string(cstr(raw))
    return text


def audit_json(loginuid: int, sessionid: int) -> str:
    """What a record's audit ids add after "egid": each one the process has."""
    text = "" if loginuid == AUDIT_ID_UNSET else f',"loginuid":{loginuid}'
    return text if sessionid == AUDIT_ID_UNSET else f'{text},"sessionid":{sessionid}'


def _shared_json(
    key: tuple[int, int, int, int, int, int, int, bytes, int], cgroup_json: CgroupJson
) -> str:
    if len(_shared_cache) >= CACHE_LIMIT:
        _shared_cache.clear()
    ppid, uid, euid, egid, loginuid, sessionid, flags, comm, cgroup = key
    thread = "true" if flags & EventFlag.THREAD else "false"
    audit = audit_json(loginuid, sessionid)
    text = _SHARED % (ppid, uid, euid, egid, audit, _comm_json(comm), thread, cgroup_json(cgroup))
    _shared_cache[key] = text
    return text


class ExecTable(Protocol):
    """pid -> the end of its process's exit line (what_ran_json)."""

    def set(self, pid: int, fragment: str) -> None: ...

    def fork(self, child: int, parent: int) -> None: ...

    def pop(self, pid: int) -> str | None: ...


class ExecTexts:
    """The Python writer's ExecTable: a LastExecs of the fragments, each counted
    by its size in UTF-8, as the C writer's table counts it."""

    def __init__(self, cap: int = CAP, max_bytes: int = MAX_BYTES):
        self._table: LastExecs[str] = LastExecs(cap, max_bytes)
        self.fork, self.pop = self._table.fork, self._table.pop

    def __len__(self) -> int:
        return len(self._table)

    def set(self, pid: int, fragment: str) -> None:
        size = len(fragment) if fragment.isascii() else len(fragment.encode())
        self._table.set(pid, fragment, size)


def what_ran_json(filename: str | None, argv: Iterable[str], truncated: bool) -> str:
    """What an exit line ends with: its process's last exec's ,"filename":…,"argv":[…],
    "argv_truncated":… (no filename when the command line is /proc's)."""
    args = ",".join(map(json_string, argv))
    name = "" if filename is None else f',"filename":{json_string(filename)}'
    return f'{name},"argv":[{args}],"argv_truncated":{"true" if truncated else "false"}'


def exec_json(buf: bytes | memoryview | mmap.mmap, off: int, flags: int) -> tuple[str, str]:
    """The fields an exec (or exec_failed) record adds, from "filename" on, and
    what its process's exit line will end with."""
    filename, argv, truncated, argc, error = exec_parts(buf, off, flags)
    what_ran = what_ran_json(filename, argv, truncated)
    text = f'{what_ran[1:]},"argc":{argc}'
    if error:
        text += f',"errno":{-error},"error":"{errno_name(-error)}"'
    prev_euid, prev_egid, gained = unpack_privileges(buf, off)
    if flags & _SETID:
        text += f',"setid":true,"prev_euid":{prev_euid},"prev_egid":{prev_egid}'
    if gained:
        text += f',"cap_gained":{gained}'
    return text, what_ran


# A command line from /proc is kept up to what an exec record keeps at most.
_PROC_ARGV_BYTES = ArgvLimits.ARGV_MAX_BYTES.value


def seed(execs: ExecTable, root: str = "/proc") -> None:
    """The processes running now, with their command lines from /proc (whole
    arguments up to ARGV_MAX_BYTES; argv_truncated when some were left out)."""
    for info in running_programs(root):
        argv, room = [], _PROC_ARGV_BYTES
        for arg in info.argv:
            room -= len(arg) + 1
            if room < 0:
                break
            argv.append(arg)
        execs.set(info.pid, what_ran_json(None, argv, len(argv) < len(info.argv)))


def track(execs: ExecTable, e: Event) -> None:
    """Keep `execs` from a record that is not written (filtered out)."""
    if e.type == _EXEC:
        execs.set(e.tgid, what_ran_json(e.filename, e.argv or (), bool(e.argv_truncated)))
    elif e.type == _FORK and not e.thread:
        execs.fork(e.tgid, e.ppid)
    elif e.type == _EXIT and not e.thread:
        execs.pop(e.tgid)


def usage_json(buf: bytes | memoryview | mmap.mmap, off: int, flags: int) -> str:
    """The fields an exit record adds after "duration_ns": what the process cost."""
    u = usage_at(buf, off, flags)
    text = (
        f'"cpu_user_ns":{u.cpu_user_ns},"cpu_system_ns":{u.cpu_system_ns},'
        f'"max_rss_kib":{u.max_rss_kib},"minor_faults":{u.minor_faults},'
        f'"major_faults":{u.major_faults},"voluntary_switches":{u.voluntary_switches},'
        f'"involuntary_switches":{u.involuntary_switches}'
    )
    if u.read_bytes is not None:
        text += f',"read_bytes":{u.read_bytes},"write_bytes":{u.write_bytes}'
    return text


def json_lines(
    buf: bytes | memoryview | mmap.mmap,
    offsets: list[int],
    lines: list[str],
    marked: int,
    cgroup_json: CgroupJson,
    gap_ns: int | None = None,
    execs: ExecTable | None = None,
) -> int:
    """Append to `lines` the JSON line of each record at `offsets` of `buf`, each
    preceded by a gap line when the ring has lost more records than the `marked`
    already reported; returns the new count of marked losses.  The cache of the
    lines' shared part is keyed by cgroup id, so `cgroup_json` must give one id
    the same text for as long as the process runs (CgroupNames does).  Gap lines
    carry the time of `gap_ns` (CLOCK_MONOTONIC; default: when they are written).
    `execs`: the table exit lines take what their process ran from, kept from these
    records (None: exit lines without it)."""
    # The fields in decode.EVENT_FIELDS' order.
    unpack = unpack_event
    cache, shared_json = _shared_cache, _shared_json
    offset, utc = clock.offset_ns(), clock.rfc3339_utc
    fork, exit_, exec_, failed, thread = _FORK, _EXIT, _EXEC, _EXEC_FAILED, _THREAD
    append = lines.append
    for off in offsets:
        (
            ts,
            duration,
            dropped,
            cgroup,
            etype,
            pid,
            tgid,
            ppid,
            uid,
            euid,
            egid,
            loginuid,
            sessionid,
            code,
            sig,
            flags,
            nspid,
            nsppid,
            comm,
        ) = unpack(buf, off)
        if dropped > marked:
            append(gap_json(dropped - marked, gap_ns))
            marked = dropped
        key = (ppid, uid, euid, egid, loginuid, sessionid, flags, comm, cgroup)
        shared = cache.get(key) or shared_json(key, cgroup_json)
        if flags & _PIDNS:
            shared = f'{shared},"ns_pid":{nspid},"ns_ppid":{nsppid}'
        # f-strings: no argument tuple and no format string to parse per record.
        common = f'"time":"{utc(ts + offset)}","ts_ns":{ts},"pid":{pid},"tgid":{tgid},{shared}'
        if etype == fork:
            if execs is not None and not flags & thread:
                execs.fork(tgid, ppid)
            append(f'{{"type":"fork",{common}}}')
        elif etype == exit_:
            what_ran = None
            if execs is not None and not flags & thread:
                what_ran = execs.pop(tgid)
            append(
                f'{{"type":"exit",{common},'
                f'"exit_code":{code},"exit_signal":{sig},"duration_ns":{duration},'
                f"{usage_json(buf, off, flags)}{what_ran or ''}}}"
            )
        elif etype in (exec_, failed):
            fields, what_ran = exec_json(buf, off, flags)
            if etype == exec_:
                if execs is not None:
                    execs.set(tgid, what_ran)
                append(f'{{"type":"exec",{common},{fields}}}')
            else:
                append(f'{{"type":"exec_failed",{common},{fields}}}')
        else:  # a record type this version does not know: its common fields
            name = TYPE_NAMES.get(etype, str(etype))
            append(f'{{"type":"{name}",{common}}}')
    return marked
