"""`events --summary`'s figures (process/events_tally.py) and its text and JSON
(views/events_summary.py), from records as the kernel writes them: no kernel
needed.  The real processes are test_process_events'."""

from __future__ import annotations

import json

from records import EXEC, EXEC_FAILED, EXIT, FORK, THREAD, argv_area, record

from procmon_ctl.process.decode import decode_event
from procmon_ctl.process.events_tally import EventsTally
from procmon_ctl.process.rows import Filters
from procmon_ctl.views.events_summary import summary_of, summary_text

MS = 1_000_000

RECORDS = [
    record(FORK, pid=10, tgid=10, ppid=1, comm=b"sh"),
    record(
        EXEC,
        pid=10,
        tgid=10,
        comm=b"make",
        filename=b"/usr/bin/make",
        argv=argv_area(b"make", b"-j2"),
    ),
    record(FORK, pid=11, tgid=11, ppid=10, comm=b"make"),
    record(FORK, pid=12, tgid=10, ppid=1, comm=b"make", flags=THREAD),
    record(
        EXEC, pid=11, tgid=11, comm=b"cc", filename=b"/usr/bin/cc", argv=argv_area(b"cc", b"x.c")
    ),
    record(EXIT, pid=11, tgid=11, comm=b"cc", code=1, duration=30 * MS),
    record(FORK, pid=13, tgid=13, ppid=10, comm=b"make"),
    record(EXIT, pid=13, tgid=13, comm=b"make", sig=9, duration=2 * MS),
    record(EXEC_FAILED, pid=10, tgid=10, comm=b"make", filename=b"/nope", error=-2),
    record(EXIT, pid=12, tgid=10, comm=b"make", flags=THREAD, duration=MS),
    record(EXIT, pid=10, tgid=10, comm=b"make", duration=900 * MS, dropped=3),
    record(EXIT, pid=99, tgid=99, comm=b"\x1b[2Jx", duration=5 * MS, dropped=3),
]


def tally_of(records) -> EventsTally:
    tally = EventsTally()
    for r in records:
        tally(decode_event(r))
    return tally


def test_counts_failures_and_lifetimes_are_the_records():
    s = summary_of(tally_of(RECORDS), 1_500 * MS, failed=True)
    assert (s.forks, s.execs, s.exits) == (3, 2, 4)  # thread starts and exits not counted
    counts = {c.comm: (c.forks, c.execs, c.exits) for c in s.by_command}
    assert counts == {"make": (2, 1, 2), "sh": (1, 0, 0), "cc": (0, 1, 1), "\x1b[2Jx": (0, 0, 1)}
    assert s.by_command[0].comm == "make"  # the busiest first
    # The failed: cc with its own command line, the child killed with its parent's.
    assert [(f.pid, f.exit_code, f.signal, f.argv) for f in s.failed] == [
        (11, 1, 0, ["cc", "x.c"]),
        (13, 0, 9, ["make", "-j2"]),
    ]
    assert s.failures == 2
    assert (s.failed_execs, [(x.pid, x.errno) for x in s.failed_exec_list]) == (1, [(10, 2)])
    assert [x.pid for x in s.shortest] == [13, 99, 11, 10]
    assert [x.pid for x in s.longest] == [10, 11, 99, 13]
    assert s.longest[0].argv == ["make", "-j2"] and s.shortest[1].argv is None
    assert s.lost_records == 3
    assert json.loads(s.model_dump_json())["failed_execs"] == 1
    assert summary_of(tally_of(RECORDS), MS, failed=False).failed_execs is None


def test_text_names_the_failed_and_escapes_names():
    text = summary_text(summary_of(tally_of(RECORDS), 1_500 * MS, failed=True))
    lines = text.splitlines()
    assert lines[0] == "3 fork(s), 2 exec(s), 4 exit(s) in 1.50s, 2 failed"
    assert "  failed: cc (pid 11): exit code 1: cc x.c" in lines
    assert "  failed: make (pid 13): killed by SIGKILL: make -j2" in lines
    assert "  shortest-lived: make (pid 13) 2.0ms: make -j2" in lines
    assert "  longest-lived: make (pid 10) 900.0ms: make -j2" in lines
    assert "    make (pid 10): /nope: ENOENT" in lines
    assert "\x1b" not in text and "    \\x1b[2Jx 0/0/1" in lines
    assert any(line.startswith("  INCOMPLETE: 3 record(s) lost") for line in lines)
    for line in summary_text(summary_of(tally_of(RECORDS), MS, False), width=40).splitlines():
        assert len(line) <= 40


def test_the_readers_filters_apply():
    """`events --comm cc --summary`: what cc did, and only that; the view's own
    filters are left to the view (the tally follows a copy)."""
    tally = EventsTally(filters=Filters(comm=frozenset({"cc"})))
    for r in RECORDS:
        tally(decode_event(r))
    s = summary_of(tally, MS, failed=False)
    assert [(c.comm, c.forks, c.execs, c.exits) for c in s.by_command] == [("cc", 0, 1, 1)]
    assert [(f.pid, f.argv) for f in s.failed] == [(11, ["cc", "x.c"])]
    # --tree-of 10 (make, running when the reader started): it and its children.
    view_filters = Filters(tree={10}, tree_since_ns=0)
    tally = EventsTally(filters=view_filters)
    for r in RECORDS[1:]:
        tally(decode_event(r))
    assert {x.pid for x in tally.longest_lived()} == {10, 11, 13}
    assert view_filters.tree == {10}
