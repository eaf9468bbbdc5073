"""Where a process ran and who started it (issue 15), on real processes: its
cgroup (read in the kernel, named in user space), its pids in its own PID
namespace, the in-kernel cgroup filter under a fork storm from elsewhere, and
`events --lineage` across a parent's exit.  Containers: tests/test_containers.py."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import (
    bpftool_json,
    in_cgroup,
    lines_until,
    move_out_and_remove,
    reader_state,
    shown,
    wait_reading,
)


@pytest.mark.kernel
def test_each_record_has_its_cgroup_and_its_pids_in_its_pid_namespace(attached, test_cgroup):
    """A shell moved into a test-made cgroup starts `unshare --pid --fork`: the
    processes inside have their cgroup's id and path, and pids 1 and 2 as their
    namespace sees them; processes outside have neither.  A named reader that
    comes back once the cgroup is removed shows its records by cgroup id, without
    a path."""
    tag = uuid.uuid4().hex[:8]
    inner = f"/bin/true {tag}; exit 0"
    with attached.reading("events", "--json") as reading:
        subprocess.run(
            in_cgroup(test_cgroup, f"unshare --pid --fork --mount-proc sh -c '{inner}'"),
            check=True,
        )
    cgroup_id = test_cgroup.stat().st_ino
    events = reading.json_lines()
    ours = [e for e in events if e.get("cgroup_id") == cgroup_id]
    true = next(e for e in ours if e["type"] == "exec" and tag in e["argv"])
    sh = next(
        e
        for e in ours
        if e["type"] == "exec" and e["argv"][:2] == ["sh", "-c"] and e["argv"][2] == inner
    )
    # The sh that unshare forked is its namespace's init; true is its first child.
    assert (sh["ns_pid"], sh["ns_ppid"]) == (1, 0)
    assert (true["ns_pid"], true["ns_ppid"]) == (2, 1)
    assert true["ppid"] == sh["pid"] != 1 and true["pid"] != 2
    assert all(e["cgroup"] == shown(test_cgroup) for e in ours)
    assert "container_id" not in true
    outside = [e for e in events if e.get("cgroup_id") != cgroup_id]
    assert outside and all("ns_pid" not in e for e in outside if e["comm"] == "procmon-ctl")
    assert all(e["cgroup_id"] > 0 for e in events)

    # A record read after its cgroup is gone (a named reader's, made while it was
    # down): its id, no path.
    attached("events", "--name", "later", "--duration", "0.01")
    subprocess.run(in_cgroup(test_cgroup, f"/bin/true again-{tag}"), check=True)
    move_out_and_remove(test_cgroup)
    again = attached.json_lines("events", "--name", "later", "--json", "--duration", "0.2")
    gone = next(e for e in again if e["type"] == "exec" and f"again-{tag}" in e["argv"])
    assert gone["cgroup_id"] == cgroup_id and "cgroup" not in gone


def settings_of(pin_dir: Path) -> dict:
    dump = bpftool_json("map", "dump", "pinned", str(pin_dir / "maps" / "settings"))
    return dump[0]["formatted"]["value"]


def wait_for(condition, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Filtered(NamedTuple):
    """What a filtered reader saw while a fork storm ran elsewhere."""

    events: list[dict]
    grew: dict[str, int]  # how much each `stats` counter grew meanwhile
    storm_pid: int


def storm_under_filter(cli, storm, filter_args: list[str], inside, tag: str) -> Filtered:
    """`events --json FILTER…` reads while `storm` makes 2000 processes outside the
    filter's cgroup, then `inside()` runs a command holding `tag` inside it; until
    the reader has shown that command."""
    reader = cli.popen(
        "events", "--json", *filter_args, "--duration", "120",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_reading(cli.pin_dir, reader)  # its filter is set with its slot
        before = cli.json("stats", "--json")
        made = subprocess.run(
            [str(storm), "fork", "2000", "60"], capture_output=True, text=True, check=True
        )
        inside()
        after = cli.json("stats", "--json")
        lines, err = lines_until(reader, lambda ls: any(tag in line for line in ls))
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    events = [json.loads(line) for line in lines]
    assert any(e["type"] == "exec" and tag in e["argv"] for e in events if "argv" in e), err
    grew = {k: v - before[k] for k, v in after.items() if isinstance(v, int)}
    # Each storm child's fork and exit records were kept out: counted, never produced.
    assert grew["processes"] >= 2000 and grew["filtered"] >= 2 * 2000
    assert grew["produced"] < 200  # the few processes inside, nothing of the storm
    # ... by this reader's filter, as its own figures say.
    [mine] = [r for r in after["readers"] if r["pid"] == reader.pid]
    assert mine["cgroup_id"] is not None and mine["filtered"] >= 2 * 2000
    assert mine["produced"] < 200 and mine["dropped"] == 0
    # The reader has ended: its slot, and its filter, with it.
    assert reader_state(cli.pin_dir, reader.pid) is None
    assert settings_of(cli.pin_dir)["readers"] == 0
    return Filtered(events, grew, json.loads(made.stdout)["pid"])


@pytest.mark.kernel
def test_the_cgroup_filter_keeps_a_fork_storm_out_of_the_ring(attached, test_cgroup, storm):
    """`events --cgroup` sets the filter in the kernel: a fork storm from another
    cgroup is counted (processes) but never produced (filtered), and the reader
    sees only the processes in its cgroup.  The filter is the reader's own: it
    ends with the reader."""
    tag = uuid.uuid4().hex[:8]
    seen = storm_under_filter(
        attached,
        storm,
        ["--cgroup", shown(test_cgroup)],
        lambda: subprocess.run(in_cgroup(test_cgroup, f"/bin/true {tag}"), check=True),
        tag,
    )
    assert {e["cgroup"] for e in seen.events} == {shown(test_cgroup)}
    assert not [e for e in seen.events if seen.storm_pid in (e["pid"], e["ppid"])]


def test_lineage_names_who_started_a_process_after_its_parent_exits(attached):
    """A parent that exits leaves its child to the reaper: the child's exit record
    has the reaper as ppid, and its lineage still starts with the parent (marked
    exited), then this test's own process: who started it.  A process that started
    before the reader has its lineage from /proc."""
    tag = uuid.uuid4().hex[:8]
    early = subprocess.Popen(["sleep", "30"])
    reader = attached.popen(
        "events",
        "--json",
        "--lineage",
        "--duration",
        "60",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_reading(attached.pin_dir, reader)
        # sh (outer) starts sh (inner) in the background and exits at once; the inner
        # one outlives it, reparented, then runs true (not last: so not exec'd in place).
        subprocess.run(
            ["sh", "-c", f"sh -c 'sleep 0.3; /bin/true {tag}; exit 0' & exit 0"], check=True
        )
        # `early` ends only once the reader has shown a record (the outer sh's exec
        # names the tag): by then it has read the tree from /proc, which it does after
        # taking the slot wait_reading waits for.
        first = first_output_with(reader, tag)
        early.kill()
        early.wait()
        rest, err = lines_until(reader, lambda ls: lineage_seen(first + ls, tag, early.pid))
        lines = first + rest
    finally:
        early.kill()
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert lineage_seen(lines, tag, early.pid), err
    events = [json.loads(line) for line in lines]
    me = os.getpid()
    true = next(e for e in events if e["type"] == "exec" and tag in e["argv"])
    inner = true["ppid"]
    inner_exit = next(e for e in events if e["type"] == "exit" and e["pid"] == inner)
    lineage = inner_exit["lineage"]
    outer = lineage[0]
    assert outer["exited"] is True and outer["argv"][:2] == ["sh", "-c"]
    assert inner_exit["ppid"] != outer["pid"]  # reparented to the reaper
    assert lineage[1]["pid"] == me and "exited" not in lineage[1]
    assert lineage[-1]["pid"] == 1
    # true's own lineage: the inner sh, then the same chain.
    assert [a["pid"] for a in true["lineage"]] == [inner] + [a["pid"] for a in lineage]

    # Started before the reader: its lineage from /proc.
    slept = next(e for e in events if e["type"] == "exit" and e["pid"] == early.pid)
    assert slept["lineage"][0]["pid"] == me
    assert slept["lineage"][0]["argv"] == [
        a.decode() for a in Path(f"/proc/{me}/cmdline").read_bytes().split(b"\0")[:-1]
    ]


def first_output_with(reader: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """The reader's whole lines up to and including the first that holds `text`."""
    fd, data = reader.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while text.encode() not in data[: data.rfind(b"\n") + 1]:
        assert time.monotonic() < deadline, "the reader showed nothing"
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 1 << 16)
            assert chunk, reader.communicate()
            data += chunk
    # lines_until reads on from the same fd: whatever follows the last newline here
    # would be lost to it, so read on to a newline if need be.
    while not data.endswith(b"\n"):
        data += os.read(fd, 1 << 16)
    return data.decode(errors="replace").splitlines()


def lineage_seen(lines: list[str], tag: str, early: int) -> bool:
    """Whether the lines hold true's exec, its parent's exit and `early`'s exit."""
    events = [json.loads(line) for line in lines if line.startswith("{")]
    exits = {e["pid"] for e in events if e["type"] == "exit"}
    true = [e for e in events if e["type"] == "exec" and tag in e["argv"]]
    return bool(true) and true[0]["ppid"] in exits and early in exits
