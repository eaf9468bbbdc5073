"""What is reading is visible (issue 27): `readers`, `status` and `stats --json` list
each reader of the instance with its pid or name, its filters and its figures; a
named reader that is down shows as such, with what waits for it; `readers rm NAME`
removes its place (never while it runs); and a reader that cannot start says, in
one line, who blocks it.  On the host only: listing and removing read and write the
same maps on every kernel; what differs by kernel (rings in an array of maps, a named
reader's ring kept while it is down) is test_many_readers' on the whole matrix."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from conftest import bpftool_json, fork_processes, shown, wait_reading

from procmon_ctl.errors import EXIT_STATE, EXIT_USAGE
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import READERS_MAX, ReaderSlots, ReaderWants
from procmon_ctl.views import readers as view
from procmon_ctl.views.readers import HEADINGS
from procmon_ctl.views.render import CUT
from procmon_ctl.views.stats_schema import ReaderStatus


def a_reader(**fields) -> ReaderStatus:
    base = dict(
        slot=0,
        name=None,
        pid=4242,
        threads=False,
        failed=False,
        cgroup_id=None,
        cgroup=None,
        argv_bytes=4096,
        ring_size=4 << 20,
        waiting_bytes=0,
        produced=0,
        delivered=0,
        dropped=0,
        filtered=0,
    )
    return ReaderStatus(**{**base, **fields})


# --- the table, from models ------------------------------------------------------------


def test_the_table_shows_each_reader_in_aligned_columns():
    shipper = a_reader(
        slot=3,
        name="events.jsonl",
        pid=None,
        threads=True,
        waiting_bytes=12_800,
        produced=1500,
        delivered=1400,
        dropped=100,
    )
    watcher = a_reader(slot=5, failed=True, cgroup_id=7, cgroup="/system.slice/x", filtered=9)
    gone = a_reader(slot=6, cgroup_id=8, cgroup=None, argv_bytes=0)
    short = a_reader(slot=7, argv_bytes=256)
    lines = view.readers_lines([shipper, watcher, gone, short])
    assert lines == [
        "SLOT  NAME          PID   RING  WAITING    DELIVERED  DROPPED  FILTERED  FILTERS",
        "3     events.jsonl  down  4M    12.5K <1%  1400       100      0         threads",
        "5     -             4242  4M    0B 0%      0          0        9         "
        "failed, cgroup /system.slice/x",
        "6     -             4242  4M    0B 0%      0          0        0         "
        "cgroup id 8 (gone), no argv",
        "7     -             4242  4M    0B 0%      0          0        0         argv 256B",
    ]
    assert view.readers_lines([]) == ["readers: none"]
    assert view.waiting_text(1 << 21, 4 << 20) == "2M 50%"
    assert (
        view.removed_text(shipper)
        == "removed the reader events.jsonl (12800 bytes unread in its ring)"
    )


def test_the_table_fits_a_terminal_and_is_whole_when_piped():
    """On 80 columns FILTERS, then NAME, are cut (never a figure); piped, nothing is."""
    long = a_reader(
        slot=15,
        name="n" * 31,
        pid=4194303,
        threads=True,
        failed=True,
        cgroup_id=9,
        cgroup="/system.slice/" + "c" * 60,
        produced=10**9,
        delivered=10**9 - 1,
        dropped=1,
        filtered=123456789,
        waiting_bytes=(4 << 20) - 8,
    )
    cut = view.readers_lines([long, a_reader()], 80)
    assert max(len(x) for x in cut) <= 80, cut
    assert CUT in cut[1] and str(10**9 - 1) in cut[1] and "123456789" in cut[1]
    whole = view.readers_lines([long, a_reader()])
    assert whole[1].endswith("threads, failed, cgroup /system.slice/" + "c" * 60)
    assert "n" * 31 in whole[1]
    for lines in (cut, whole):
        header = lines[0]
        starts = [header.index(h) for h in HEADINGS]
        for line in lines[1:]:
            assert all(line[at - 2 : at] == "  " and line[at] != " " for at in starts[1:]), line


def one_error_line(r: subprocess.CompletedProcess, code: int) -> str:
    """The one line a refused command prints: no traceback, nothing on stdout."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("procmon-ctl: error: ")
    return line.removeprefix("procmon-ctl: error: ")


