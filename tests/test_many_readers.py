"""Many readers of one instance (issue 27): each has a ring of its own, so none takes
records from another; each one's filters are decided in the kernel, hold for as long
as it lives (stopped or not) and never change what another sees; a named reader
loses nothing across restarts; a stopped reader hurts only itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    bpftool_json,
    fork_processes,
    in_cgroup,
    pin_tree,
    reader_state,
    shown,
    stop_reading,
    wait_drained,
    wait_reading,
)
from test_exec_failures import failed_program_ids, wait_attached

from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import ReaderSlots

# Each test is marked kernel (run on every kernel of the matrix) where what it
# checks goes through what differs by kernel (ring buffers in an array of maps, the
# cgroup ancestors, the exit program, syscall tracepoints); the two that check what
# the reader does with them run on the host only.


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def storm_ids(ids_file: Path) -> set[int]:
    return {int(line.split()[0]) for line in ids_file.read_text().splitlines() if line.strip()}


def stop(readers: list[subprocess.Popen]) -> None:
    for proc in readers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in readers:
        assert proc.wait(timeout=120) == 0, proc.args


@pytest.mark.kernel
def test_eight_readers_each_get_their_share(attached, storm, tmp_path, test_cgroup):
    """Eight readers at once, in every output form and with different filters, during
    an exec storm in a cgroup of its own: each gets every record its options ask for
    (checked against the ids the storm made) and nothing it filtered out."""
    cli = attached
    other = test_cgroup.parent / (test_cgroup.name + "-empty")
    other.mkdir()
    try:
        out = {n: tmp_path / f"r{n}.out" for n in range(8)}
        commands = {
            0: ["events", "--output", str(out[0])],  # named after the file
            1: ["events", "--json"],
            2: ["events", "--json", "--lineage"],
            3: ["events", "--json", "--cgroup", shown(test_cgroup)],
            4: ["events", "--json", "--cgroup", shown(other)],  # the storm is not in it
            5: ["events", "--json", "--threads", "--uid", "65534"],
            6: ["events", "--raw"],
            7: ["events", "--wide"],
        }
        readers = []
        for n, args in commands.items():
            sink = subprocess.DEVNULL if n == 0 else out[n].open("w")
            readers.append(cli.popen(*args, stdout=sink, stderr=subprocess.PIPE))
        for proc in readers:
            wait_reading(cli.pin_dir, proc)
        assert len(ReaderSlots(PinnedInstance.at(cli.pin_dir)).states()) == 8
        ids_file = tmp_path / "ids"
        subprocess.run(
            in_cgroup(test_cgroup, f"exec {storm} -o {ids_file} exec 60 60"),
            check=True,
            capture_output=True,
        )
        children = storm_ids(ids_file)
        assert len(children) == 60
        for proc in readers:
            wait_drained(cli.pin_dir, proc)
        stop(readers)
    finally:
        other.rmdir()

    def of_storm(lines: list[dict], kind: str) -> list[int]:
        return [e["tgid"] for e in lines if e["type"] == kind and e["tgid"] in children]

    for n in (0, 1, 2, 3):
        lines = records(out[n])
        assert not [e for e in lines if e["type"] == "gap"], f"reader {n} lost records"
        for kind in ("fork", "exec", "exit"):
            got = of_storm(lines, kind)
            assert sorted(got) == sorted(children), f"reader {n}: {kind} records"
    lineage = [e for e in records(out[2]) if e["type"] == "exec" and e["tgid"] in children]
    assert all(e["lineage"] and e["lineage"][0]["pid"] == e["ppid"] for e in lineage)
    # The cgroup filter in the kernel: only the storm's cgroup in reader 3's ring.
    in_cg = records(out[3])
    assert {e["cgroup"] for e in in_cg if "cgroup" in e} == {shown(test_cgroup)}
    assert records(out[4]) == [], "nothing ran in the empty cgroup"
    assert [e for e in records(out[5]) if e["tgid"] in children] == []
    raw = out[6].read_text().split()
    assert all(str(pid) in raw for pid in children)
    wide = out[7].read_text()
    assert all(f"{pid}" in wide for pid in children)


@pytest.mark.kernel
def test_a_stopped_reader_hurts_only_itself(attached, storm, tmp_path, test_cgroup):
    """One reader stopped (SIGSTOP) with a small ring during a storm: the others get
    every record with nothing lost; the stopped one's losses are exact
    (produced = delivered + dropped) and marked in its stream when it resumes.  It
    reads the storm's cgroup only, so that nothing else on the host moves its
    figures between the last record and the look at them."""
    cli = attached
    files = [tmp_path / f"r{n}.jsonl" for n in range(3)]
    readers = [
        cli.popen("events", "--json", stdout=files[0].open("w")),
        cli.popen("events", "--json", stdout=files[1].open("w")),
        cli.popen(
            "events",
            "--json",
            "--cgroup",
            shown(test_cgroup),
            "--ring-size",
            "16384",
            stdout=files[2].open("w"),
        ),
    ]
    for proc in readers:
        wait_reading(cli.pin_dir, proc)
    slow = readers[2]
    stop_reading(cli.pin_dir, slow)
    try:
        ids_file = tmp_path / "ids"
        subprocess.run(
            in_cgroup(test_cgroup, f"exec {storm} -o {ids_file} fork 2000 60"),
            check=True,
            capture_output=True,
        )
        children = storm_ids(ids_file)
        stopped = reader_state(cli.pin_dir, slow.pid)
        assert stopped.dropped > 0, "a 16 KiB ring cannot hold 2000 forks and exits"
    finally:
        slow.send_signal(signal.SIGCONT)
    for proc in readers:
        wait_drained(cli.pin_dir, proc)
    state = reader_state(cli.pin_dir, slow.pid)
    stop(readers)
    for path in files[:2]:
        lines = records(path)
        assert not [e for e in lines if e["type"] == "gap"]
        for kind in ("fork", "exit"):
            got = [e["tgid"] for e in lines if e["type"] == kind and e["tgid"] in children]
            assert sorted(got) == sorted(children)
    lines = records(files[2])
    gaps = sum(e["dropped"] for e in lines if e["type"] == "gap")
    delivered = len([e for e in lines if e["type"] != "gap"])
    assert state.waiting == 0
    assert gaps == state.dropped, "every loss marked once"
    assert delivered == state.produced - state.dropped == state.delivered
    # The storm's own records: a fork and an exit per child, the shell's exec of the
    # storm and the storm's exit.
    assert state.produced == 2 * len(children) + 2


@pytest.mark.kernel
def test_a_named_reader_loses_nothing_across_a_sigkill(attached, tmp_path):
    """`events --name`: killed, its place stays, records keep coming into its ring,
    and the next reader of that name delivers them, each once."""
    cli = attached
    log = tmp_path / "log.jsonl"
    args = ("events", "--json", "--name", "shipper", "--output", str(log))
    first = cli.popen(*args)
    wait_reading(cli.pin_dir, first)
    before = fork_processes(5)
    wait_drained(cli.pin_dir, first)
    first.kill()
    first.wait()
    while_down = fork_processes(7)
    [down] = [s for s in ReaderSlots(PinnedInstance.at(cli.pin_dir)).states() if s.name]
    assert down.name == "shipper" and down.pid is None and down.waiting > 0
    second = cli.popen(*args)
    wait_reading(cli.pin_dir, second)
    after = fork_processes(3)
    wait_drained(cli.pin_dir, second)
    stop([second])
    forks = [e["pid"] for e in records(log) if e["type"] == "fork"]
    for pid in before + while_down + after:
        assert forks.count(pid) == 1, f"fork of {pid} seen {forks.count(pid)} times"


@pytest.mark.kernel
def test_an_unnamed_reader_leaves_nothing_behind(attached):
    """SIGKILLed: the kernel stops filling its ring at once (the exit program), its
    slot is free for the next procmon-ctl, and nothing was pinned for it."""
    cli = attached
    pins = pin_tree(cli.pin_dir)
    reader = cli.popen("events", "--json", stdout=subprocess.DEVNULL)
    wait_reading(cli.pin_dir, reader)
    assert pin_tree(cli.pin_dir) == pins
    reader.kill()
    reader.wait()
    values = bpftool_json("map", "dump", "pinned", str(cli.pin_dir / "maps" / "readers"))
    assert all(v["formatted"]["value"]["owner_tgid"] != reader.pid for v in values)
    assert ReaderSlots(PinnedInstance.at(cli.pin_dir)).states() == []
    dump = bpftool_json("map", "dump", "pinned", str(cli.pin_dir / "maps" / "settings"))
    assert dump[0]["formatted"]["value"]["readers"] == 0
    assert pin_tree(cli.pin_dir) == pins


@pytest.mark.kernel
def test_filters_hold_while_a_reader_is_stopped(attached, test_cgroup, tmp_path):
    """A --cgroup reader and a --threads reader stopped for longer than the old
    one-second leases: the cgroup reader gets no other cgroup's processes, the
    threads reader every thread, with nothing lost."""
    cli = attached
    cg_out, th_out = tmp_path / "cg.jsonl", tmp_path / "th.jsonl"
    cg = cli.popen("events", "--json", "--cgroup", shown(test_cgroup), stdout=cg_out.open("w"))
    th = cli.popen("events", "--json", "--threads", stdout=th_out.open("w"))
    for proc in (cg, th):
        stop_reading(cli.pin_dir, proc)
    try:
        time.sleep(1.5)  # the point is a stop longer than a lease was: no condition to poll
        outside = fork_processes(20)
        inside = subprocess.run(
            in_cgroup(test_cgroup, "for i in 1 2 3; do /bin/true; done; echo $$"),
            check=True,
            capture_output=True,
            text=True,
        )
        shell = int(inside.stdout)
        script = (
            "import os, threading\n"
            "for _ in range(50):\n"
            "    t = threading.Thread(target=int); t.start(); t.join()\n"
            "print(os.getpid())"
        )
        made = subprocess.run(["python3", "-c", script], check=True, capture_output=True, text=True)
        threads_of = int(made.stdout)
    finally:
        for proc in (cg, th):
            proc.send_signal(signal.SIGCONT)
    for proc in (cg, th):
        wait_drained(cli.pin_dir, proc)
    stop([cg, th])
    in_cg = records(cg_out)
    assert not [e for e in in_cg if e["tgid"] in outside]
    assert {e["cgroup"] for e in in_cg if "cgroup" in e} == {shown(test_cgroup)}
    assert [e for e in in_cg if e["type"] == "exec" and e["tgid"] != shell]
    threads = [
        e
        for e in records(th_out)
        if e["type"] == "fork" and e["thread"] and e["tgid"] == threads_of
    ]
    assert len(threads) == 50
    assert not [e for e in records(th_out) if e["type"] == "gap"]


@pytest.mark.kernel
def test_a_cgroup_filter_reaches_any_depth(attached, test_cgroup, tmp_path):
    """A process 40 cgroup levels below the filter's cgroup is in it."""
    cli = attached
    deep = test_cgroup
    for n in range(40):
        deep = deep / f"d{n}"
    deep.mkdir(parents=True)
    try:
        with cli.reading("events", "--json", "--cgroup", shown(test_cgroup)) as r:
            ran = subprocess.run(
                in_cgroup(deep, "/bin/true; echo $$"), check=True, capture_output=True, text=True
            )
        shell = int(ran.stdout)
        assert [e for e in r.json_lines() if e["type"] == "exec" and e["ppid"] == shell]
    finally:
        while deep != test_cgroup:
            deep.rmdir()
            deep = deep.parent


