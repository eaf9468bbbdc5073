"""The Python writer of `events --json` lines (schema: `procmon-ctl schema`).

One of the two writers: native/json_lines.c writes the same text faster and hands
back to this one what it does not format itself (names that are not plain ASCII,
unknown record types); without the C library this one writes everything.
tests/test_json_native.py checks the two byte for byte.

Per record: one unpack, one dict lookup and one format of the record's own
numbers.  The part from "ppid" to "thread" is what a record shares with the
records before it (a storm comes from one parent under one name): it is built
once per (ppid, uid, flags, comm) and looked up after that.

"time" is the record's ts_ns (CLOCK_MONOTONIC) plus clock.offset_ns() as it is
when the line is written: the reading loop takes the offset again each batch
(clock.resync), so it follows a resume or a clock step.  Gap lines carry no
kernel stamp: their time is the reader's now (clock.monotonic_ns()) on that
same offset."""

from __future__ import annotations

import mmap
from collections.abc import Callable

from ..kernel.abi import EventFlag, EventType
from ..process import clock
from ..process.decode import (
    AUDIT_ID_UNSET,
    cstr,
    errno_name,
    exec_parts,
    json_string,
    unpack_event,
    unpack_privileges,
    usage_at,
)

_GAP = '{"type":"gap","time":"%s","dropped":%d}'
_SHARED = '"ppid":%d,"uid":%d,"euid":%d,"egid":%d%s,"comm":%s,"thread":%s%s'
CACHE_LIMIT = 4096  # a storm of distinct names must not grow the caches forever
_comm_cache: dict[bytes, str] = {}
_shared_cache: dict[tuple[int, int, int, int, int, int, int, bytes, int], str] = {}
_PIDNS = EventFlag.PIDNS.value
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


def exec_json(buf: bytes | memoryview | mmap.mmap, off: int, flags: int) -> str:
    """The fields an exec (or exec_failed) record adds, from "filename" on."""
    filename, argv, truncated, argc, error = exec_parts(buf, off, flags)
    args = ",".join(map(json_string, argv))
    text = (
        f'"filename":{json_string(filename)},"argv":[{args}],'
        f'"argv_truncated":{"true" if truncated else "false"},"argc":{argc}'
    )
    if error:
        text += f',"errno":{-error},"error":"{errno_name(-error)}"'
    prev_euid, prev_egid, gained = unpack_privileges(buf, off)
    if flags & _SETID:
        text += f',"setid":true,"prev_euid":{prev_euid},"prev_egid":{prev_egid}'
    if gained:
        text += f',"cap_gained":{gained}'
    return text


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
) -> int:
    """Append to `lines` the JSON line of each record at `offsets` of `buf`, each
    preceded by a gap line when the ring has lost more records than the `marked`
    already reported; returns the new count of marked losses.  The cache of the
    lines' shared part is keyed by cgroup id, so `cgroup_json` must give one id
    the same text for as long as the process runs (CgroupNames does).  Gap lines
    carry the time of `gap_ns` (CLOCK_MONOTONIC; default: when they are written)."""
    # The fields in decode.EVENT_FIELDS' order.
    unpack = unpack_event
    cache, shared_json = _shared_cache, _shared_json
    offset, utc = clock.offset_ns(), clock.rfc3339_utc
    fork, exit_, exec_, failed = _FORK, _EXIT, _EXEC, _EXEC_FAILED
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
            append(f'{{"type":"fork",{common}}}')
        elif etype == exit_:
            append(
                f'{{"type":"exit",{common},'
                f'"exit_code":{code},"exit_signal":{sig},"duration_ns":{duration},'
                f"{usage_json(buf, off, flags)}}}"
            )
        elif etype in (exec_, failed):
            name = "exec" if etype == exec_ else "exec_failed"
            append(f'{{"type":"{name}",{common},{exec_json(buf, off, flags)}}}')
        else:  # a record type this version does not know: its common fields
            name = TYPE_NAMES.get(etype, str(etype))
            append(f'{{"type":"{name}",{common}}}')
    return marked
