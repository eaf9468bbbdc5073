"""`procmon-ctl lineage PID`: who started a process, from /proc and from the JSON
log a named reader writes, on real processes.  The case /proc cannot answer: a
process whose parent and grandparent have exited (handed to a reaper), asked about
with and without the log; and an exited process, which only the log knows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from procmon_ctl.errors import EXIT_MISSING

# A (outer sh) starts B (inner sh), which starts C (sleep) in the background and
# prints its pid; B and A exit at once, and C is left to a reaper.
ORPHANING = "sh -c 'sleep 60 >/dev/null 2>&1 & echo $!'; exit 0"


@pytest.fixture
def orphan(attached, tmp_path):
    """C's pid, and the log a named reader wrote while A, B and C started."""
    cli = attached
    log = tmp_path / "events.jsonl"
    with cli.reading("events", "--output", str(log)):
        run = subprocess.run(["sh", "-c", ORPHANING], capture_output=True, text=True, check=True)
        sleeper = int(run.stdout)
    try:
        yield cli, sleeper, log
    finally:
        os.kill(sleeper, signal.SIGKILL)


def lineage(cli, *args: str, check: bool = True, input: str | None = None):
    return cli("lineage", *args, check=check, input=input, env={"COLUMNS": "200"})


def test_the_log_knows_who_started_an_orphan(orphan):
    cli, sleeper, log = orphan
    found = json.loads(lineage(cli, str(sleeper), "--log", str(log), "--json").stdout)
    assert (found["pid"], found["comm"], found.get("exited")) == (sleeper, "sleep", None)
    inner, outer, *rest = found["lineage"]
    assert inner["argv"][:2] == ["sh", "-c"] and "sleep 60" in inner["argv"][2]
    assert outer["argv"] == ["sh", "-c", ORPHANING]
    assert inner["exited"] and outer["exited"]
    # Above what the log saw start: /proc, from this test's process up to pid 1.
    assert rest[0]["pid"] == os.getpid() and rest[0]["argv"]
    assert rest[-1]["pid"] == 1 and not [a for a in rest if a.get("exited")]
    assert found["sources"] == ["log", "proc"]

    # The exited parent, which /proc no longer has: from the log alone.
    parent = json.loads(lineage(cli, str(inner["pid"]), "--log", str(log), "--json").stdout)
    assert parent["exited"] and parent["lineage"][0]["pid"] == outer["pid"]

    # The log on stdin answers the same.
    piped = lineage(cli, str(sleeper), "--log", "-", "--json", input=log.read_text())
    assert json.loads(piped.stdout) == found

    # As a table: the process first, then who started it; exited ones marked.
    rows = lineage(cli, str(sleeper), "--log", str(log)).stdout.splitlines()
    assert re.match(r"\s+PID\s+STATE\s+COMMAND$", rows[0])
    assert rows[1].split()[:2] == [str(sleeper), "sleep"]
    assert rows[2].split()[:3] == [str(inner["pid"]), "exited", "sh"]
    assert rows[-1].split()[0] == "1"


def test_proc_alone_knows_only_the_reaper(orphan):
    cli, sleeper, _ = orphan
    r = lineage(cli, str(sleeper), "--log", "")
    rows = r.stdout.splitlines()
    assert rows[1].split()[0] == str(sleeper)
    reaper = int(rows[2].split()[0])
    assert reaper != os.getpid() and "exited" not in r.stdout
    assert "from /proc alone" in r.stderr and r.stderr.count("\n") == 1
    found = json.loads(lineage(cli, str(sleeper), "--log", "", "--json").stdout)
    assert found["sources"] == ["proc"] and found["lineage"][0]["pid"] == reaper


def test_an_earlier_boots_log_is_not_this_boots(orphan, tmp_path):
    """The same records dated before this boot: the pids in them were other
    processes, so the exited parent is unknown and the orphan is /proc's alone."""
    cli, sleeper, log = orphan
    old = tmp_path / "old.jsonl"
    old.write_text(re.sub(r'"time":"[^"]*"', '"time":"2001-01-01T00:00:00Z"', log.read_text()))
    found = json.loads(lineage(cli, str(sleeper), "--log", str(old), "--json").stdout)
    assert found["sources"] == ["proc"]
    inner_pid = json.loads(lineage(cli, str(sleeper), "--log", str(log), "--json").stdout)[
        "lineage"
    ][0]["pid"]
    r = lineage(cli, str(inner_pid), "--log", str(old), check=False)
    assert r.returncode == EXIT_MISSING and r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, expected, code",
    [
        (["999999999", "--log", ""], "no process 999999999: not running, and there is no log", 4),
        (["1", "--log", "/nonexistent.jsonl"], "--log /nonexistent.jsonl does not exist", 4),
        (["0"], "PID 0 is not a process id", 2),
        (["x"], "'x' is not a valid int", 2),
    ],
)
def test_bad_input_is_one_line(cli, args, expected, code):
    r = cli("lineage", *args, check=False)
    assert r.returncode == code, r.stderr
    assert r.stderr.count("\n") == 1 and expected in r.stderr and "Traceback" not in r.stderr


def test_pid_1_is_its_own_top(cli):
    found = json.loads(cli("lineage", "1", "--log", "", "--json").stdout)
    assert found["pid"] == 1 and found["lineage"] == []
    assert Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode() == found["argv"][0]
