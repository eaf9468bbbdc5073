"""What really runs: exec and exit events, threads apart, the seed's example made true."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, bpftool_json, build_program, reader_state

THREADS = """
import threading
ts = [threading.Thread(target=lambda: None) for _ in range(1000)]
for t in ts:
    t.start()
for t in ts:
    t.join()
"""


@pytest.mark.kernel
def test_seed_example_literally(attached):
    """`sh -c 'ls /tmp; ps aux | head'` gives rows ls, ps and head, each a child of that sh."""
    # Once before, unread: in a fresh VM the first run reads sh, ls and ps from disk, and
    # a fork whose exec comes more than the table's exec window later (100 ms; seen on
    # an emulated 5.10) is shown as the fork it was, not as what it ran.
    subprocess.run(["sh", "-c", "ls /tmp; ps aux | head"], stdout=subprocess.DEVNULL, check=True)
    with attached.reading("events") as reading:
        sh = subprocess.Popen(["sh", "-c", "ls /tmp; ps aux | head"], stdout=subprocess.DEVNULL)
        sh.wait()
    out = reading.lines()
    assert out[0].split() == ["PID", "PPID", "COMM", "CMDLINE"]
    rows = [ln.split() for ln in out[2:] if not ln.startswith("--")]
    children = {r[2]: int(r[1]) for r in rows if int(r[1]) == sh.pid}
    assert {"ls", "ps", "head"} <= set(children), out
    assert all(children[name] == sh.pid for name in ("ls", "ps", "head"))
    # The sh itself: the row names what it runs, not the python that forked it.
    assert [r[2] for r in rows if int(r[0]) == sh.pid] == ["sh"]
    assert f"{sh.pid:<7} {os.getpid():<7} {'sh':<15} sh -c 'ls /tmp; ps aux | head'" in out


def test_the_table_shows_what_a_launcher_finally_ran(attached):
    """`env /bin/true xyz` execs env, which execs true: the table's row is true's,
    with its command line whole when piped; --wide's names both the file and the
    command line, on the exit row too."""
    cli = attached
    long = "y" * 300
    with cli.reading("events", "--ppid", str(os.getpid())) as reading:
        subprocess.run(["env", "/bin/true", "xyz", "a b", "", long], check=True)
    table = reading.lines()
    mine = [ln for ln in table[2:] if "xyz" in ln]
    [row] = mine
    assert row.split()[2] == "true", table
    assert row.endswith(f" {'true':<15} /bin/true xyz 'a b' '' {long}"), table
    with cli.reading("events", "--wide", "--ppid", str(os.getpid())) as reading:
        subprocess.run(["env", "/bin/true", "xyz"], check=True)
    wide = reading.stdout
    started, ended = [ln for ln in wide.splitlines() if ln.endswith(" xyz")]
    assert started.split()[4:] == ["exec", "/bin/true", "xyz"], wide
    assert ended.split()[4:6] == ["exit", "0"], wide
    assert ended.endswith(": /bin/true xyz"), wide


def _settings(cli) -> dict:
    return bpftool_json("map", "dump", "pinned", str(cli.pin_dir / "maps" / "settings"))[0][
        "formatted"
    ]["value"]


@pytest.mark.kernel
def test_threads_counted_apart_not_streamed(attached):
    cli = attached
    with cli.reading("events", "--json") as reading:
        before = cli.json("stats", "--json")
        proc = subprocess.run([sys.executable, "-c", THREADS], check=True)
        after = cli.json("stats", "--json")
    assert after["threads"] - before["threads"] >= 1000
    lines = reading.json_lines()
    assert not [e for e in lines if e.get("thread")], "no thread events without --threads"
    # Every process fork the reader was there for is in its ring (none dropped): process_count
    # grew by no more than those, so the 1000 threads did not count as processes,
    # however busy the rest of the machine is.
    process_forks = [e for e in lines if e["type"] == "fork"]
    assert after["dropped"] == before["dropped"]
    assert after["process_count"] - before["process_count"] <= len(process_forks)
    assert after["produced"] - before["produced"] <= len(lines), "threads cost no ring space"
    assert proc.returncode == 0


@pytest.mark.kernel
def test_threads_streamed_with_flag(attached):
    cli = attached
    with cli.reading("events", "--json", "--threads") as reading:
        prog = subprocess.Popen([sys.executable, "-c", THREADS])
        prog.wait()
    events = reading.json_lines()
    threads = [e for e in events if e["type"] == "fork" and e["thread"] and e["tgid"] == prog.pid]
    assert len(threads) == 1000
    assert len({e["pid"] for e in threads}) == 1000
    assert all(e["ppid"] != prog.pid for e in threads), "ppid is the parent *process*"
    # The reader's slot, and with it its wish for threads, went when it left: the
    # programs put thread forks in nobody's ring again.
    assert reader_state(cli.pin_dir, reading.proc.pid) is None
    assert _settings(cli)["readers"] == _settings(cli)["thread_readers"] == 0
    before = cli.json("stats", "--json")
    subprocess.run([sys.executable, "-c", THREADS.replace("1000", "3")], check=True)
    after = cli.json("stats", "--json")
    assert after["threads"] > before["threads"] and after["produced"] == before["produced"]


@pytest.mark.kernel
def test_exec_filename_exit_code_and_lifetime(attached):
    with attached.reading("events", "--json", "--summary") as reading:
        code3 = subprocess.run(["sh", "-c", "exit 3"])
        killed = subprocess.run(["sh", "-c", "kill -9 $$"])
        t0 = time.monotonic()
        sleeper = subprocess.Popen(["sleep", "0.2"])
        sleeper.wait()
        wall = time.monotonic() - t0
    assert code3.returncode == 3
    events = reading.json_lines()
    by_pid: dict[int, dict[str, dict]] = {}
    for e in events:
        by_pid.setdefault(e["tgid"], {})[e["type"]] = e
    p = by_pid[code3_pid(events, "exit 3")]
    assert p["exec"]["filename"].endswith("/sh") and p["exec"]["comm"] == "sh"
    assert p["exit"]["exit_code"] == 3 and p["exit"]["exit_signal"] == 0
    k = by_pid[code3_pid(events, "kill")]
    assert k["exit"]["exit_signal"] == 9
    s = by_pid[sleeper.pid]["exit"]  # not another sleep of a busy host
    assert 0.2e9 <= s["duration_ns"] <= wall * 1e9 + 0.05e9
    assert s["exit_code"] == 0
    assert killed.returncode == -9 and sleeper.returncode == 0
    # Exit lines say what ran; --summary (on stderr, the rows being on stdout) as
    # the reader is stopped (SIGINT), with the same processes.
    assert p["exit"]["argv"] == ["sh", "-c", "exit 3"] and p["exit"]["filename"].endswith("/sh")
    assert s["argv"] == ["sleep", "0.2"]
    summary = json.loads(reading.stderr.splitlines()[-1])
    failed = {f["pid"]: f for f in summary["failed"]}
    assert failed[p["exit"]["pid"]]["argv"] == ["sh", "-c", "exit 3"]
    assert failed[k["exit"]["pid"]]["signal"] == 9
    exits = [e for e in events if e["type"] == "exit"]
    assert summary["exits"] == len(exits) and summary["failures"] >= 2
    assert summary["shortest"][0]["duration_ns"] == min(e["duration_ns"] for e in exits)
    assert summary["longest"][0]["duration_ns"] == max(e["duration_ns"] for e in exits)
    by_command = {c["comm"]: c for c in summary["by_command"]}
    assert by_command["sleep"]["execs"] >= 1 and by_command["sh"]["exits"] >= 2


def code3_pid(events, marker):
    """The tgid of the sh whose exit matches the test case (exit 3, or killed by 9)."""
    for e in events:
        if e["type"] != "exit" or e["comm"] != "sh":
            continue
        if marker == "exit 3" and e["exit_code"] == 3:
            return e["tgid"]
        if marker == "kill" and e["exit_signal"] == 9:
            return e["tgid"]
    raise AssertionError(f"no sh exit for {marker}")


TREE = """
import os, subprocess, sys
sys.stdin.readline()
child = subprocess.Popen(["sh", "-c", "sh -c 'true' & sh -c 'true' & wait"])
child.wait()
"""


def test_tree_follows_new_descendants(attached):
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdin=subprocess.PIPE, text=True)
    with attached.reading("events", "--json", "--tree-of", str(parent.pid)) as reading:
        unrelated = subprocess.Popen(["sh", "-c", "true"])
        unrelated.wait()
        parent.stdin.write("go\n")
        parent.stdin.flush()
        parent.wait()
    events = reading.json_lines()
    forks = [e for e in events if e["type"] == "fork"]
    child = [e for e in forks if e["ppid"] == parent.pid]
    assert len(child) == 1
    grandchildren = [e for e in forks if e["ppid"] == child[0]["pid"]]
    assert len(grandchildren) == 2
    assert unrelated.pid not in {e["tgid"] for e in events}
    assert {e["tgid"] for e in events} <= {
        parent.pid,
        child[0]["pid"],
        *(g["pid"] for g in grandchildren),
    }


REUSED = """
import os, sys
for _ in range(2):
    sys.stdin.readline()
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/true", ["true"])
    os.waitpid(pid, 0)
    print(pid, flush=True)