def test_lineage_is_complete_under_a_cgroup_filter(attached, test_cgroup):
    """A process in the filter's cgroup whose ancestors are outside it (as for
    `podman exec`): its lineage still names them."""
    cli = attached
    with cli.reading("events", "--json", "--lineage", "--cgroup", shown(test_cgroup)) as r:
        ran = subprocess.run(
            in_cgroup(test_cgroup, "/bin/true; echo $$"), check=True, capture_output=True, text=True
        )
    shell = int(ran.stdout)
    lines = r.json_lines()
    [true] = [e for e in lines if e["type"] == "exec" and e["ppid"] == shell]
    ancestors = [a["pid"] for a in true["lineage"]]
    assert ancestors[:2] == [shell, os.getpid()], true["lineage"]
    assert {e["cgroup"] for e in lines if "cgroup" in e} == {shown(test_cgroup)}


def test_a_cgroup_filter_follows_its_cgroup_made_anew(attached, test_cgroup):
    """The filtered cgroup removed and made again (a service or container restart):
    the kernel's filter takes the new cgroup as it is made, before a process can be
    in it, so nothing started in it at once is lost; and so for a named reader that
    is down while it happens."""
    cli = attached
    with cli.reading("events", "--json", "--cgroup", shown(test_cgroup)) as r:
        first = subprocess.run(
            in_cgroup(test_cgroup, "echo $$"), check=True, capture_output=True, text=True
        )
        test_cgroup.rmdir()
        test_cgroup.mkdir()
        # At once, with no wait for the reader to look the path up again.
        second = subprocess.run(
            in_cgroup(test_cgroup, "echo $$"), check=True, capture_output=True, text=True
        )
        assert reader_state(cli.pin_dir, r.proc.pid).cgroup_id == test_cgroup.stat().st_ino
    tgids = {e["tgid"] for e in r.json_lines()}
    assert {int(first.stdout), int(second.stdout)} <= tgids

    # A named reader, down while its cgroup is made anew: what ran in the new one
    # waits in its ring.
    name = "cg-follow"
    with cli.reading("events", "--json", "--name", name, "--cgroup", shown(test_cgroup)):
        pass
    test_cgroup.rmdir()
    test_cgroup.mkdir()
    while_down = subprocess.run(
        in_cgroup(test_cgroup, "echo $$"), check=True, capture_output=True, text=True
    )
    with cli.reading("events", "--json", "--name", name, "--cgroup", shown(test_cgroup)) as back:
        pass
    cli("readers", "rm", name)
    assert int(while_down.stdout) in {e["tgid"] for e in back.json_lines()}


