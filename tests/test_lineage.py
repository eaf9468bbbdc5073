"""The process table behind `events --lineage`: lineage is who started a process,
kept across reparenting and pid reuse, from synthetic records and from the real
/proc; the table stays as small as the processes that need it.

`python tests/test_lineage.py` prints what a record's JSON lineage costs."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from procmon_ctl.process.decode import Event, decode_event, split_argv, text
from procmon_ctl.process.lineage import DEPTH, Ancestor, ProcessTable
from procmon_ctl.process.procfs import read_process
from procmon_ctl.views.lineage import chain_text, lineage_json

sys.path.insert(0, str(Path(__file__).parent))
from records import EXEC, EXEC_FAILED, EXIT, FORK, argv_area, record


def annotate(table: ProcessTable, e: Event) -> str:
    """Feed the record; its lineage as an `events --json --lineage` line has it."""
    return lineage_json(table.feed(e))


def lineage_json_of(table: ProcessTable, pid: int) -> str:
    return lineage_json(table.get(pid))


def chain_text_of(table: ProcessTable, pid: int) -> str:
    return chain_text(table.get(pid))


def fork(pid: int, ppid: int, comm: str = "sh", thread: bool = False, tgid: int = 0) -> Event:
    return Event(
        type=FORK, ts_ns=0, pid=pid, tgid=tgid or pid, ppid=ppid, uid=0, comm=comm,
        thread=thread, filename=None, exit_code=None, exit_signal=None, duration_ns=None,
        dropped_total=0,
    )  # fmt: skip


def exec_(pid: int, ppid: int, comm: str, *argv: str, failed: bool = False) -> Event:
    return Event(
        type=EXEC_FAILED if failed else EXEC, ts_ns=0, pid=pid, tgid=pid, ppid=ppid, uid=0,
        comm=comm, thread=False, filename=f"/bin/{comm}", exit_code=None, exit_signal=None,
        duration_ns=None, dropped_total=0, argv=argv, argv_truncated=False,
        argc=len(argv), errno=2 if failed else None,
    )  # fmt: skip


def exit_(pid: int, ppid: int, comm: str = "sh") -> Event:
    return Event(
        type=EXIT, ts_ns=0, pid=pid, tgid=pid, ppid=ppid, uid=0, comm=comm, thread=False,
        filename=None, exit_code=0, exit_signal=0, duration_ns=1, dropped_total=0,
    )  # fmt: skip


def booted() -> ProcessTable:
    """init (1) and kthreadd (2), as a kernel starts them."""
    table = ProcessTable()
    for e in (fork(1, 0, "swapper/0"), exec_(1, 0, "systemd", "/sbin/init", "splash")):
        table.feed(e)
    table.feed(fork(2, 0, "kthreadd"))  # a kernel thread: it never execs
    return table


def pids(table: ProcessTable, pid: int) -> list[int]:
    return [a.pid for a in table.lineage(pid)]


# Records --------------------------------------------------------------------------


def test_a_login_shell_s_child_has_its_chain_up_to_init():
    table = booted()
    table.feed(fork(700, 1, "systemd"))
    table.feed(exec_(700, 1, "sshd", "sshd", "-D"))
    table.feed(fork(812, 700, "sshd"))
    table.feed(exec_(812, 700, "bash", "-bash"))

    lineage = json.loads(annotate(table, fork(900, 812, "bash")))

    assert lineage == [
        {"pid": 812, "comm": "bash", "argv": ["-bash"]},
        {"pid": 700, "comm": "sshd", "argv": ["sshd", "-D"]},
        {"pid": 1, "comm": "systemd", "argv": ["/sbin/init", "splash"]},
    ]
    assert chain_text_of(table, 900) == "bash(812) < sshd(700) < systemd(1)"
    assert table.lineage(900)[0] == Ancestor(812, "bash", ("-bash",), False)
    assert table.lineage(1) == []


def test_a_forked_child_is_a_copy_of_its_parent_until_it_execs():
    table = booted()
    table.feed(fork(10, 1, "systemd"))
    table.feed(exec_(10, 1, "bash", "bash", "-i"))
    child = table.feed(fork(11, 10, "bash"))
    assert (child.comm, child.argv) == ("bash", ("bash", "-i"))

    table.feed(fork(12, 11, "bash"))
    assert table.lineage(12)[0] == Ancestor(11, "bash", ("bash", "-i"), False)
    table.feed(exec_(11, 10, "make", "make", "-j2"))
    assert table.lineage(12)[0] == Ancestor(11, "make", ("make", "-j2"), False)


def test_every_record_gets_its_process_s_ancestors_the_exit_too():
    table = booted()
    table.feed(fork(10, 1, "systemd"))
    table.feed(exec_(10, 1, "cron", "cron", "-f"))
    records = [fork(11, 10, "cron"), exec_(11, 10, "backup", "backup"), exit_(11, 10)]
    answers = [json.loads(annotate(table, e)) for e in records]

    cron = {"pid": 10, "comm": "cron", "argv": ["cron", "-f"]}
    init = {"pid": 1, "comm": "systemd", "argv": ["/sbin/init", "splash"]}
    assert answers == [[cron, init]] * 3
    assert table.get(11) is None
    assert table.lineage(11) == [] and annotate(table, exit_(11, 10)) == "[]"


def test_the_exit_record_s_process_keeps_its_lineage_after_leaving_the_table():
    table = booted()
    table.feed(fork(10, 1, "systemd"))
    table.feed(fork(11, 10, "systemd"))
    table.feed(exit_(10, 1))
    gone = table.feed(exit_(11, 1))

    assert gone.exited and gone.pid == 11
    assert [(a.pid, a.exited) for a in gone.lineage()] == [(10, True), (1, False)]
    assert chain_text(gone) == "systemd(10 exited) < systemd(1)"
    assert len(table) == 2  # init and kthreadd: 10 went with its last child


def test_exec_changes_the_name_every_lineage_below_shows():
    table = booted()
    table.feed(fork(10, 1, "systemd"))
    table.feed(fork(11, 10, "systemd"))
    before = lineage_json_of(table, 11)  # caches 10's text
    for comm in ("env", "nice", "python3"):
        table.feed(exec_(10, 1, comm, comm, "x"))
    assert json.loads(before)[0]["comm"] == "systemd"
    assert json.loads(lineage_json_of(table, 11))[0] == {
        "pid": 10,
        "comm": "python3",
        "argv": ["python3", "x"],
    }
    assert table.get(10).comm == "python3"


def test_a_process_reparented_to_init_keeps_the_parent_that_started_it():
    table = booted()
    table.feed(fork(10, 1, "systemd"))
    table.feed(exec_(10, 1, "sh", "sh", "-c", "sleep 30 &"))
    table.feed(fork(11, 10, "sh"))
    table.feed(exec_(11, 10, "sleep", "sleep", "30"))

    table.feed(exit_(10, 1, "sh"))  # sh exits first: the kernel hands sleep to init
    assert chain_text_of(table, 11) == "sh(10 exited) < systemd(1)"  # marked
    assert [a.exited for a in table.lineage(11)] == [True, False]
    shown = json.loads(lineage_json_of(table, 11))[0]
    assert shown == {"pid": 10, "comm": "sh", "argv": ["sh", "-c", "sleep 30 &"], "exited": True}
    assert (len(table), table.exited_count) == (4, 1)

    # Its exit record names init as parent; its lineage still names sh.
    assert json.loads(annotate(table, exit_(11, 1, "sleep")))[0]["pid"] == 10
    assert (len(table), table.living_count, table.exited_count) == (2, 2, 0)


def test_the_middle_of_a_chain_exits():
    table = ProcessTable()
    table.feed(fork(1, 0, "init"))
    table.feed(fork(2, 1, "init"))
    table.feed(exec_(2, 1, "mid", "mid"))
    table.feed(fork(3, 2, "mid"))
    table.feed(exit_(2, 1))
    assert [(a.pid, a.comm, a.exited) for a in table.lineage(3)] == [
        (2, "mid", True),
        (1, "init", False),
    ]

    table.feed(fork(4, 3, "mid"))
    table.feed(exit_(3, 1))  # 4 still needs 3, and through it 2
    assert [(a.pid, a.exited) for a in table.lineage(4)] == [(3, True), (2, True), (1, False)]
    assert (table.living_count, table.exited_count) == (2, 2)

    table.feed(exit_(4, 1))
    assert (table.living_count, table.exited_count) == (1, 0)
    assert table.get(1).children == 0


def test_a_reused_pid_never_mixes_two_processes():
    table = booted()
    table.feed(fork(100, 1, "systemd"))
    table.feed(exec_(100, 1, "old", "old"))
    table.feed(fork(101, 100, "old"))

    # 100's exit record was lost: a fork of pid 100 means that process is over.
    table.feed(fork(100, 1, "systemd"))
    table.feed(exec_(100, 1, "new", "new"))
    assert [(a.pid, a.comm, a.exited) for a in table.lineage(101)] == [
        (100, "old", True),
        (1, "systemd", False),
    ]
    assert table.lineage(100) == [Ancestor(1, "systemd", ("/sbin/init", "splash"), False)]
    table.feed(fork(102, 100, "new"))
    assert chain_text_of(table, 102) == "new(100) < systemd(1)"

    # An exit of pid 100 is the new process's; the old one goes with 101.
    table.feed(exit_(100, 1))
    assert chain_text_of(table, 101) == "old(100 exited) < systemd(1)"
    assert chain_text_of(table, 102) == "new(100 exited) < systemd(1)"
    table.feed(exit_(101, 1))
    table.feed(exit_(102, 1))
    assert (len(table), table.exited_count) == (2, 0)


def test_a_pid_reused_after_its_exit_starts_afresh():
    table = booted()
    table.feed(fork(100, 1, "systemd"))
    table.feed(exec_(100, 1, "old", "old"))
    table.feed(exit_(100, 1))
    table.feed(fork(100, 2, "kthreadd"))
    assert chain_text_of(table, 100) == "kthreadd(2)"
    assert table.get(100).argv == ()


def test_thread_forks_and_failed_execs_change_nothing():
    table = booted()
    table.feed(fork(10, 1, "systemd"))
    table.feed(exec_(10, 1, "app", "app"))
    size = len(table)

    thread = fork(11, 10, "worker", thread=True, tgid=10)
    assert json.loads(annotate(table, thread)) == json.loads(lineage_json_of(table, 10))
    assert table.get(11) is None
    failed = exec_(10, 1, "nope", "nope", "-x", failed=True)
    assert table.feed(failed) is table.get(10)
    assert (table.get(10).comm, table.get(10).argv, len(table)) == ("app", ("app",), size)


def test_records_about_unknown_processes():
    table = ProcessTable()
    assert table.feed(exit_(5, 1)) is None
    assert annotate(table, exit_(5, 1)) == "[]"
    assert annotate(table, exec_(6, 7, "x", "x", failed=True)) == "[]"
    assert len(table) == 0

    # A fork names its parent and the parent's name: a lineage one step long.
    assert json.loads(annotate(table, fork(20, 19, "runner"))) == [
        {"pid": 19, "comm": "runner", "argv": []}
    ]
    # An exec whose fork was lost: its parent now stands in.
    table.feed(exec_(21, 19, "job", "job"))
    assert chain_text_of(table, 21) == "runner(19)"
    assert table.get(19).children == 2


def test_names_and_arguments_are_exact_json():
    table = ProcessTable()
    hostile = ['q"\\', "a\nb", "\x1b[2J", "caf\u00e9", text(b"\xff\xfe"), "\u202e"]
    table.feed(fork(2, 1, 'q"\\\t\x1b'))
    table.feed(exec_(2, 1, text(b"caf\xe9\xff"), *hostile))
    table.feed(fork(3, 2, "x"))
    table.feed(exit_(2, 1))

    (ancestor, init) = json.loads(lineage_json_of(table, 3))
    assert ancestor == {"pid": 2, "comm": "caf\\xe9\\xff", "argv": hostile, "exited": True}
    assert init == {"pid": 1, "comm": 'q"\\\t\x1b', "argv": []}


def test_decoded_ring_records():
    table = ProcessTable()
    ring = [
        record(FORK, pid=50, tgid=50, ppid=1, comm=b"bash"),
        record(EXEC, pid=50, tgid=50, ppid=1, comm=b"ls", argv=argv_area(b"ls", b"-l")),
        record(FORK, pid=51, tgid=51, ppid=50, comm=b"ls"),
        record(EXIT, pid=50, tgid=50, ppid=1, comm=b"ls"),
    ]
    lines = [annotate(table, decode_event(r)) for r in ring]
    ls, init = '{"pid":50,"comm":"ls","argv":["ls","-l"]}', '{"pid":1,"comm":"bash","argv":[]}'
    assert lines[2] == f"[{ls},{init}]"
    assert json.loads(lines[3]) == [{"pid": 1, "comm": "bash", "argv": []}]
    assert chain_text_of(table, 51) == "ls(50 exited) < bash(1)"


# Bounds ---------------------------------------------------------------------------


def test_a_storm_of_short_lived_children_leaves_nothing_behind():
    table = booted()
    table.feed(fork(500, 1, "systemd"))
    table.feed(exec_(500, 1, "make", "make", "-j2"))
    largest = 0
    for i in range(200_000):
        pid = 1000 + i % 30_000  # pids come round again, as they do
        table.feed(fork(pid, 500, "make"))
        largest = max(largest, len(table))
        table.feed(exec_(pid, 500, "cc", "cc", "-c", f"f{i}.c"))
        table.feed(exit_(pid, 500, "cc"))
    assert largest == 4
    assert (len(table), table.living_count, table.exited_count) == (3, 3, 0)
    assert table.get(500).children == 0


def test_a_deep_chain_keeps_exactly_what_its_last_process_needs():
    table = booted()
    depth = 20_000
    # Each process forks the next and exits, as daemons that double-fork do.
    parent = 1
    for pid in range(100, 100 + depth):
        table.feed(fork(pid, parent, "d"))
        if parent != 1:
            table.feed(exit_(parent, 1))
        parent = pid
    last = 100 + depth - 1
    assert (table.living_count, table.exited_count) == (3, depth - 1)
    assert sum(1 for _ in table.get(last).ancestors()) == depth

    # What a record shows of it is cut, so a deep chain cannot swell every record.
    lineage = json.loads(lineage_json_of(table, last))
    assert [a["pid"] for a in lineage] == list(range(last - 1, last - 1 - DEPTH, -1))
    assert all(a["exited"] for a in lineage)
    assert [a.get("cut", False) for a in lineage] == [False] * (DEPTH - 1) + [True]
    assert [a.cut for a in table.lineage(last)] == [False] * (DEPTH - 1) + [True]
    assert chain_text_of(table, last).endswith(f"d({last - DEPTH} exited) < …")

    table.feed(fork(50_000, last, "d"))
    table.feed(exit_(50_000, last))
    assert len(table) == 3 + depth - 1
    table.feed(exit_(last, 1))
    assert (len(table), table.exited_count) == (2, 0)


def test_a_lineage_just_deep_enough_is_not_cut():
    table = ProcessTable()
    for pid in range(1, DEPTH + 2):
        table.feed(fork(pid, pid - 1, "d"))
    lineage = json.loads(lineage_json_of(table, DEPTH + 1))
    assert len(lineage) == DEPTH and lineage[-1] == {"pid": 1, "comm": "d", "argv": []}
    assert not any(a.cut for a in table.lineage(DEPTH + 1))
    assert chain_text_of(table, DEPTH + 1).endswith("< d(1)")


class Model:
    """What the lineage should be, from the rules alone: nothing is ever dropped."""

    def __init__(self) -> None:
        self.living: dict[int, list] = {}  # pid -> [pid, comm, argv, exited, parent]

    def feed(self, e: Event) -> None:
        if e.type == FORK and not e.thread:
            if e.tgid in self.living:
                self.living.pop(e.tgid)[3] = True
            parent = self.living.get(e.ppid)
            if parent is None and e.ppid:
                parent = self.living[e.ppid] = [e.ppid, e.comm, (), False, None]
            argv = parent[2] if parent else ()
            self.living[e.tgid] = [e.tgid, e.comm, argv, False, parent]
        elif e.type == EXEC:
            node = self.living.get(e.tgid)
            if node is None:
                parent = self.living.get(e.ppid)
                node = self.living[e.tgid] = [e.tgid, e.comm, e.argv, False, parent]
            node[1], node[2] = e.comm, e.argv
        elif e.type == EXIT and e.tgid in self.living:
            self.living.pop(e.tgid)[3] = True

    def lineage(self, pid: int) -> list[Ancestor]:
        found, node = [], self.living[pid][4]
        while node is not None and len(found) < DEPTH:
            found.append(Ancestor(*node[:4]))
            node = node[4]
        if node is not None:
            found[-1] = found[-1]._replace(cut=True)
        return found

    def needed(self) -> int:
        """The living and the exited ancestors of the living."""
        nodes = {}
        for node in self.living.values():
            while node is not None and id(node) not in nodes:
                nodes[id(node)] = node
                node = node[4]
        return len(nodes)


def as_json(a: Ancestor) -> dict:
    flags = {"exited": a.exited, "cut": a.cut}
    shown = {"pid": a.pid, "comm": a.comm, "argv": list(a.argv)}
    return shown | {k: v for k, v in flags.items() if v}


def check_table(table: ProcessTable) -> None:
    kept = list(table.entries())
    assert len(kept) == len(table) == len({id(p) for p in kept})
    children = {id(p): 0 for p in kept}
    for p in kept:
        if p.parent is not None:
            children[id(p.parent)] += 1  # KeyError: a parent the table let go
    for p in kept:
        assert p.children == children[id(p)], p
        assert p.children or not p.exited, p


def test_random_records_match_the_rules():
    rng = random.Random(1)
    table, model = ProcessTable(), Model()
    for step in range(20_000):
        living = list(model.living)
        pid = rng.randrange(2, 60)  # few pids: reuse, lost exits and unknown parents
        kind = rng.random()
        if kind < 0.4:
            ppid = rng.choice(living) if living and rng.random() < 0.9 else rng.randrange(1, 60)
            if ppid == pid:
                continue
            e = fork(pid, ppid, f"c{step}")
        elif kind < 0.6:
            e = exec_(pid, rng.randrange(1, 60), f"e{step}", f"e{step}", 'a"b')
        elif kind < 0.65:
            e = fork(pid + 100, pid, "t", thread=True, tgid=pid)
        else:
            e = exit_(pid, 1)
        # An exit record's process leaves: its lineage is the one it had.
        before = model.lineage(pid) if e.type == EXIT and pid in model.living else []
        model.feed(e)
        got = json.loads(annotate(table, e))
        if e.type != EXIT:
            before = model.lineage(pid) if pid in model.living else []
        assert got == [as_json(a) for a in before], (step, e)
        if step % 97 == 0:
            check_table(table)
            assert len(table) == model.needed()
            for p in model.living:
                assert table.lineage(p) == model.lineage(p)


def test_the_cap_evicts_exited_entries_first_then_the_oldest_leaves():
    table = ProcessTable(cap=64)
    table.feed(fork(1, 0, "init"))
    table.feed(fork(10, 1, "init"))
    for k in range(10):
        table.feed(fork(11 + k, 10, "init"))
        table.feed(fork(21 + k, 11 + k, "init"))
        table.feed(exit_(11 + k, 10))  # kept for 21 + k
    assert (len(table), table.exited_count) == (22, 10)

    def lost_exits(pids: range) -> None:  # children of init whose exits were lost
        for pid in pids:
            table.feed(fork(pid, 1, "init"))
            assert len(table) <= 64

    lost_exits(range(100, 142))
    assert len(table) == 64
    lost_exits(range(142, 143))  # one too many: an eighth of the cap goes, exited first
    assert (len(table), table.exited_count) == (56, 1)
    grandchildren = [table.get(21 + k) for k in range(10)]
    assert sum(p.parent is None for p in grandchildren) == 9
    assert all(table.get(pid) for pid in range(100, 143))

    lost_exits(range(143, 152))  # then the last exited one and the 8 oldest leaves
    assert (len(table), table.exited_count) == (56, 0)
    assert sum(table.get(21 + k) is not None for k in range(10)) == 2
    assert all(table.get(pid).parent is None for pid in range(21, 31) if table.get(pid))
    assert table.get(1) and table.get(10).children == 0
    living = [table.get(pid) for pid in range(1, 200) if table.get(pid)]
    assert table.get(1).children == sum(p.parent is table.get(1) for p in living) == 1 + 52


# /proc ----------------------------------------------------------------------------


def fake_proc(root: Path, processes: dict[int, tuple[int, bytes, bytes]]) -> None:
    """A /proc of `processes`: pid -> (ppid, comm, cmdline bytes)."""
    for pid, (ppid, comm, cmdline) in processes.items():
        d = root / str(pid)
        d.mkdir()
        fields = ["S", str(ppid), *["0"] * 17, str(1000 + pid), *["0"] * 30]
        (d / "stat").write_bytes(b"%d (%s) %s\n" % (pid, comm, " ".join(fields).encode()))
        (d / "cmdline").write_bytes(cmdline)


def test_from_proc_parses_what_proc_shows(tmp_path):
    fake_proc(
        tmp_path,
        {
            1: (0, b"systemd", b"/sbin/init\0splash\0"),
            2: (0, b"kthreadd", b""),
            3: (2, b"kworker/0:0-events", b""),
            40: (1, b"a) (b", b"weird\0"),
            41: (40, b"caf\xe9", b"x\0\xff\0"),
            42: (41, b"title", b"sshd: root@pts/0"),  # setproctitle: no NUL at all
        },
    )
    (tmp_path / "43").mkdir()  # gone between the listing and the read
    (tmp_path / "self").mkdir()

    table = ProcessTable.from_proc(str(tmp_path))

    assert table.living_count == 6
    assert chain_text_of(table, 3) == "kthreadd(2)"
    assert table.lineage(42) == [
        Ancestor(41, "caf\\xe9", ("x", "\\xff"), False),
        Ancestor(40, "a) (b", ("weird",), False),
        Ancestor(1, "systemd", ("/sbin/init", "splash"), False),
    ]
    assert table.get(42).argv == ("sshd: root@pts/0",)
    assert read_process(43, str(tmp_path)) is None


def test_processes_the_records_name_but_the_table_lacks_are_read_from_proc(tmp_path):
    fake_proc(
        tmp_path,
        {
            1: (0, b"systemd", b"/sbin/init\0"),
            30: (1, b"sshd", b"sshd\0-D\0"),
            40: (30, b"bash", b"-bash\0"),
            60: (61, b"loop", b""),
            61: (60, b"loop", b""),
        },
    )
    table = ProcessTable(str(tmp_path))  # as if the reader missed all of them

    assert chain_text_of(table, table.feed(fork(50, 40, "bash")).pid) == (
        "bash(40) < sshd(30) < systemd(1)"
    )
    assert table.get(30).argv == ("sshd", "-D") and table.get(1).children == 1
    table.feed(exec_(70, 60, "x", "x"))  # pids that a reuse made into a loop
    assert chain_text_of(table, 70) in ("loop(60) < loop(61)", "loop(60)")
    # A parent gone from /proc too: the fork record still names it.
    assert chain_text_of(table, table.feed(fork(80, 79, "ghost")).pid) == "ghost(79)"


def proc_argv(pid: int) -> tuple[str, ...]:
    return split_argv(Path(f"/proc/{pid}/cmdline").read_bytes())


def proc_ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def proc_children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_for(check, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def process_group(script: str):
    """`sh -c script` in a session of its own, killed with all it started."""
    sh = subprocess.Popen(["sh", "-c", script], start_new_session=True, stdout=subprocess.PIPE)
    try:
        yield sh
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sh.pid, signal.SIGKILL)
        sh.wait()
        sh.stdout.close()


def finished(pid: int) -> bool:
    """Whether `pid` is gone or a zombie (reaped here if it is ours)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(b")") + 2 :].split()[0] in (b"Z", b"X")