"""
NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def fork_with_pid(pid: int, code: int, tries: int = 200) -> bool:
    """A child of this process with `pid` (via ns_last_pid), which exits `code`
    at once.  False if other processes on the host kept taking that pid first."""
    for _ in range(tries):
        NS_LAST_PID.write_text(str(pid - 1))
        child = os.fork()
        if child == 0:
            os._exit(code)
        os.waitpid(child, 0)
        if child == pid:
            return True
    return False


@pytest.mark.parametrize("mode", ["--json", "--wide"])
def test_tree_forgets_an_exited_pid_that_is_reused(attached, mode):
    """--tree P: P's child exits, then an unrelated process gets the child's pid
    (set with ns_last_pid): the child's rows or lines are all shown, exit
    included, and nothing of the stranger."""
    if not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip("no writable /proc/sys/kernel/ns_last_pid (CONFIG_CHECKPOINT_RESTORE)")
    parent = subprocess.Popen(
        [sys.executable, "-c", REUSED], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    with attached.reading("events", mode, "--tree-of", str(parent.pid)) as reading:
        parent.stdin.write("go\n")
        parent.stdin.flush()
        child = int(parent.stdout.readline())
        reused = fork_with_pid(child, 7)
        parent.stdin.write("go\n")
        parent.stdin.flush()
        marker = int(parent.stdout.readline())  # the parent's second child, after the stranger
        parent.wait()
    out = reading.lines()
    if mode == "--json":
        events = reading.json_lines()
        assert [(e["type"], e["ppid"]) for e in events if e["tgid"] == child] == [
            ("fork", parent.pid),
            ("exec", parent.pid),
            ("exit", parent.pid),
        ], out
        assert {e["tgid"] for e in events} == {parent.pid, child, marker}, out
        # The parent started before the reader: its exit is shown, nothing of its
        # other children.
        assert not [e for e in events if e["ppid"] == os.getpid() and e["tgid"] != parent.pid]
    else:
        rows = [ln.split()[1:] for ln in out[2:] if not ln.startswith("--")]
        assert [r[:5] for r in rows if r[0] == str(child)] == [
            [str(child), str(parent.pid), "root", "exec", "true"],
            [str(child), str(parent.pid), "root", "exit", "0"],
        ], out
        assert {r[0] for r in rows} <= {str(parent.pid), str(child), str(marker)}, out
        assert not [r for r in rows if r[1] == str(os.getpid()) and r[0] != str(parent.pid)]
    if not reused:
        pytest.skip(f"the host kept taking pid {child} before this test could (shown: no row)")


def test_filters(attached):
    cli = attached
    with cli.reading("events", "--json", "--uid", "nobody") as reading:  # by name
        nobody = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", "true"],
            check=True,
        )
        mine = subprocess.run(["sh", "-c", "true"], check=True)
    events = reading.json_lines()
    assert events and all(e["uid"] == 65534 for e in events)
    # --pid P: a table's rows are new processes, and P is known only once it runs:
    # a named reader, stopped meanwhile, shows it from its backlog.
    cli("events", "--name", "pid-filter", "--duration", "0.01")
    target = subprocess.Popen(["sleep", "0.3"])
    target.wait()
    out = cli("events", "--name", "pid-filter", "--pid", str(target.pid), "--duration", "0.2")
    rows = out.stdout.splitlines()[2:]
    assert rows[-1].startswith("-- above: "), rows  # where its backlog ends
    assert [r.split()[0] for r in rows[:-1]] == [str(target.pid)]
    # A filter given again: any of its values.
    comms = ("--comm", "sh", "--comm", "cat", "--ppid", str(os.getpid()))
    with cli.reading("events", *comms) as reading:
        subprocess.run(["sh", "-c", "true"], check=True)
        subprocess.run(["cat"], stdin=subprocess.DEVNULL, check=True)
        subprocess.run(["true"], check=True)
    rows = reading.lines()[2:]
    # An unnamed reader starts now: no backlog, so no line marking where one ends.
    assert not [r for r in rows if r.startswith("--")], rows
    assert [r.split()[2] for r in rows] == ["sh", "cat"], rows
    assert all(r.split()[1] == str(os.getpid()) for r in rows)
    assert nobody.returncode == mine.returncode == 0


def test_wide_shows_exit_row_and_raw_every_event(attached):
    cli = attached
    # The table's rows are new processes: forked while the reader reads, this
    # process's only child then.
    with cli.reading("events", "--wide", "--ppid", str(os.getpid())) as reading:
        p = subprocess.Popen(["sh", "-c", "exit 4"])
        p.wait()
    wide = reading.lines()
    assert wide[0].split() == ["TIME", "PID", "PPID", "USER", "EVENT", "COMMAND"]
    started, ended = wide[2].split(), wide[3].split()
    assert started[1:5] == [str(p.pid), str(os.getpid()), "root", "exec"]
    assert wide[2].endswith(" sh -c 'exit 4'")
    assert ended[4:6] == ["exit", "4"] and wide[3].endswith(": sh -c 'exit 4'")
    assert len(wide) == 4, wide  # an unnamed reader has no backlog to mark the end of
    with cli.reading("events", "--raw", "--ppid", str(os.getpid())) as reading:
        q = subprocess.Popen(["sh", "-c", "exit 5"])
        q.wait()
    raw = reading.lines()[2:]  # this process's only child's: q's
    assert [ln.split()[0] for ln in raw] == ["fork", "exec", "exit"], raw
    assert "exit=5" in raw[2]


@pytest.mark.kernel
def test_run_command_follows_tree_and_exits_with_its_code(cli):
    r = cli("run", "--json", "--", "sh", "-c", "ls / >/dev/null; false", check=False)
    assert r.returncode == 1, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["exit_code"] == 1
    assert summary["by_name"].get("ls") == 1 and summary["by_name"].get("sh") == 1
    assert summary["processes"] == 2
    failed = {f["comm"]: f["exit_code"] for f in summary["failed"]}
    assert failed == {"sh": 1}
    assert summary["longest"][0]["comm"] == "sh"
    assert not cli.pin_dir.exists(), "run removes its own instance"
    human = cli("run", "--", "sh", "-c", "exit 7", check=False)
    assert human.returncode == 7
    assert "sh -c 'exit 7': exit code 7" in human.stderr  # quoted as a shell would
    assert "PID     PPID    COMM" in human.stderr


@pytest.mark.parametrize(
    ("name", "code", "reason"),
    [("missing", 127, "No such file or directory"), ("not-executable", 126, "Permission denied")],
)
def test_run_of_a_command_that_cannot_start_exits_as_a_shell_would(
    cli, tmp_path, name, code, reason
):
    command = str(tmp_path / name)
    if name == "not-executable":
        (tmp_path / name).write_text("#!/bin/sh\ntrue\n")
        (tmp_path / name).chmod(0o644)
    r = cli("run", "--", command, "arg", check=False)
    assert r.returncode == code, r.stderr
    # Named as a command line names it: a path of plain characters needs no quotes.
    assert r.stderr == f"procmon-ctl: error: cannot run {command}: {reason}\n"
    assert not cli.pin_dir.exists(), "run removes its own instance"


def test_schema_describes_event_lines(cli):
    schema = json.loads(cli("schema").stdout)
    text = json.dumps(schema)
    for field in ("ts_ns", "tgid", "ppid", "filename", "exit_code", "duration_ns", "gap"):
        assert field in text


# Who the ids program (tests/programs/ids.c) runs as, by the tag it was given: how
# each was started, as root, with the AUDIT_ID_UNSET the audit ids have when unset.
UNSET = str(2**32 - 1)
CAP_NET_RAW = 13
# security.capability for cap_net_raw+ep: VFS_CAP_REVISION_2 with the effective bit,
# then the permitted and inheritable sets' low and high halves.
VFS_CAP_NET_RAW_EP = struct.pack("<5I", 0x02000000 | 1, 1 << CAP_NET_RAW, 0, 0, 0)


@pytest.mark.kernel
def test_who_ran_it(attached, tmp_path_factory):
    """Each record says who the process runs as (uid, euid, egid) and who logged in
    (loginuid, sessionid: kept across sudo and su), as the process itself reads
    them; an exec of a set-user-ID and set-group-ID program is flagged with the ids
    before it.  Through the real sudo, su and setpriv, and a set-ID copy of a test
    program, on a tmpfs of the test's own (/tmp may be nosuid)."""
    ids = build_program(tmp_path_factory, ROOT / "tests" / "programs" / "ids.c")
    # Where nobody may run it: not below the tests' own directories (root's, 0700).
    place = Path(tempfile.mkdtemp(prefix="procmon-ids-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "procmon-ids", place], check=True)
    try:
        shutil.copy(ids, place / "ids")
        setid = place / "ids-nobody"
        shutil.copy(ids, setid)
        os.chown(setid, 65534, 65534)
        os.chmod(setid, 0o6755)  # chown clears the set-ID bits: set after it
        caps = place / "ids-caps"
        shutil.copy(ids, caps)
        # What `setcap cap_net_raw+ep` writes (struct vfs_cap_data, revision 2).
        os.setxattr(caps, "security.capability", VFS_CAP_NET_RAW_EP)
        runs = {
            # A login uid as pam_loginuid sets it (root may, while it is unset);
            # sudo keeps it and the session.
            "sudo": ["sh", "-c",
                     f"echo 4242 >/proc/self/loginuid; exec sudo -u nobody {place}/ids sudo"],
            "su": ["su", "nobody", "-s", "/bin/sh", "-c", f"exec {place}/ids su"],
            "setpriv": ["setpriv", "--reuid=65534", "--regid=65533", "--clear-groups",
                        f"{place}/ids", "setpriv"],
            "setid": [str(setid), "setid"],
            # su drops root's capabilities as it becomes nobody (setpriv keeps
            # them until the exec, which then gains nothing it did not have).
            "caps": ["su", "nobody", "-s", "/bin/sh", "-c", f"exec {caps} caps"],
        }  # fmt: skip
        with attached.reading("events", "--json") as reading:
            saw = {}
            for tag, argv in runs.items():
                out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
                saw[tag] = out.split()
    finally:
        subprocess.run(["umount", "-l", place], check=True)
        place.rmdir()
    records = reading.json_lines()
    execs = {
        e["argv"][1]: e
        for e in records
        if e["type"] == "exec" and e["argv"][:1] in ([f"{place}/ids"], [str(setid)], [str(caps)])
    }
    exits = {e["tgid"]: e for e in records if e["type"] == "exit"}
    for tag, (said, uid, euid, egid, loginuid, sessionid) in saw.items():
        assert said == tag
        for e in (execs[tag], exits[execs[tag]["tgid"]]):
            assert (e["uid"], e["euid"], e["egid"]) == (int(uid), int(euid), int(egid)), (tag, e)
            # Absent where the process has none, as the kernel has it when unset.
            assert str(e.get("loginuid", UNSET)) == loginuid.replace("-", UNSET), (tag, e)
            assert str(e.get("sessionid", UNSET)) == sessionid.replace("-", UNSET), (tag, e)
    if Path("/proc/self/loginuid").exists():
        assert execs["sudo"]["loginuid"] == 4242 and "sessionid" in execs["sudo"]
    assert saw["sudo"][1:4] == saw["su"][1:4] == ["65534"] * 3
    assert saw["setpriv"][1:4] == ["65534", "65534", "65533"]
    # The set-ID copy: root's real uid kept, the effective ids the file's, and
    # the ids before the exec on its record; no other exec changed them.
    assert saw["setid"][1:4] == ["0", "65534", "65534"]
    x = execs["setid"]
    assert (x["setid"], x["prev_euid"], x["prev_egid"]) == (True, 0, 0), x
    assert all(
        "setid" not in execs[t] and "prev_euid" not in execs[t] for t in runs if t != "setid"
    )
    assert not any("setid" in e for e in records if e["type"] != "exec")
    # File capabilities: the ids stay, the capabilities gained are on the record
    # (root's exec of the set-ID copy kept its full set: it gained none).
    assert saw["caps"][1:4] == ["65534"] * 3
    assert execs["caps"]["cap_gained"] == 1 << CAP_NET_RAW, execs["caps"]
    assert all("cap_gained" not in execs[t] for t in runs if t != "caps")