def table(stdout: str) -> dict[str, dict[str, str]]:
    """`readers`' rows by their NAME (or pid for a reader without one), each as
    {heading: cell}: a cell starts under its heading (the table is aligned)."""
    header, *rows = stdout.splitlines()
    assert header.split() == list(HEADINGS)
    starts = [header.index(h) for h in HEADINGS]
    found = {}
    for row in rows:
        cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        by_heading = dict(zip(HEADINGS, cells, strict=True))
        found[by_heading["NAME"] if by_heading["NAME"] != "-" else by_heading["PID"]] = by_heading
    return found


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)


@contextlib.contextmanager
def reader(cli, *args: str):
    """`procmon-ctl events ARGS` running, once it has its slot; stopped (SIGINT) on
    leaving, whatever happened."""
    proc = cli.popen("events", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_reading(cli.pin_dir, proc)
        yield proc
    finally:
        stop(proc)


def by_slot_owner(readers: list[dict]) -> dict:
    return {r["name"] or r["pid"]: r for r in readers}


def test_two_readers_are_listed_with_their_pid_name_and_filters(attached, test_cgroup):
    cgroup = shown(test_cgroup)
    with (
        reader(attached, "--name", "journal", "--threads", "--json") as named,
        reader(attached, "--failed", "--cgroup", cgroup) as unnamed,
    ):
        fork_processes(3)
        listed = by_slot_owner(attached.json("readers", "--json"))
        rows = table(attached("readers").stdout)
        status = by_slot_owner(attached.json("status", "--json")["readers"])
        stats = attached.json("stats", "--json")
    assert named.returncode == 0 and unnamed.returncode == 0

    assert set(listed) == {"journal", unnamed.pid}
    journal, other = listed["journal"], listed[unnamed.pid]
    assert journal["pid"] == named.pid and other["name"] is None
    assert (journal["threads"], journal["failed"], journal["cgroup"]) == (True, False, None)
    assert (other["threads"], other["failed"], other["cgroup"]) == (False, True, cgroup)
    assert other["cgroup_id"] == test_cgroup.stat().st_ino
    ring_size = attached.json("status", "--json")["ring_size"]
    for r in (journal, other):
        assert r["ring_size"] == ring_size
        assert r["delivered"] == r["produced"] - r["dropped"]
    # The forks above went to the named reader; the other's filter kept them out.
    assert journal["delivered"] >= 3 and other["filtered"] >= 3

    assert rows["journal"]["PID"] == str(named.pid) and rows["journal"]["FILTERS"] == "threads"
    assert rows[str(unnamed.pid)]["NAME"] == "-"
    assert rows[str(unnamed.pid)]["FILTERS"] == f"failed, cgroup {cgroup}"
    assert rows["journal"]["RING"] == "4M"

    assert {k: (r["pid"], r["slot"]) for k, r in status.items()} == {
        k: (r["pid"], r["slot"]) for k, r in listed.items()
    }
    per_reader = by_slot_owner(stats["readers"])
    assert set(per_reader) == {"journal", unnamed.pid}
    assert per_reader["journal"]["threads"] and per_reader[unnamed.pid]["failed"]


def test_a_named_reader_that_is_down_shows_as_down_with_what_waits_for_it(attached):
    with reader(attached, "--name", "journal", "--json"):
        pass
    (before,) = attached.json("readers", "--json")
    pids = fork_processes(5)
    (down,) = attached.json("readers", "--json")
    assert down["name"] == "journal" and down["pid"] is None
    # Its ring keeps filling while it is down: at least a fork and an exit for each.
    assert down["delivered"] - before["delivered"] >= 2 * len(pids)
    assert down["waiting_bytes"] > before["waiting_bytes"]
    row = table(attached("readers").stdout)["journal"]
    assert row["PID"] == "down"
    assert row["WAITING"].split()[-1].endswith("%")
    status_text = attached("status").stdout.splitlines()
    assert any(line.split()[1:3] == ["journal", "down"] for line in status_text), status_text


def ring_ids(pin_dir) -> dict[int, int]:
    """The `rings` map: slot -> the id of its ring buffer."""
    entries = bpftool_json("map", "dump", "pinned", str(pin_dir / "maps" / "rings"))
    return {
        int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little"): int.from_bytes(
            bytes(int(b, 16) for b in e["value"]), "little"
        )
        for e in entries
    }


