"""The events tables in a real 80-column terminal (tmux): no line wraps, long
columns end in the cut mark, every row lines up with the header, TIME is the time
of day of the records; piped, the long columns are whole."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import CLI, reader_state
from tmux80 import run_in_tmux

from procmon_ctl.cli.hints import Hints
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import ReaderSlots
from procmon_ctl.views.render import BACKLOG, CUT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")

LONG_NAME = "a-really-long-executable-name"  # the kernel keeps "a-really-long-e"
LONG_ARG = "an-argument-long-enough-to-need-cutting-" + "x" * 80
TIME_OF_DAY = re.compile(r"\d\d:\d\d:\d\d\.\d\d\d")


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "bin" / LONG_NAME
    path.parent.mkdir()
    shutil.copy("/bin/true", path)
    return path


def make_processes(program) -> None:
    """Children of this test: one under its long name with a long argument, one whose
    argv[0] does not name its file (so --wide shows the file), one that exits 3."""
    subprocess.run([program, "0", LONG_ARG], check=True)
    subprocess.run(["bash", "-c", f"exec -a renamed {program} {LONG_ARG}"], check=True)
    subprocess.run(["sh", "-c", "exit 3"], check=False)


@contextlib.contextmanager
def reading_on_a_terminal(pin_dir: Path, run: Callable[[], tuple]) -> Iterator[list[tuple]]:
    """`run()` starts a reader on a terminal and returns (code, output) once it has
    ended.  It runs in a thread; the with block runs once the reader has its slot
    (this pin dir's only reader); on leaving, once the reader has written all its
    ring holds, it is stopped with SIGINT, as Ctrl-C would, and the list yielded
    gets what run() returned."""
    result: list[tuple] = []
    thread = threading.Thread(target=lambda: result.append(run()))
    thread.start()
    pid = None
    try:
        deadline = time.monotonic() + 60
        while pid is None:
            assert thread.is_alive(), f"the reader ended before reading: {result}"
            assert time.monotonic() < deadline, "the reader did not take a slot"
            states = ReaderSlots(PinnedInstance.at(pin_dir)).states()
            pid = next((s.pid for s in states if s.pid is not None), None)
            time.sleep(0.02)
        yield result
        while (state := reader_state(pin_dir, pid)) is not None and state.waiting:
            assert time.monotonic() < deadline + 60, "the reader did not catch up"
            time.sleep(0.02)
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        thread.join()


def column_starts(title: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", title)]


def check_table(lines: list[str], window: tuple[float, float], with_time: bool) -> list[str]:
    """The checks every table passes; returns its rows."""
    assert all(len(ln) <= 80 for ln in lines), "\n".join(ln for ln in lines if len(ln) > 80)
    title, rule = lines[0], lines[1]
    starts = column_starts(title)
    assert column_starts(rule) == starts, lines[:2]
    rows = [ln for ln in lines[2:] if ln and not ln.startswith("--")]
    assert rows, lines
    for row in rows:
        for start in starts[1:-1]:  # every column before the last is never empty
            assert row[start - 1] == " " and row[start] != " ", (start, row, title)
        if len(row) > starts[-1]:
            assert row[starts[-1] - 1] == " ", (row, title)
    assert (title.split()[0] == "TIME") == with_time, title
    if with_time:
        low, high = window
        day = datetime.now().date()
        for row in rows:
            assert TIME_OF_DAY.fullmatch(row[:12]), row
            at = datetime.combine(day, datetime.strptime(row[:12], "%H:%M:%S.%f").time())
            assert low - 1 <= at.timestamp() <= high + 1, (row, window)
    return rows


@pytest.mark.parametrize(
    ("args", "with_time"),
    [
        ([], False),
        (["--time"], True),
        (["--wide"], True),
        (["--wide", "--no-time"], False),
        (["--name", "tables"], False),
    ],
    ids=["narrow", "time", "wide", "wide-no-time", "named"],
)
def test_tables_fit_80_columns(attached, program, args, with_time):
    """A reader started before the processes shows them as they come, with no
    backlog line; a named reader that was down meanwhile shows them from its
    backlog, and the backlog line after them."""
    cli = attached
    argv = [*CLI, "events", *args, "--ppid", str(os.getpid())]
    named = "--name" in args
    if named:
        cli("events", "--name", "tables", "--duration", "0.01")  # its place, kept
        live = contextlib.nullcontext([])
    else:
        live = reading_on_a_terminal(cli.pin_dir, lambda: run_in_tmux(argv, cli.env))
    with live as result:
        start = time.time()
        make_processes(program)
        end = time.time()
    if named:
        result.append(run_in_tmux([*argv, "--duration", "0.2"], cli.env))
    [(code, lines)] = result
    assert code == 0, lines
    rows = check_table(lines, (start, end), with_time)
    mine = [r for r in rows if any(k in r for k in ("a-really-lo", "renamed", "/tmp/"))]
    assert len(mine) >= 2 and all(r.endswith(CUT) and len(r) == 80 for r in mine), lines
    if named:
        # The backlog line ends what happened while the reader was down. Rows after it
        # are live: only the harness's own `tmux wait-for`, when the reader started
        # before the test ran it.
        backlog = Hints().words(BACKLOG)
        assert lines.count(backlog) == 1, lines
        live_rows = lines[lines.index(backlog) + 1 :]
        assert all(r.split()[2] == "tmux" for r in live_rows), lines
    else:
        assert Hints().words(BACKLOG) not in lines, lines
    if "--wide" not in args:
        assert any(r.split()[2 + with_time] == "a-really-long-e" for r in rows), lines
        return
    events = [r.split()[3 + with_time] for r in rows]
    assert {"exec", "exit"} <= set(events), lines
    assert any(r.split()[3 + with_time : 5 + with_time] == ["exit", "3"] for r in rows), lines


def test_piped_tables_are_whole(attached, program):
    cli = attached
    with cli.reading("events", "--wide", "--ppid", str(os.getpid())) as reading:
        make_processes(program)
    out = reading.stdout
    assert f"exec     {program} 0 {LONG_ARG}" in out, out
    assert f"exec     ({program}) renamed {LONG_ARG}" in out, out
    assert f": {program} 0 {LONG_ARG}" in out, out  # its exit row
    with cli.reading("events", "--ppid", str(os.getpid())) as reading:
        make_processes(program)
    out = reading.stdout
    assert f" a-really-long-e {program} 0 {LONG_ARG}\n" in out, out


def test_wide_shows_the_exits_of_processes_that_started_before_it(attached):
    """--wide's exit row for a process the reader never saw start: one killed while
    the reader runs, and one that ended while a named reader was down (its exit
    waits in the backlog; its fork came before the reader was ever made)."""
    cli = attached
    me = str(os.getpid())
    live, backlog = (subprocess.Popen(["sleep", "600"]) for _ in range(2))
    try:
        with cli.reading("events", "--wide", "--ppid", me) as reading:
            live.send_signal(signal.SIGSEGV)
            live.wait()
        rows = [r.split()[1:] for r in reading.stdout.splitlines()]
        assert [str(live.pid), me, "root", "SIGSEGV"] in [r[:4] for r in rows], rows
        assert [r[-1] for r in rows if r[0] == str(live.pid)] == ["[sleep]"], rows

        with cli.reading("events", "--wide", "--name", "early", "--ppid", me):
            pass  # makes its place, then goes down
        backlog.kill()
        backlog.wait()
        with cli.reading("events", "--wide", "--name", "early", "--ppid", me) as reading:
            pass
        rows = [r.split()[1:] for r in reading.stdout.splitlines()]
        assert [str(backlog.pid), me, "root", "SIGKILL"] in [r[:4] for r in rows]
    finally:
        for proc in (live, backlog):
            proc.kill()
            proc.wait()
        cli("readers", "rm", "early", check=False)


THREAD = "import threading; t = threading.Thread(target=lambda: None); t.start(); t.join()"


def test_thread_rows_name_their_process(attached):
    """A thread row shows the thread's id and the process it belongs to, in both
    tables, aligned and within 80 columns."""
    cli = attached
    for args in ([], ["--wide"]):
        argv = [*CLI, "events", "--threads", *args, "--ppid", str(os.getpid())]
        tmux = functools.partial(run_in_tmux, argv, cli.env)
        with reading_on_a_terminal(cli.pin_dir, tmux) as result:
            child = subprocess.Popen([sys.executable, "-c", THREAD])
            child.wait()
        [(code, lines)] = result
        assert code == 0, lines
        rows = check_table(lines, (0, time.time()), bool(args))
        thread_rows = [r for r in rows if f"thread of {child.pid}" in r]
        assert thread_rows, lines
        for row in thread_rows:
            fields = row.split()
            tid = int(fields[1 if args else 0])
            assert tid != child.pid and fields[2 if args else 1] == str(os.getpid()), row
            assert row.endswith(
                f"[thread of {child.pid}]" if not args else f"thread of {child.pid}]"
            )