def our_ancestry() -> list[int]:
    """This process and its ancestors, as /proc has them."""
    chain = [os.getpid()]
    while chain[-1] != 1:
        chain.append(proc_ppid(chain[-1]))
    return chain


def test_from_the_real_proc_a_running_chain_has_its_real_lineage():
    with process_group("sleep 30 & wait") as sh:
        (sleep,) = wait_for(lambda: proc_children(sh.pid), "sh's child")
        wait_for(lambda: proc_argv(sleep) == ("sleep", "30"), "sleep's exec")

        table = ProcessTable.from_proc()

        lineage = table.lineage(sleep)
        assert [a.pid for a in lineage] == [sh.pid, *our_ancestry()]
        for a in lineage:
            assert a.argv == proc_argv(a.pid)
            assert a.comm == text(Path(f"/proc/{a.pid}/comm").read_bytes()[:-1])
            assert not a.exited
        assert lineage[0].argv == ("sh", "-c", "sleep 30 & wait")
        assert lineage[1].argv == proc_argv(os.getpid())
        assert chain_text_of(table, sleep).endswith("(1)")

        # sh dies now: its exit record keeps it in sleep's lineage, marked exited.
        os.kill(sh.pid, signal.SIGKILL)
        sh.wait()
        wait_for(lambda: proc_ppid(sleep) != sh.pid, "sleep's reparenting")
        table.feed(exit_(sh.pid, os.getpid()))
        after = table.lineage(sleep)
        assert [(a.pid, a.exited) for a in after[:2]] == [(sh.pid, True), (os.getpid(), False)]
    wait_for(lambda: finished(sleep), "sleep's end")


