"""What a reader guarantees whatever ends it (issues 13, 27): a named reader marks
every loss once across its restarts, a record leaves its ring only after all it
produces is written, what a reader asks for dies with it, a reader notices its
instance going, and --output never holds half a line.  Real kernel, real
processes, real files.  Marked `kernel` (run on every kernel of the matrix) where
the programs themselves are tested: the losses counter and a dead reader's slot;
the rest is the reader's, the same on every kernel."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import (
    bpftool_json,
    fork_processes,
    in_cgroup,
    lines_until,
    reader_state,
    shown,
    wait_reading,
)

from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import ReaderSlots

F_GETPIPE_SZ = 1032  # fcntl.F_GETPIPE_SZ, Python 3.10+
GAP_TEXT = re.compile(r"^-- (\d+) event\(s\) lost here")


def gaps_in(text: str, mode: str) -> int:
    """The losses the gap markers of one reader's output add up to."""
    if mode == "json":
        return sum(
            json.loads(ln)["dropped"] for ln in text.splitlines() if ln.startswith('{"type":"gap"')
        )
    return sum(int(m.group(1)) for ln in text.splitlines() if (m := GAP_TEXT.match(ln)))


def settings_value(pin_dir: Path) -> dict:
    dump = bpftool_json("map", "dump", "pinned", str(pin_dir / "maps" / "settings"))
    return dump[0]["formatted"]["value"]


def wait_for(condition, timeout: float = 30, what: str = "condition") -> float:
    """Poll until `condition()`; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.01)
    return time.monotonic() - start


class Forker:
    """A process that forks children on request; they neither exec nor exit until
    the Forker ends (so their fork rows wait out the exec window)."""

    CODE = """
import os, sys, time
kids = []
for line in sys.stdin:
    if line.strip() == "fork":
        for _ in range(5):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            kids.append(pid)
        print(" ".join(map(str, kids[-5:])), flush=True)
    else:
        break
