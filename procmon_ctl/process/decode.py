"""Ring-buffer records to events: pure functions, testable without a kernel.

The layouts come from abi.py (the mirror of bpf/process_monitor.h).  This is the
hot path: one struct.unpack per record, no model objects.

Names, filenames and arguments are bytes chosen by whoever started the process.
They become text reversibly (text() and unescape() are inverses): valid UTF-8 as
it is, a byte that is not UTF-8 as the four characters \\xNN, and a backslash as
two, so that no text stands for two different byte strings.

In JSON, json_string() and json_safe() escape as \\uNNNN what a terminal or a
line splitter would act on (DEL, C1 controls, bidi controls, U+2028/U+2029), on
top of the control characters JSON itself escapes: json.loads() gives back the
same text, so unescape() still gives the exact bytes."""

from __future__ import annotations

import errno as _errno
import mmap
import re
from json.encoder import encode_basestring  # C-accelerated, exact JSON string escaping
from typing import NamedTuple

from ..kernel.abi import (
    EXEC_DATA_OFFSET,
    AuditUnset,
    EventFlag,
    EventType,
    ExecEvent,
    ExitEvent,
    ProcessEvent,
    unpacker,
)

# A record's fields by name, in the order of struct process_event: abi.py says where
# each one is (one struct call per record).
EVENT_FIELDS = (
    "ts_ns",
    "duration_ns",
    "dropped_total",
    "cgroup_id",
    "type",
    "pid",
    "tgid",
    "ppid",
    "uid",
    "euid",
    "egid",
    "loginuid",
    "sessionid",
    "exit_code",
    "exit_signal",
    "flags",
    "ns_pid",
    "ns_ppid",
    "comm",
)
unpack_event = unpacker(ProcessEvent, *EVENT_FIELDS)
_unpack_tail = unpacker(ExecEvent, "filename_len", "argv_len", "argc", "error")
# An exec record's ids before it, and the capabilities it gained.
unpack_privileges = unpacker(ExecEvent, "prev_euid", "prev_egid", "cap_gained")
# An exit record's usage (struct exit_event), in its order.
USAGE_FIELDS = (
    "utime_ns",
    "stime_ns",
    "runtime_ns",
    "maxrss_pages",
    "min_flt",
    "maj_flt",
    "nvcsw",
    "nivcsw",
    "read_bytes",
    "write_bytes",
)
unpack_usage = unpacker(ExitEvent, *USAGE_FIELDS)
# maxrss_pages in KiB, as getrusage() gives ru_maxrss: the records are this
# host's, made with its page size.
PAGE_KIB = mmap.PAGESIZE // 1024
# A record's type as Event has it: the EventType, or the number of a type this
# version does not know.
_TYPES = {t.value: t for t in EventType}
_EXEC, _EXIT, _FAILED = EventType.EXEC, EventType.EXIT, EventType.EXEC_FAILED
_THREAD, _TRUNCATED = EventFlag.THREAD.value, EventFlag.ARGV_TRUNCATED.value
_PIDNS = EventFlag.PIDNS.value
_IO = EventFlag.IO.value
_SETID = EventFlag.SETID.value
# loginuid and sessionid as records carry them when the process has none.
AUDIT_ID_UNSET = AuditUnset.AUDIT_ID_UNSET.value


class Usage(NamedTuple):
    """What a process cost, as getrusage() reports it for a process waited for
    (its own part: not that of the children it waited for)."""

    cpu_user_ns: int
    cpu_system_ns: int
    max_rss_kib: int  # peak resident set, every image it ran (ru_maxrss)
    minor_faults: int
    major_faults: int
    voluntary_switches: int
    involuntary_switches: int
    # Bytes read from and dirtied for storage (/proc/PID/io); None where the kernel
    # does not account them (built without CONFIG_TASK_IO_ACCOUNTING).
    read_bytes: int | None
    write_bytes: int | None


def cpu_split(utime: int, stime: int, runtime: int) -> tuple[int, int]:
    """The process's exact run time `runtime` split into user and system time in
    the ratio of the kernel's sampled `utime` and `stime`, as getrusage() and
    wait4() report them (cputime_adjust(), from a process's first reading: no
    earlier one to stay above).  native/json_lines.c does the same."""
    if not stime:
        return runtime, 0
    if not utime:
        return 0, runtime
    system = stime * runtime // (stime + utime)
    return runtime - system, system


def usage_at(buf: bytes | memoryview | mmap.mmap, offset: int, flags: int) -> Usage:
    """The usage of the exit record at `offset` of `buf` (`flags`: the record's)."""
    ut, st, rt, rss, minflt, majflt, nvcsw, nivcsw, rbytes, wbytes = unpack_usage(buf, offset)
    user, system = cpu_split(ut, st, rt)
    if not flags & _IO:
        rbytes = wbytes = None
    return Usage(user, system, rss * PAGE_KIB, minflt, majflt, nvcsw, nivcsw, rbytes, wbytes)