def subreaper() -> bool:
    flag = ctypes.c_int()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(37, ctypes.byref(flag), 0, 0, 0) != 0:  # PR_GET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl")
    return bool(flag.value)


def test_from_the_real_proc_an_orphan_s_lineage_starts_at_its_reaper():
    # sh starts sleep and exits: the kernel hands sleep to the nearest subreaper
    # above it, or init.  /proc knows only that reaper.
    with process_group("sleep 30 & echo $!") as sh:
        sleep = int(sh.stdout.readline())
        sh.wait()
        reaper = proc_ppid(sleep)
        try:
            assert reaper != sh.pid
            if subreaper():
                assert reaper == os.getpid()
            else:
                assert reaper in our_ancestry()[1:]

            table = ProcessTable.from_proc()

            lineage = table.lineage(sleep)
            assert lineage[0].pid == reaper
            assert lineage[1:] == table.lineage(reaper)
            assert lineage[-1].pid == 1
        finally:
            os.kill(sleep, signal.SIGKILL)
            wait_for(lambda: finished(sleep), "sleep's end")


def test_from_the_real_proc_an_orphan_of_a_subreaper():
    helper = (
        "import ctypes, subprocess, sys\n"
        "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n"  # PR_SET_CHILD_SUBREAPER
        "subprocess.run(['sh', '-c', 'sleep 30 & echo $!'])\n"
        "sys.stdin.read()\n"
    )
    python = subprocess.Popen(
        [sys.executable, "-c", helper],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        sleep = int(python.stdout.readline())
        wait_for(lambda: proc_ppid(sleep) == python.pid, "sleep's reparenting")

        table = ProcessTable.from_proc()

        assert pids(table, sleep) == [python.pid, *our_ancestry()]
        assert table.lineage(sleep)[0].argv == (sys.executable, "-c", helper)
    finally:
        os.killpg(python.pid, signal.SIGKILL)
        python.wait()
        python.stdin.close()
        python.stdout.close()
    wait_for(lambda: finished(sleep), "sleep's end")


# Cost -----------------------------------------------------------------------------


def measure(records: int = 200_000) -> float:
    """Microseconds per record that annotate() takes, over a storm of fork, exec
    and exit records of children of a shell four levels below init."""
    table = booted()
    chain = [(700, 1, "sshd", ("sshd", "-D")), (812, 700, "bash", ("-bash",))]
    chain.append((900, 812, "make", ("make", "-j2", "all")))
    for pid, ppid, comm, argv in chain:
        table.feed(fork(pid, ppid, "x"))
        table.feed(exec_(pid, ppid, comm, *argv))
    storm = []
    for i in range(records // 3):
        pid = 1000 + i % 30_000
        storm += [
            fork(pid, 900, "make"),
            exec_(pid, 900, "cc", "cc", "-O2", "-c", f"src/file{i}.c", "-o", f"obj/file{i}.o"),
            exit_(pid, 900, "cc"),
        ]
    start = time.perf_counter()
    for e in storm:
        annotate(table, e)
    took = time.perf_counter() - start
    per_record = took / len(storm) * 1e6
    print(f"annotate: {per_record:.2f} µs per record over {len(storm)} records")
    return per_record


if __name__ == "__main__":
    measure()