for pid in kids:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def fork5(self) -> list[int]:
        self.proc.stdin.write("fork\n")
        self.proc.stdin.flush()
        return [int(x) for x in self.proc.stdout.readline().split()]

    def close(self) -> None:
        self.proc.stdin.write("stop\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def table_pids(text: str) -> list[int]:
    """The PID column of a table's rows (header, rule and gap lines left out)."""
    return [
        int(ln.split()[0])
        for ln in text.splitlines()
        if ln.split()[:1] != [] and ln.split()[0].isdigit()
    ]


@pytest.mark.kernel
def test_losses_after_the_last_record_are_marked(cli):
    """Issue 13's case: 4 KiB ring, a named reader that is down, 300 forks, detach:
    the reader, back, marks every loss, though no record follows the last ones."""
    cli("load", "--ring-size", "4096")
    cli("attach")
    # Takes its place (and may already lose some of what the machine does meanwhile).
    out = cli("events", "--json", "--name", "late", "--duration", "0.1").stdout
    fork_processes(300)
    cli("detach")
    dropped = cli.json("stats", "--json")["dropped"]
    assert dropped > 0
    out += cli("events", "--json", "--name", "late", "--duration", "0.3").stdout
    print(f"dropped {dropped}, marked {gaps_in(out, 'json')}")
    assert gaps_in(out, "json") == dropped


def test_a_named_reader_marks_every_loss_exactly_once_across_restarts(cli):
    """A named reader restarted in every mode, each run stopped a different way,
    each after a burst that overflows its ring while it was down: its gap markers
    add up to `dropped`, exactly."""
    cli("load", "--ring-size", "4096")
    cli("attach")
    name = ["--name", "seq"]
    marked = gaps_in(cli("events", "--json", *name, "--duration", "0.1").stdout, "json")
    for mode, args in [
        ("json", ["--json", "--count", "5"]),
        ("raw", ["--raw", "--duration", "0.3"]),
        ("table", ["--duration", "0.3"]),
        ("json", ["--json", "--duration", "0.3"]),
        ("table", ["--wide", "--count", "3"]),
    ]:
        fork_processes(200)
        marked += gaps_in(cli("events", *name, *args).stdout, mode)
    cli("detach")
    marked += gaps_in(cli("events", "--json", *name, "--duration", "0.3").stdout, "json")
    dropped = cli.json("stats", "--json")["dropped"]
    print(f"7 runs marked {marked} losses; the ring dropped {dropped}")
    assert marked == dropped > 0


def _start_table_reader(cli, *args: str) -> subprocess.Popen:
    reader = cli.popen("events", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    header = reader.stdout.readline()  # written once the ring is the reader's
    assert header.startswith("PID"), (header, reader.stderr.read() if not header else "")
    reader.stdout.readline()  # the rule under it
    return reader


STOPS = ["SIGINT", "SIGTERM", "SIGHUP", "count", "closed-pipe"]


@pytest.mark.parametrize("stop", STOPS)
def test_held_rows_are_the_next_readers(attached, stop):
    """Five forks that do not exec wait out their exec window as held rows; a named
    reader that ends in the meantime (by a signal, by --count, or on a closed
    pipe) leaves them in its ring, and its next run shows each of them once."""
    cli = attached
    forker = Forker()
    try:
        only = ["--name", "held", "--ppid", str(forker.proc.pid)]
        extra = ["--count", "1"] if stop == "count" else []
        reader = _start_table_reader(cli, *only, *extra)
        if stop == "closed-pipe":
            reader.stdout.close()
        kids = forker.fork5()
        if stop.startswith("SIG"):
            time.sleep(0.06)  # inside the 100 ms exec window: the rows are still held
            reader.send_signal(getattr(signal, stop))
        first = "" if stop == "closed-pipe" else reader.stdout.read()
        reader.wait(timeout=30)
        assert reader.returncode == 0, reader.stderr.read()
        second = cli("events", *only, "--duration", "0.3").stdout
    finally:
        forker.close()
    shown = table_pids(first) + table_pids(second)
    assert sorted(shown) == sorted(kids), (first, second)
    if stop == "count":
        assert len(table_pids(first)) == 1


@pytest.mark.parametrize("how", [pytest.param("SIGKILL", marks=pytest.mark.kernel), "SIGHUP"])
def test_thread_streaming_dies_with_its_reader(attached, how, test_cgroup):
    """A --threads reader that dies (SIGKILL: no cleanup at all) takes what it asked
    for with it: threads cost no ring space from then on, and its slot is gone.
    Measured with a storm in a cgroup of the test's own: the dead reader was the
    instance's only one, so nothing at all is produced."""
    cli = attached
    reader = cli.popen(
        "events",
        "--threads",
        "--duration",
        "120",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_reading(cli.pin_dir, reader)
    reader.send_signal(getattr(signal, how))
    reader.wait(timeout=10)
    before = cli.json("stats", "--json")
    storm = (
        "import threading\nfor _ in range(500):\n"
        "    t = threading.Thread(target=lambda: None); t.start(); t.join()"
    )
    subprocess.run(
        in_cgroup(test_cgroup, f"exec {shlex.quote(sys.executable)} -c {shlex.quote(storm)}"),
        check=True,
    )
    after = cli.json("stats", "--json")
    assert after["threads"] - before["threads"] >= 500
    # The threads were counted, and not one of them went into a ring.
    assert after["produced"] == before["produced"]
    assert ReaderSlots(PinnedInstance.at(cli.pin_dir)).states() == []
    assert settings_value(cli.pin_dir)["thread_readers"] == 0


@pytest.mark.kernel
def test_a_filtering_reader_ends_with_its_process(attached, test_cgroup):
    """A --cgroup reader is in settings.cgroup_readers, so the programs leave it out
    of what its cgroup does not hold before they build a record.  Its own process
    is outside that cgroup, so its own exit record is filtered out for it: the exit
    program must still end its slot there (SIGKILL: no cleanup at all), and the
    masks lose its bits once its slot is freed."""
    cli = attached
    reader = cli.popen(
        "events",
        "--cgroup",
        shown(test_cgroup),
        "--duration",
        "120",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_reading(cli.pin_dir, reader)
    slot = ReaderSlots(PinnedInstance.at(cli.pin_dir)).slot_of(reader.pid)
    settings = settings_value(cli.pin_dir)
    assert settings["cgroup_readers"] == settings["readers"] == 1 << slot, settings
    reader.send_signal(signal.SIGKILL)
    reader.wait(timeout=10)
    dump = bpftool_json("map", "dump", "pinned", str(cli.pin_dir / "maps" / "readers"))
    owners = {e["formatted"]["key"]: e["formatted"]["value"]["owner_tgid"] for e in dump}
    assert owners[slot] == 0, f"slot {slot} still names its ended reader: {owners[slot]}"
    assert ReaderSlots(PinnedInstance.at(cli.pin_dir)).states() == []
    settings = settings_value(cli.pin_dir)
    assert settings["cgroup_readers"] == settings["readers"] == 0, settings


def test_a_stalled_reader_keeps_the_threads_it_asked_for(attached, test_cgroup):
    """A --threads reader blocked writing to a pipe nobody reads (a paused pager, a
    slow consumer, a starved machine) is alive: its filters hold however long it
    is blocked, and the threads made meanwhile are all in its stream once the pipe
    is read again.  (With the 1-second leases of old, a reader blocked longer lost
    them, with no gap line to say so.)  In a cgroup of the test's own, filtered in the kernel: what
    the rest of the machine makes meanwhile cannot fill the ring behind the blocked
    reader."""
    cli = attached
    reader = cli.popen(
        "events", "--json", "--threads", "--cgroup", shown(test_cgroup), "--duration", "300",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_reading(cli.pin_dir, reader)
        # ~500 KiB of JSON: the pipe fills, the reader blocks.
        forks = "i=0; while [ $i -lt 1500 ]; do ( : ); i=$((i+1)); done"
        subprocess.run(in_cgroup(test_cgroup, forks), check=True)
        wait_for(_pipe_stuck(reader.stdout.fileno()), what="the reader to block on the pipe")
        state = reader_state(cli.pin_dir, reader.pid)
        assert state.threads and state.cgroup_id is not None, "a blocked reader's filters went"
        threads = (
            "import threading\nfor _ in range(200):\n"
            "    t = threading.Thread(target=lambda: None); t.start(); t.join()"
        )
        storm = subprocess.Popen(
            in_cgroup(test_cgroup, f"exec {shlex.quote(sys.executable)} -c {shlex.quote(threads)}")
        )
        assert storm.wait(timeout=120) == 0
        marker = f'"tgid":{storm.pid},'  # sh exec'd python: the same process
        lines, err = lines_until(
            reader, lambda ls: sum('"thread":true' in x and marker in x for x in ls) >= 200
        )
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    made = [
        e for e in map(json.loads, lines) if e["type"] == "fork" and e["thread"]
        and e["tgid"] == storm.pid
    ]  # fmt: skip
    assert len(made) == 200, err


def test_a_reader_stops_when_its_instance_is_unloaded(attached, tmp_path):
    """unload (forced, as a reader is active) and load again: the reader that read
    the old instance stops within seconds with one line, and a new one reads the new
    instance."""
    cli = attached
    out = tmp_path / "events.jsonl"
    reader = cli.popen("events", "--output", str(out), stderr=subprocess.PIPE)
    wait_reading(cli.pin_dir, reader)
    refused = cli("unload", check=False)
    assert refused.returncode == 3 and "--force" in refused.stderr, refused.stderr
    assert cli("unload", "--force").returncode == 0
    cli("load")
    cli("attach")
    gone = time.monotonic()
    err = reader.communicate(timeout=10)[1]
    print(f"the reader stopped {time.monotonic() - gone:.2f} s after the load")
    assert reader.returncode == 3
    assert err.count("\n") == 1 and "unloaded" in err, err
    with cli.reading("events", "--json") as r:
        pids = fork_processes(3)
    assert set(pids) <= {e["pid"] for e in r.json_lines() if e["type"] == "fork"}


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs of the test's own."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _valid_lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.splitlines()]


def test_a_full_disk_leaves_whole_lines_and_loses_nothing(attached, small_disk):
    """ENOSPC: the reader stops with one line naming the file, the file ends in a
    whole line, and the records that did not fit come out of its next run (--output
    is a named reader).  The readers keep this test's own children (--ppid): what
    else the machine forks meanwhile would fill the disk again."""
    cli = attached
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * (968 * 1024))
    log = small_disk / "events.jsonl"
    ours = ["--ppid", str(os.getpid())]
    cli("events", "--output", str(log), *ours, "--duration", "0.1")  # takes its place
    pids = fork_processes(600)  # ~400 KiB of JSON: more than the 56 KiB left, less than 1 MiB
    r = cli("events", "--output", str(log), *ours, "--duration", "5", check=False)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and str(log) in r.stderr and "space" in r.stderr, r.stderr
    first = _valid_lines(log) if log.stat().st_size else []
    filler.unlink()
    r = cli("events", "--output", str(log), *ours, "--duration", "0.5")
    assert r.returncode == 0, r.stderr
    lines = _valid_lines(log)
    assert lines[: len(first)] == first
    forks = [e["pid"] for e in lines if e["type"] == "fork"]
    assert set(pids) <= set(forks), f"{len(set(pids) - set(forks))} forks lost"
    assert len(forks) == len(set(forks)), "a record written twice"


@pytest.mark.parametrize("cut_at", [4, 40, 200_000], ids=["in_its_type", "short", "200KB"])
def test_part_of_a_line_of_ours_is_cut_off(attached, tmp_path, cut_at):
    """A file that ends in part of one of our lines (a reader killed mid-write):
    the next reader cuts it off before its first line, so every line is whole and
    nothing before it is touched, however long the cut line (its records were
    never committed: they come again)."""
    cli = attached
    log = tmp_path / "events.jsonl"
    whole = '{"type":"gap","time":"2026-12-08T02:24:33.012451Z","dropped":1}\n'
    cut = ('{"type":"exec","argv":["' + "a" * 300_000)[:cut_at]
    log.write_text(whole * 3 + cut)
    with cli.reading("events", "--output", str(log)):
        pids = fork_processes(3)
    text = log.read_text()
    assert text.startswith(whole * 3)
    events = [json.loads(line) for line in text[len(whole) * 3 :].splitlines()]
    assert set(pids) <= {e["pid"] for e in events if e["type"] == "fork"}


def test_part_of_a_line_of_someone_else_gets_a_newline(attached, tmp_path):
    """A file that ends in part of a line that is not ours (another writer): it is
    kept, and the next reader's lines start on a line of their own."""
    cli = attached
    log = tmp_path / "events.jsonl"
    log.write_text("# written by hand\nnot a record, no newline")
    with cli.reading("events", "--output", str(log)):
        pids = fork_processes(3)
    first, second, *rest = log.read_text().splitlines()
    assert (first, second) == ("# written by hand", "not a record, no newline")
    events = [json.loads(line) for line in rest]
    assert set(pids) <= {e["pid"] for e in events if e["type"] == "fork"}


def test_a_stop_signal_never_cuts_a_line_in_half(attached):
    """SIGINT while the reader is blocked writing a large batch to a full pipe: the
    batch is finished once the pipe drains, and the last line is whole."""
    cli = attached
    reader = cli.popen("events", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_reading(cli.pin_dir, reader)
    fork_processes(2000)  # ~500 KiB of JSON: far more than a pipe holds
    stuck = _pipe_stuck(reader.stdout.fileno())
    wait_for(stuck, what="the reader to block on a full pipe")
    reader.send_signal(signal.SIGINT)
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    assert out.endswith("\n")
    assert all(json.loads(line) for line in out.splitlines())
    # More than the pipe held when the signal came: the blocked write went on.
    assert len(out) > stuck.bytes


def _pipe_stuck(fd: int):
    """A condition: the pipe we read from `fd` is half full or more and has not
    changed for 0.3 s, so its writer, with more to write, is blocked on it.  (Its
    space comes in pages, which small writes leave partly empty: "full" is not a
    byte count.)"""
    since = time.monotonic()

    def stuck() -> bool:
        nonlocal since
        waiting = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        now = time.monotonic()
        if waiting != stuck.bytes:
            stuck.bytes, since = waiting, now
        return waiting >= fcntl.fcntl(fd, F_GETPIPE_SZ) // 2 and now - since >= 0.3

    stuck.bytes = -1  # what the pipe held when last looked at
    return stuck


def test_after_sigkill_the_next_reader_repeats_at_most_one_batch(attached, tmp_path):
    """A reader of --output (a named reader) killed outright loses nothing: its next
    run starts where the last committed batch ended, so it repeats at most that
    batch."""
    cli = attached
    log = tmp_path / "events.jsonl"
    reader = cli.popen("events", "--output", str(log), stderr=subprocess.PIPE)
    wait_reading(cli.pin_dir, reader)
    pids = fork_processes(1000)
    os.kill(reader.pid, signal.SIGKILL)
    reader.wait(timeout=10)
    r = cli("events", "--output", str(log), "--duration", "0.5")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    forks = [e["pid"] for e in events if e["type"] == "fork" and e["pid"] in set(pids)]
    assert set(forks) == set(pids)
    assert len(forks) - len(set(forks)) <= 4096, "more than one batch repeated"