def failed_execs(path: str, n: int) -> list[int]:
    """n children that each try execve(path) and fail; their pids."""
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(path, ["x"])
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        pids.append(pid)
    return pids


@pytest.mark.kernel
def test_one_failed_reader_at_a_time_and_only_it_gets_failures(attached, tmp_path):
    """The kernel attaches a program to a syscall tracepoint once: a second
    `events --failed` is refused in one line naming the first's pid, and takes no
    slot; the failures go to the --failed reader only."""
    cli = attached
    missing = str(tmp_path / "no-such-program")
    with (
        cli.reading("events", "--json", "--failed") as failed,
        cli.reading("events", "--json") as plain,
    ):
        # Its programs attach just after it has its slot.
        wait_attached(failed_program_ids(cli.pin_dir), failed.proc)
        second = cli("events", "--json", "--failed", "--duration", "1", check=False)
        assert second.returncode == 3 and second.stdout == ""
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"pid {failed.proc.pid} already reads failed execs" in second.stderr
        assert len(ReaderSlots(PinnedInstance.at(cli.pin_dir)).states()) == 2
        pids = failed_execs(missing, 3)
    got = [e["pid"] for e in failed.json_lines() if e["type"] == "exec_failed"]
    assert set(pids) <= set(got)
    assert not [e for e in plain.json_lines() if e["type"] == "exec_failed"]
