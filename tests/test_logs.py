"""`events --output FILE`: JSON lines appended to a file, reopened on SIGHUP the
way logrotate rotates (rename, then SIGHUP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import fork_processes, wait_reading

from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import ReaderSlots, name_for_output


def fork_pids(path: Path) -> set[int]:
    if not path.exists():
        return set()
    pids = set()
    for line in path.read_text().splitlines():
        event = json.loads(line)  # every line is one JSON object
        if event["type"] == "fork":
            pids.add(event["pid"])
    return pids


def wait_for_pids(path: Path, pids: list[int], proc: subprocess.Popen, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"events --output exited {proc.returncode}: {proc.stderr.read()}")
        if set(pids) <= fork_pids(path):
            return
        time.sleep(0.05)
    pytest.fail(f"forks {sorted(set(pids) - fork_pids(path))} never reached {path}")


def test_output_reopens_on_sighup(attached, tmp_path):
    cli = attached
    log = tmp_path / "procmon.jsonl"
    rotated = tmp_path / "procmon.jsonl.1"
    proc = cli.popen("events", "--output", str(log), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_reading(cli.pin_dir, proc)
        first = fork_processes(5)
        wait_for_pids(log, first, proc)

        os.rename(log, rotated)  # what logrotate does ...
        proc.send_signal(signal.SIGHUP)  # ... then its postrotate script
        # It reopens before writing its next batch: give it one until it has.
        deadline = time.monotonic() + 15
        while not log.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no new file"
            fork_processes(1)
            time.sleep(0.02)
        second = fork_processes(5)
        wait_for_pids(log, second, proc)  # a new file, with the new lines

        assert proc.poll() is None, "SIGHUP must not stop the reader"
        old, new = fork_pids(rotated), fork_pids(log)
        assert set(first) <= old and not set(second) & old, "the rotated file kept growing"
        assert not set(first) & new
        assert oct(log.stat().st_mode & 0o777) == oct(0o640)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out == "", "--output writes nothing to stdout"


@pytest.mark.parametrize("filtered", [False, True], ids=["all", "filtered"])
def test_output_appends(attached, tmp_path, filtered):
    """Both stream paths (the plain JSON one and the filtered one) write to the file."""
    cli = attached
    log = tmp_path / "procmon.jsonl"
    log.write_text('{"type":"earlier"}\n')
    extra = ["--ppid", str(os.getpid())] if filtered else []
    with cli.reading("events", "--output", str(log), *extra):
        pids = fork_processes(3)
    lines = log.read_text().splitlines()
    assert lines[0] == '{"type":"earlier"}'
    assert set(pids) <= fork_pids(log)


def test_output_resumes_across_restarts(attached, tmp_path):
    """--output is a named reader, named after its file's path: what happens while the log
    writer is down (a restart, an upgrade) is in the log once it is back."""
    cli = attached
    log = tmp_path / "events.jsonl"
    with cli.reading("events", "--output", str(log)):
        before = fork_processes(3)
    [state] = ReaderSlots(PinnedInstance.at(cli.pin_dir)).states()
    assert (state.name, state.pid) == (name_for_output(str(log)), None)  # kept while down
    during = fork_processes(3)
    with cli.reading("events", "--output", str(log)):
        after = fork_processes(3)
    pids = sorted(before + during + after)
    logged = [json.loads(x) for x in log.read_text().splitlines()]
    forks = sorted(e["pid"] for e in logged if e["type"] == "fork" and e["pid"] in pids)
    assert forks == pids, "each fork logged exactly once"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--output", "/proc/no/such/dir/x.jsonl"], "cannot open --output"),
        (["--output", "/tmp", "--duration", "0.1"], "cannot open --output /tmp"),
        (["--output", "x.jsonl", "--raw"], "--output FILE writes JSON lines"),
        (["--output", ""], "--output FILE writes JSON lines"),
    ],
)
def test_output_bad_input_is_one_line(attached, args, expected):
    r = attached("events", *args, check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and expected in r.stderr and "Traceback" not in r.stderr
    assert not Path("x.jsonl").exists()


def test_output_not_loaded_creates_nothing(cli, tmp_path):
    log = tmp_path / "procmon.jsonl"
    r = cli("events", "--output", str(log), check=False)
    assert r.returncode == 3 and "procmon-ctl load" in r.stderr
    assert not log.exists()


DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_documented_lines_match_the_schema():
    from procmon_ctl.views.schema import EventLine

    text = (DOCS / "logs.md").read_text()
    block = text.split("Example:\n\n```json\n", 1)[1].split("```", 1)[0]
    lines = block.strip().splitlines()
    assert len(lines) == 6
    for line in lines:
        model = EventLine.model_validate_json(line).root
        assert EventLine(model).model_dump_json(exclude_none=True) == line
    assert {json.loads(line)["type"] for line in lines} == {
        "fork",
        "exec",
        "exit",
        "exec_failed",
        "gap",
    }


def test_vector_example_is_wired():
    import tomllib

    config = tomllib.loads((DOCS / "vector.toml").read_text())
    source = config["sources"]["procmon_events"]
    assert source["type"] == "file" and "events.jsonl" in source["include"][0]
    assert "/var/log/procmon/events.jsonl" in (DOCS / "logs.md").read_text()
    ids = set(config["sources"]) | set(config["transforms"])
    routes = {f"procmon_routes.{r}" for r in config["transforms"]["procmon_routes"]["route"]}
    for section in ("transforms", "sinks"):
        for name, component in config[section].items():
            for upstream in component["inputs"]:
                assert upstream in ids | routes, f"{name} reads unknown {upstream}"
