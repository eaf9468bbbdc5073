"""The events tables in a real 80-column terminal (tmux): no line wraps, long
columns end in the cut mark, every row lines up with the header, TIME is the time
of day of the records; piped, the long columns are whole."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest
from conftest import CLI, wait_threads_streamed
from tmux80 import run_in_tmux

from procmon_ctl.cli.hints import Hints
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
    [([], False), (["--time"], True), (["--wide"], True), (["--wide", "--no-time"], False)],
    ids=["narrow", "time", "wide", "wide-no-time"],
)
def test_tables_fit_80_columns(attached, program, args, with_time):
    cli = attached
    cli("events", "--from-now", "--duration", "0.1")
    start = time.time()
    make_processes(program)
    end = time.time()
    argv = [*CLI, "events", *args, "--ppid", str(os.getpid()), "--duration", "0.5"]
    code, lines = run_in_tmux(argv, cli.env)
    assert code == 0, lines
    rows = check_table(lines, (start, end), with_time)
    mine = [r for r in rows if any(k in r for k in ("a-really-lo", "renamed", "/tmp/"))]
    assert len(mine) >= 2 and all(r.endswith(CUT) and len(r) == 80 for r in mine), lines
    # The rows were in the ring before the reader: the backlog line follows them.
    assert lines[-1] == Hints().words(BACKLOG), lines
    if "--wide" not in args:
        assert any(r.split()[2 + with_time] == "a-really-long-e" for r in rows), lines
        return
    events = [r.split()[3 + with_time] for r in rows]
    assert {"exec", "exit"} <= set(events), lines
    assert any(r.split()[3 + with_time : 5 + with_time] == ["exit", "3"] for r in rows), lines


def test_piped_tables_are_whole(attached, program):
    cli = attached
    cli("events", "--from-now", "--duration", "0.1")
    make_processes(program)
    out = cli("events", "--wide", "--ppid", str(os.getpid()), "--duration", "0.5").stdout
    assert f"exec     {program} 0 {LONG_ARG}" in out, out
    assert f"exec     ({program}) renamed {LONG_ARG}" in out, out
    assert f": {program} 0 {LONG_ARG}" in out, out  # its exit row
    make_processes(program)
    out = cli("events", "--ppid", str(os.getpid()), "--duration", "0.5").stdout
    assert f" a-really-long-e {program} 0 {LONG_ARG}\n" in out, out


THREAD = "import threading; t = threading.Thread(target=lambda: None); t.start(); t.join()"


def test_thread_rows_name_their_process(attached):
    """A thread row shows the thread's id and the process it belongs to, in both
    tables, aligned and within 80 columns."""
    cli = attached
    cli("events", "--from-now", "--duration", "0.1")
    for args in ([], ["--wide"]):
        result: list = []
        argv = [*CLI, "events", "--threads", *args, "--ppid", str(os.getpid()), "--duration", "3"]
        reader = threading.Thread(
            target=lambda out, cmd: out.append(run_in_tmux(cmd, cli.env)), args=(result, argv)
        )
        reader.start()
        try:
            wait_threads_streamed(cli.pin_dir)
            child = subprocess.Popen([sys.executable, "-c", THREAD])
            child.wait()
        finally:
            reader.join()
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
