"""Ring records built in Python from abi.py's layouts, for the tests that need
no kernel: the decoder, the Python JSON writer and the C one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from procmon_ctl.kernel.abi import (
    RECORD_LENGTH,
    AuditUnset,
    EventFlag,
    EventType,
    ExecEvent,
    ExitEvent,
    ProcessEvent,
    RingbufRecord,
    packer,
    record_footprint,
)
from procmon_ctl.process import clock

FORK, EXEC, EXIT = EventType.FORK, EventType.EXEC, EventType.EXIT
EXEC_FAILED = EventType.EXEC_FAILED
THREAD, TRUNCATED, PIDNS = EventFlag.THREAD, EventFlag.ARGV_TRUNCATED, EventFlag.PIDNS
IO, SETID = EventFlag.IO, EventFlag.SETID
UNSET = AuditUnset.AUDIT_ID_UNSET
_pack_event, _pack_exec, _pack_exit = packer(ProcessEvent), packer(ExecEvent), packer(ExitEvent)
# An exit record's usage (struct exit_event) unless told otherwise.
USAGE = dict(
    utime_ns=120_000_000,
    stime_ns=40_000_000,
    runtime_ns=158_765_432,
    maxrss_pages=2560,
    min_flt=700,
    maj_flt=3,
    nvcsw=12,
    nivcsw=5,
    read_bytes=8 << 20,
    write_bytes=4096,
)


def argv_area(*args: bytes) -> bytes:
    """Arguments as the kernel lays them out in a new image: each followed by a NUL."""
    return b"".join(a + b"\0" for a in args)


def record(
    etype: int,
    pid: int = 100,
    tgid: int = 100,
    ppid: int = 1,
    uid: int = 0,
    euid: int | None = None,  # default: uid
    egid: int = 0,
    loginuid: int = UNSET,
    sessionid: int = UNSET,
    prev: tuple[int, int] | None = None,  # exec: prev_euid, prev_egid (default: euid, egid)
    cap_gained: int = 0,  # exec: capabilities it added
    comm: bytes = b"bash",
    flags: int = 0,
    dropped: int = 0,  # dropped_total: the ring's losses so far
    code: int = 0,
    sig: int = 0,
    duration: int = 0,
    filename: bytes = b"",
    ts: int = 123_456_789_012,
    argv: bytes = b"",  # the argument area (argv_area()), as much as the record keeps
    argc: int | None = None,
    error: int = 0,  # exec_failed: -errno
    cgroup: int = 1,  # cgroup_id (1: the v2 root)
    ns_pid: int = 0,  # with EventFlag.PIDNS in flags
    ns_ppid: int = 0,
    usage: dict | None = None,  # exit: struct exit_event's fields that differ from USAGE
) -> bytes:
    """One record as the BPF programs write it: exec (and exec_failed) records are
    an exec_event followed by the filename and the argument area, and only as long
    as those."""
    fields = dict(
        ts_ns=ts,
        duration_ns=duration,
        dropped_total=dropped,
        cgroup_id=cgroup,
        type=etype,
        pid=pid,
        tgid=tgid,
        ppid=ppid,
        uid=uid,
        euid=uid if euid is None else euid,
        egid=egid,
        loginuid=loginuid,
        sessionid=sessionid,
        exit_code=code,
        exit_signal=sig,
        flags=flags,
        ns_pid=ns_pid,
        ns_ppid=ns_ppid,
        comm=comm,
    )
    if etype == EXIT:
        return _pack_exit(**fields, **(USAGE | (usage or {})))
    if etype not in (EXEC, EXEC_FAILED):
        return _pack_event(**fields)
    if argc is None:
        argc = argv.count(b"\0")
    prev_euid, prev_egid = prev or (fields["euid"], egid)
    tail = dict(
        filename_len=len(filename),
        argv_len=len(argv),
        argc=argc,
        error=error,
        prev_euid=prev_euid,
        prev_egid=prev_egid,
        cap_gained=cap_gained,
        data=b"",
    )
    return _pack_exec(**fields, **tail) + filename + argv


def cgroup_json(cgroup_id: int) -> str:
    """What the JSON writers add for a cgroup, as cgroups.CgroupNames would for a
    cgroup at /test/ID (no cgroup of this machine is needed)."""
    return f',"cgroup_id":{cgroup_id},"cgroup":"/test/{cgroup_id}"'


def header(length: int, flags: int = 0) -> bytes:
    """A ring record header: the length word (with BUSY/DISCARD bits) and 4 bytes."""
    word = RECORD_LENGTH.pack(length | flags)
    return word + bytes(RingbufRecord.HDR_SZ - len(word))


def ring_bytes(records: list[bytes]) -> tuple[bytearray, list[int]]:
    """The records laid out as in the ring's data area; the offset of each one's data."""
    buf, offsets = bytearray(), []
    for r in records:
        start = len(buf)
        buf += header(len(r))
        offsets.append(len(buf))
        buf += r
        buf += bytes(record_footprint(len(r)) - (len(buf) - start))
    return buf, offsets


CASES = {
    "fork": [record(FORK, pid=42, tgid=42, ppid=7, comm=b"bash")],
    "thread": [record(FORK, pid=43, tgid=42, flags=THREAD, comm=b"storm")],
    "exec": [
        record(EXEC, comm=b"ls", filename=b"/usr/bin/ls", argv=argv_area(b"ls", b"-l", b"/tmp"))
    ],
    "exec without arguments": [record(EXEC, comm=b"x", filename=b"/x")],
    "empty arguments": [record(EXEC, filename=b"/bin/e", argv=argv_area(b"e", b"", b"x", b""))],
    "truncated argv": [
        record(EXEC, filename=b"/bin/t", argv=b"t\0abc\0de", argc=9, flags=TRUNCATED),
        record(EXEC, filename=b"/bin/t", argv=b"t\0abc\0", argc=9, flags=TRUNCATED),
    ],
    "hostile arguments": [
        record(
            EXEC,
            filename=b"/bin/h",
            argv=argv_area(b"\x1b[2J", b"a\nb", b'q"\\', b"caf\xc3\xa9", b"\xff\xfe", b"\\xff"),
        )
    ],
    "failed exec": [
        record(EXEC_FAILED, filename=b"/nonexistent", argv=argv_area(b"nx", b""), error=-2),
        record(EXEC_FAILED, filename=b"/etc/passwd", argv=b"", error=-13),
    ],
    "exit": [record(EXIT, code=3, sig=9, duration=200_000_000)],
    "exit with usage": [
        record(EXIT, flags=IO),
        # cputime_adjust's cases: no system time, no user time, and a product
        # beyond 64 bits (a peak RSS of 2**64 KiB would be more than a kernel counts).
        record(EXIT, flags=IO, usage=dict(stime_ns=0, read_bytes=0, write_bytes=0)),
        record(EXIT, flags=IO, usage=dict(utime_ns=0, maxrss_pages=1)),
        record(
            EXIT,
            flags=IO,
            usage={k: 2**64 - 1 - i for i, k in enumerate(USAGE)}
            | dict(utime_ns=3, stime_ns=7, maxrss_pages=2**50),
        ),
    ],
    "cgroups": [record(FORK, cgroup=c) for c in (1, 2, 3, 2, 1, 987654321)],
    "pid namespace": [
        record(FORK, pid=900, tgid=900, flags=PIDNS, ns_pid=1, ns_ppid=0, cgroup=7),
        record(EXEC, pid=901, tgid=901, flags=PIDNS, ns_pid=2, ns_ppid=1, filename=b"/bin/sh"),
        record(EXIT, pid=902, tgid=902, flags=PIDNS | THREAD, ns_pid=3, ns_ppid=1),
    ],
    "negative exit code": [record(EXIT, code=-1)],
    "who ran it": [
        record(FORK, uid=1000, euid=1000, egid=1000, loginuid=1000, sessionid=3),
        record(FORK, uid=0, euid=0, egid=0, loginuid=1000, sessionid=UNSET),
        record(EXIT, uid=65534, euid=0, egid=65534, loginuid=UNSET, sessionid=7),
        record(
            EXEC,
            uid=1000,
            euid=0,
            egid=42,
            loginuid=1000,
            sessionid=2,
            flags=SETID,
            prev=(1000, 1000),
            cap_gained=2**41 - 1,
            filename=b"/usr/bin/sudo",
            argv=argv_area(b"sudo", b"id"),
        ),
        record(EXEC, uid=0, euid=65534, egid=65534, filename=b"/usr/bin/id"),
        record(EXEC, uid=1000, egid=1000, cap_gained=1 << 13, filename=b"/usr/bin/ping"),
    ],
    "gap before": [record(FORK, dropped=5), record(EXIT, dropped=7), record(EXIT, dropped=7)],
    "unknown type": [record(9)],
    "full-length name": [record(FORK, comm=b"a" * 16)],
    "stale bytes after the name": [
        record(FORK, comm=b"sh\0garbage\xff\x01xy"),
        record(FORK, comm=b"sh\0other\0\0\0\0\0\0\0"),
    ],
    "control characters": [record(EXEC, comm=b"\x1b[2J\nEVIL\x1b]0;", filename=b"/tmp/\x07bell")],
    "json escapes": [record(EXEC, comm=b'q"\\\t\r\b\f', filename=b'/a"b\\c')],
    # DEL (the C writer's) and, left to Python, C1 controls, bidi controls and the
    # line and paragraph separators (issue 25.9): all as \\uNNNN.
    "DEL": [record(EXEC, comm=b"a\x7fb", filename=b"/x\x7f", argv=argv_area(b"\x7f", b"x"))],
    "characters JSON lines escape": [
        record(FORK, comm="r\u202eo\u2028\x85".encode()),
        record(
            EXEC,
            comm="\u2066\u2069\u061c".encode(),
            filename="/t/\x9b2J\u200e\u200f".encode(),
            argv=argv_area("\u2029".encode(), "\x80\x9f\u202a".encode(), b"\x85"),
        ),
    ],
    "bytes that are not UTF-8": [
        record(FORK, comm=b"caf\xe9\xff"),
        record(EXEC, filename=b'/x/\xc3\x28"q\\'),
    ],
    "many parents": [record(FORK, pid=p, tgid=p, ppid=p - 1, uid=p % 3) for p in range(2, 300)],
    "big numbers": [
        record(
            EXIT,
            ts=2**64 - 1,
            duration=2**64 - 1,
            pid=2**32 - 1,
            uid=2**32 - 1,
            egid=2**32 - 1,
            loginuid=2**32 - 2,
            sessionid=2**32 - 2,
            code=-(2**31),
        )
    ],
}


class LossesInMemory:
    """What stream's writers need of a ReaderSession, for a ring with no kernel
    behind it: nothing lost beyond what the records carry, no lease, no pins."""

    marked = 0
    started_ns = 0  # no kernel-side settings: every record passed them

    def unmarked(self) -> int:
        return 0

    def save_marked(self) -> None:
        pass

    def tick(self) -> None:
        pass


# The clock of the tests that compare lines: REALTIME - MONOTONIC, and the reader's
# "now" (CLOCK_MONOTONIC) that gap lines carry.  Not round numbers: the seconds,
# microseconds and the truncated nanoseconds all show.
OFFSET_NS = 1_795_000_000_987_654_321
NOW_NS = 424_242_123_456_789


def fix_clock(monkeypatch, offset_ns: int = OFFSET_NS, now_ns: int = NOW_NS) -> None:
    """Pin clock.py's offset (a resync by the reading loop takes it again) and
    monotonic now, so that two writers, or two runs, give the same "time"."""
    monkeypatch.setattr(clock, "realtime_offset_ns", lambda: offset_ns)
    monkeypatch.setattr(clock, "_offset_ns", offset_ns)
    monkeypatch.setattr(clock, "monotonic_ns", lambda: now_ns)


def utc_text(unix_ns: int) -> str:
    """RFC 3339 UTC with microseconds, by datetime arithmetic: a check of clock.py
    and of the C writer that shares no code with either."""
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=unix_ns // 1000)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