class Event(NamedTuple):
    type: EventType | int  # an int: a record type this version does not know
    ts_ns: int
    pid: int
    tgid: int
    ppid: int
    uid: int
    comm: str
    thread: bool
    filename: str | None
    exit_code: int | None
    exit_signal: int | None
    duration_ns: int | None
    # The reader's losses so far (READER_LOSS_DROPPED of its slot) as the record
    # was made: a reader marks what it has not marked yet.
    dropped_total: int
    # exec and exec_failed: the arguments (each one text()), whether the last was
    # cut or some are missing, and how many the program was given.
    argv: tuple[str, ...] | None = None
    argv_truncated: bool | None = None
    argc: int | None = None
    # exec_failed: the errno the syscall returned (positive).
    errno: int | None = None
    # The process's cgroup v2 id (cgroups.CgroupNames turns it into a path).
    cgroup_id: int = 0
    # tgid and ppid in the process's own PID namespace, when that is not the
    # host's (None there); ns_ppid 0: its parent is outside that namespace.
    ns_pid: int | None = None
    ns_ppid: int | None = None
    # exit: what the process cost.
    usage: Usage | None = None
    # Who it runs as besides uid (the real one): the effective uid and gid, and
    # audit's login uid and session id (None when unset, or the kernel has no audit).
    euid: int = 0
    egid: int = 0
    loginuid: int | None = None
    sessionid: int | None = None
    # exec: the effective uid and gid before it, when the exec changed them (a
    # set-user-ID or set-group-ID program); None otherwise.
    prev_euid: int | None = None
    prev_egid: int | None = None
    # exec: the capabilities it added to the permitted set (CAP_* bits), when it
    # added any (file capabilities); None otherwise.
    cap_gained: int | None = None


def text(raw: bytes) -> str:
    """Bytes as text, reversibly (see the module's docstring)."""
    if b"\\" in raw:
        raw = raw.replace(b"\\", b"\\\\")  # ASCII: never inside a multi-byte sequence
    return raw.decode("utf-8", "backslashreplace")


def cstr(raw: bytes) -> str:
    """A NUL-padded name as text()."""
    return text(raw.split(b"\0", 1)[0])


_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def unescape(s: str) -> bytes:
    """The bytes that text() made `s` from."""
    out, pos = bytearray(), 0
    for m in _ESCAPE.finditer(s):
        out += s[pos : m.start()].encode()
        esc = m.group(1)
        out += b"\\" if esc == "\\" else bytes((int(esc[1:], 16),))
        pos = m.end()
    out += s[pos:].encode()
    return bytes(out)


# What JSON allows raw in a string but a line must not hold raw: DEL and the C1
# controls (U+009B is CSI to a terminal that takes 8-bit controls, U+0085 a line
# break to str.splitlines()), the bidi controls (Unicode's Bidi_Control: they
# reorder the rest of a terminal's line) and the line and paragraph separators.
# A fixed list, not str.isprintable(), so that the lines do not change with the
# Python (Unicode) version, and native/json_lines.c can write the same.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _u_escape(m: re.Match) -> str:
    return f"\\u{ord(m.group()):04x}"


def json_safe(json_text: str) -> str:
    """A JSON text with each character of _JSON_UNSAFE as \\uNNNN (outside strings
    JSON text is ASCII, so only the inside of strings changes)."""
    if json_text.isascii() and "\x7f" not in json_text:
        return json_text
    return _JSON_UNSAFE.sub(_u_escape, json_text)


def json_string(s: str) -> str:
    """s as a JSON string, safe to print and to split into lines (json_safe)."""
    return json_safe(encode_basestring(s))


def split_argv(raw: bytes) -> tuple[str, ...]:
    """The argument area as the kernel lays it out (each argument followed by a
    NUL) to its arguments; a cut last argument (no NUL) is kept as it is."""
    if not raw:
        return ()
    parts = raw.split(b"\0")
    if not parts[-1]:
        parts.pop()  # what follows the last NUL: nothing
    return tuple(map(text, parts))


def errno_name(code: int | None) -> str | None:
    if code is None:
        return None
    return _errno.errorcode.get(code, f"E{code}")


def exec_parts(
    buf: bytes | memoryview | mmap.mmap, offset: int, flags: int
) -> tuple[str, tuple[str, ...], bool, int, int]:
    """An exec or exec_failed record's filename, argv, argv_truncated, argc and
    error (the syscall's -errno, 0 for exec); `flags` is the record's."""
    fn_len, argv_len, argc, error = _unpack_tail(buf, offset)
    start = offset + EXEC_DATA_OFFSET
    name = bytes(buf[start : start + fn_len])
    argv = bytes(buf[start + fn_len : start + fn_len + argv_len])
    return text(name), split_argv(argv), bool(flags & _TRUNCATED), argc, error


def decode_event(record: bytes | memoryview) -> Event:
    return decode_at(record, 0)


def decode_at(buf: bytes | memoryview | mmap.mmap, offset: int) -> Event:
    """The record that starts at `offset` of `buf`, read in place (no slice)."""
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
    ) = unpack_event(buf, offset)
    etype = _TYPES.get(etype, etype)
    common = (etype, ts, pid, tgid, ppid, uid, cstr(comm), bool(flags & _THREAD))
    ns = (nspid, nsppid) if flags & _PIDNS else (None, None)
    ids = (
        euid,
        egid,
        None if loginuid == AUDIT_ID_UNSET else loginuid,
        None if sessionid == AUDIT_ID_UNSET else sessionid,
    )
    if etype in (_EXEC, _FAILED):
        filename, argv, truncated, argc, error = exec_parts(buf, offset, flags)
        errno = -error if etype == _FAILED else None
        prev_euid, prev_egid, gained = unpack_privileges(buf, offset)
        if not flags & _SETID:
            prev_euid = prev_egid = None
        return Event(
            *common,
            filename,
            None,
            None,
            None,
            dropped,
            argv,
            truncated,
            argc,
            errno,
            cgroup,
            *ns,
            None,
            *ids,
            prev_euid,
            prev_egid,
            gained or None,
        )
    if etype == _EXIT:
        usage = usage_at(buf, offset, flags)
        return Event(
            *common,
            None,
            code,
            sig,
            duration,
            dropped,
            None,
            None,
            None,
            None,
            cgroup,
            *ns,
            usage,
            *ids,
        )
    return Event(
        *common, None, None, None, None, dropped, None, None, None, None, cgroup, *ns, None, *ids
    )
