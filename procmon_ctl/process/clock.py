"""Kernel stamps to wall-clock time.

Records carry `bpf_ktime_get_ns()`, which is CLOCK_MONOTONIC: it does not count a
suspend and is not moved when the clock is stepped (NTP, `date -s`).  Wall-clock time
is that stamp plus the current distance between CLOCK_REALTIME and CLOCK_MONOTONIC.
The distance changes at a resume (by the time asleep) and at a clock step, so readers
take it again for each batch they read (`resync`): records are read within
milliseconds of being made, so a record made after a resume or a step gets the time
of day it happened.  Only a record made before a suspend or step and read after it
(one left in the ring meanwhile) is off, by the time asleep or the size of the step.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

_REALTIME = time.CLOCK_REALTIME
_MONOTONIC = time.CLOCK_MONOTONIC
_SAMPLES = 3


def realtime_offset_ns() -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns: the realtime read between the two
    closest monotonic reads of a few tries, so a preemption does not skew it."""
    best_gap = best = None
    for _ in range(_SAMPLES):
        before = time.clock_gettime_ns(_MONOTONIC)
        real = time.clock_gettime_ns(_REALTIME)
        after = time.clock_gettime_ns(_MONOTONIC)
        if best_gap is None or after - before < best_gap:
            best_gap = after - before
            best = real - (before + after) // 2
    return best


_last_second: list = [None, ""]


def rfc3339_utc(unix_ns: int) -> str:
    """`2026-11-29T22:15:01.123456Z`: RFC 3339, UTC, microseconds (truncated)."""
    seconds, ns = divmod(unix_ns, 1_000_000_000)
    # A storm's records share their second: format it once.
    if _last_second[0] != seconds:
        # Fields by number, not strftime: no locale, and the text the C writer makes
        # (native/json_lines.c) whatever the C library's %Y does with the year.
        t = time.gmtime(seconds)
        _last_second[1] = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        )
        _last_second[0] = seconds
    return f"{_last_second[1]}.{ns // 1000:06d}Z"


def local_time_of_day(unix_ns: int) -> str:
    """`22:15:01.123` in the local time zone (TZ), milliseconds (truncated)."""
    seconds, ns = divmod(unix_ns, 1_000_000_000)
    return f"{time.strftime('%H:%M:%S', time.localtime(seconds))}.{ns // 1_000_000:03d}"


# One offset for the process: every writer of a reader (JSON, tables) must agree on
# the time of a record, and the reading loop resyncs it once per batch.
_offset_ns = realtime_offset_ns()


def resync() -> None:
    """Take the REALTIME - MONOTONIC distance again (once per batch read)."""
    global _offset_ns
    _offset_ns = realtime_offset_ns()


def offset_ns() -> int:
    """What to add to a kernel stamp to get Unix ns (for the C writer)."""
    return _offset_ns


def unix_ns(ts_ns: int) -> int:
    return ts_ns + _offset_ns


def rfc3339(ts_ns: int) -> str:
    """A kernel stamp as `rfc3339_utc` writes it."""
    return rfc3339_utc(ts_ns + _offset_ns)


def time_of_day(ts_ns: int) -> str:
    """A kernel stamp as `local_time_of_day` writes it (the tables' TIME column)."""
    return local_time_of_day(ts_ns + _offset_ns)


def monotonic_ns() -> int:
    """Now on the kernel stamps' clock: the stamp of lines the reader makes itself
    (gap lines), so that their time comes from the same offset as the records'."""
    return time.clock_gettime_ns(_MONOTONIC)


def now_rfc3339() -> str:
    """The time of day now, as `rfc3339_utc` writes it (for lines with no kernel stamp:
    gap markers, `stats --watch --json`)."""
    return rfc3339_utc(time.time_ns())


def parse_rfc3339(text: str) -> datetime:
    """The inverse of `rfc3339_utc` (for tests and for readers of our logs)."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