def test_readers_rm_refuses_while_it_runs_and_removes_it_when_down(attached):
    with reader(attached, "--name", "journal", "--json") as running:
        (state,) = attached.json("readers", "--json")
        refused = one_error_line(attached("readers", "rm", "journal", check=False), EXIT_STATE)
        assert refused == (
            f"the reader journal of the instance at {attached.pin_dir} is reading now "
            f"(pid {running.pid}): stop it first"
        )
    slot = state["slot"]
    assert slot in ring_ids(attached.pin_dir), "a named reader's ring stays while it is down"
    fork_processes(2)
    removed = attached("readers", "rm", "journal")
    assert removed.stderr == ""
    assert removed.stdout.startswith("removed the reader journal")
    assert attached.json("readers", "--json") == []
    assert slot not in ring_ids(attached.pin_dir)
    assert attached("readers").stdout == "readers: none\n"
    gone = one_error_line(attached("readers", "rm", "journal", check=False), EXIT_STATE)
    assert gone.startswith(f"the instance at {attached.pin_dir} has no reader named journal")


BAD_INPUT = [
    (["rm", "bad name"], EXIT_USAGE, "'bad name' is not a reader name: use 1 to 31"),
    (["rm", "-x"], EXIT_USAGE, "No such option: -x"),
    (["rm", "a" * 32], EXIT_USAGE, "is not a reader name"),
    (["rm", "nobody"], EXIT_STATE, "has no reader named nobody (the named readers are"),
    (["rm"], EXIT_USAGE, "readers rm needs the name of the reader to remove"),
    (["frob"], EXIT_USAGE, "readers takes no frob: run `PROCMON_PIN_DIR="),
    (["rm", "journal", "--json"], EXIT_USAGE, "--json applies only to the list"),
]


def test_bad_and_unknown_names_give_one_clear_line(attached):
    for argv, code, says in BAD_INPUT:
        line = one_error_line(attached("readers", *argv, check=False), code)
        assert says in line, (argv, line)


def test_a_second_reader_of_one_name_is_refused_naming_its_pid(attached):
    with reader(attached, "--name", "journal") as first:
        second = attached("events", "--name", "journal", "--count", "1", check=False)
        line = one_error_line(second, EXIT_STATE)
        assert line == (
            f"the reader journal of the instance at {attached.pin_dir} is already reading "
            f"(pid {first.pid}): "
            "stop it first, or choose another name"
        )


def test_when_every_slot_is_taken_the_error_names_who_holds_them(attached):
    """Slots held here (each hold is a lock of its own, as another process's would
    be): unnamed, one named reader reading, one named reader down."""
    slots = ReaderSlots(PinnedInstance.at(attached.pin_dir))
    small = ReaderWants()
    with contextlib.ExitStack() as held:
        with slots.taken(small, name="shipper", ring_size=1 << 16):
            pass  # down from here on: its place stays
        held.enter_context(slots.taken(small, name="journal", ring_size=1 << 16))
        for _ in range(READERS_MAX - 2):
            held.enter_context(slots.taken(small, ring_size=1 << 16))
        r = attached("events", "--count", "1", check=False)
        line = one_error_line(r, EXIT_STATE)
    me = os.getpid()
    assert line.startswith(
        f"all {READERS_MAX} reader slots of the instance at {attached.pin_dir} are in use ("
    )
    assert "shipper (down)" in line and f"journal (pid {me})" in line
    assert line.count(f"pid {me}") == READERS_MAX - 1
    assert line.endswith(f"(see `PROCMON_PIN_DIR={attached.pin_dir} procmon-ctl readers`)")
    # The unnamed slots went with their holds; the named readers' places stay.
    assert sorted(r["name"] for r in attached.json("readers", "--json")) == ["journal", "shipper"]
