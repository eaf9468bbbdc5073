"""`run --tree -- CMD` and the tree in `run --json`: CMD's whole process tree from
the records of real runs (a parallel build of a C project made here, a script whose
children fail or are killed, a daemon left running), then the builder alone on
made-up records: its bounds, lost records, reused pids, and the text's width."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import CLI, ROOT, bpf_held_by, lines_until

from procmon_ctl.kernel.abi import EventType
from procmon_ctl.process.decode import Event
from procmon_ctl.process.tree import TREE_DEPTH_KEPT, TREE_NODES_KEPT, ProcessTree
from procmon_ctl.views import render
from procmon_ctl.views.render import signal_text
from procmon_ctl.views.schema import RunNode, RunSummary
from procmon_ctl.views.tree import tree_model, tree_text

# --- real runs ----------------------------------------------------------------------

SOURCES = {
    "main.c": '#include "calc.h"\nint main(void) { return add(2, 3) + twice(1) - scale(7); }\n',
    "add.c": '#include "calc.h"\nint add(int a, int b) { return a + b; }\n',
    "twice.c": '#include "calc.h"\nint twice(int a) { return add(a, a); }\n',
    "scale.c": '#include "calc.h"\nint scale(int a) { return a; }\n',
}
HEADER = "int add(int a, int b);\nint twice(int a);\nint scale(int a);\n"
# Each .c compiled to its .o by its own rule, then linked: make -j2 runs two
# compilers at once.
MAKEFILE = """\
OBJS = main.o add.o twice.o scale.o
calc: $(OBJS)
\t$(CC) -o $@ $(OBJS)
%.o: %.c calc.h
\t$(CC) -c -o $@ $<
"""
COMPILERS = {"cc", "gcc"}


@pytest.fixture
def project(tmp_path) -> Path:
    src = tmp_path / "calc"
    src.mkdir()
    for name, text in SOURCES.items():
        (src / name).write_text(text)
    (src / "calc.h").write_text(HEADER)
    (src / "Makefile").write_text(MAKEFILE)
    return src


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """procmon-ctl ARGS in a session of its own: whatever CMD leaves running (it is
    in run's process group) is killed afterwards, whatever the test finds.  Output
    goes to files, not pipes: what CMD leaves running may hold them open."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([*CLI, *args], stdout=out, stderr=err, start_new_session=True)
        try:
            p.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read())
    done.pid = p.pid  # run's, CMD's parent
    return done


def summary_of(r: subprocess.CompletedProcess) -> dict:
    return json.loads(r.stdout.splitlines()[-1])


def nodes_of(tree: dict) -> list[tuple[dict, dict | None]]:
    """Every node with its parent (None for the root), parents first."""
    found, i = [(tree, None)], 0
    while i < len(found):
        node = found[i][0]
        found += [(c, node) for c in node["children"]]
        i += 1
    return found


def descendants(node: dict) -> list[dict]:
    return [n for n, _ in nodes_of(node)[1:]]


# One line of the text block: the connectors, the command line, then its details.
TREE_LINE = re.compile(
    r"^(?P<indent>(?:\u2502  |   )*)(?P<branch>\u251c\u2500 |\u2514\u2500 )?"
    r"(?P<command>.*?)  \(pid (?P<pid>\d+)(?P<details>(?:, [^,()]+)*)\)$"
)
LIFETIME = re.compile(r", \d+\.\d+m?s, ")


def tree_block(stderr: str, root_command: str) -> list[dict]:
    """The lines of the --tree block, from CMD's line on, with each one's depth
    and the pid of the line it hangs from."""
    lines = stderr.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(root_command + "  (pid "))
    parsed: list[dict] = []
    parents: list[int] = []  # the pid of the last line at each depth
    for ln in lines[start:]:
        m = TREE_LINE.match(ln)
        if m is None:
            break
        depth = len(m["indent"]) // 3 + (1 if m["branch"] else 0)
        assert (depth == 0) == (not parsed), ln
        del parents[depth:]
        parsed.append(
            {
                "line": ln,
                "pid": int(m["pid"]),
                "parent": parents[-1] if parents else None,
                "command": m["command"],
                "details": m["details"],
            }
        )
        parents.append(int(m["pid"]))
    return parsed


def table_ppids(stderr: str) -> dict[int, int]:
    """PID -> PPID from the table's rows, printed as the tree ran."""
    rows = [ln.split() for ln in stderr.splitlines() if re.match(r"^\d+ +\d+ ", ln)]
    return {int(r[0]): int(r[1]) for r in rows}


def test_the_tree_of_a_parallel_build_in_json(bpf, project):
    r = run_cli("run", "--json", "--", "make", "-j2", "-C", str(project))
    assert r.returncode == 0, r.stderr
    assert (project / "calc").exists()
    summary = summary_of(r)
    tree = summary["tree"]
    assert summary["tree_left_out"] == 0
    assert tree["comm"] == "make" and tree["argv"] == ["make", "-j2", "-C", str(project)]
    assert tree["ppid"] == r.pid  # run started it

    nodes = nodes_of(tree)
    assert len(nodes) == summary["processes"], "every process of the tree is a node"
    pids = [n["pid"] for n, _ in nodes]
    assert len(pids) == len(set(pids)), f"a pid twice: {pids}"
    for node, parent in nodes:
        assert set(node) == set(RunNode.model_fields), node
        assert node["exit_code"] == 0 and node["signal"] == 0 and not node["running"], node
        assert node["duration_ns"] > 0 and node["started_ns"] > 0, node
        assert not node["parent_unseen"] and node["threads"] is None, node
        if parent is not None:
            assert node["ppid"] == parent["pid"], (node, parent)
            assert node["started_ns"] >= parent["started_ns"], (node, parent)
        starts = [c["started_ns"] for c in node["children"]]
        assert starts == sorted(starts), f"children of {node['pid']} not in start order"

    compilers = [n for n in descendants(tree) if n["comm"] in COMPILERS]
    for source in SOURCES:
        # cc -c -o x.o x.c: cc1 compiles x.c, as assembles what cc1 wrote.
        cc = [n for n in compilers if source in n["argv"] and "-c" in n["argv"]]
        assert len(cc) == 1, (source, compilers)
        below = {n["comm"]: n for n in descendants(cc[0])}
        assert set(below) == {"cc1", "as"}, (source, below)
        assert source in below["cc1"]["argv"]
    link = [n for n in compilers if "calc" in n["argv"] and "-c" not in n["argv"]]
    assert len(link) == 1, compilers
    assert {"collect2", "ld"} <= {n["comm"] for n in descendants(link[0])}
    # make -j2: two compilers ran at once.
    spans = sorted((n["started_ns"], n["started_ns"] + n["duration_ns"]) for n in compilers)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "make -j2 ran one at a time"


def test_the_tree_of_a_parallel_build_in_text(bpf, project):
    root = f"make -j2 -C {project}"
    r = run_cli("run", "--tree", "--", "make", "-j2", "-C", str(project))
    assert r.returncode == 0, r.stderr
    block = tree_block(r.stderr, root)
    ppids = table_ppids(r.stderr)
    # make; for each .c: cc, cc1, as; cc, collect2, ld to link.
    assert len(block) == len(ppids) == 1 + 3 * len(SOURCES) + 3, r.stderr
    for line in block:
        assert line["details"].endswith(", exit 0"), line["line"]
        assert LIFETIME.search(line["details"] + ", "), line["line"]
        if line["parent"] is not None:
            assert ppids[line["pid"]] == line["parent"], line["line"]
    commands = [line["command"] for line in block]
    for source in SOURCES:
        obj = source.replace(".c", ".o")
        cc = next(i for i, c in enumerate(commands) if c == f"cc -c -o {obj} {source}")
        kids = [b for b in block if b["parent"] == block[cc]["pid"]]
        assert [Path(k["command"].split()[0]).name for k in kids] == ["cc1", "as"], kids
    assert "\u251c\u2500 " in r.stderr and "\u2514\u2500 " in r.stderr and "\u2502  " in r.stderr
    # Piped: each command line whole.
    assert "\u2026" not in r.stderr


SCRIPT = r"""
/bin/false
(exit 3)
sleep 30 >/dev/null 2>&1 &
until [ "$(cat /proc/$!/comm)" = sleep ]; do :; done
kill -TERM $!
wait $!
sh -c 'kill -KILL $$'
exit 0
"""


def test_failed_and_killed_children_on_their_nodes(bpf):
    r = run_cli("run", "--json", "--", "sh", "-c", SCRIPT)
    assert r.returncode == 0, r.stderr
    root = summary_of(r)["tree"]
    by_command = {tuple(n["argv"]): n for n in descendants(root) if not n["inherited"]}
    assert root["argv"] == ["sh", "-c", SCRIPT]
    assert (root["exit_code"], root["signal"]) == (0, 0)
    false = by_command[("/bin/false",)]
    assert (false["exit_code"], false["signal"], false["running"]) == (1, 0, False)
    sleep = by_command[("sleep", "30")]
    assert (sleep["exit_code"], sleep["signal"]) == (0, signal.SIGTERM)
    killed = by_command[("sh", "-c", "kill -KILL $$")]
    assert (killed["exit_code"], killed["signal"]) == (0, signal.SIGKILL)
    # A subshell that exec'd nothing runs the script's program.
    [subshell] = [n for n, _ in nodes_of(root)[1:] if n["inherited"]]
    assert (subshell["argv"], subshell["exit_code"]) == (["sh", "-c", SCRIPT], 3)

    r = run_cli("run", "--tree", "--", "sh", "-c", SCRIPT)
    assert r.returncode == 0, r.stderr
    lines = tree_block(r.stderr, render.cmdline(["sh", "-c", SCRIPT]))
    block = {b["command"]: b for b in lines[1:]}
    assert block["/bin/false"]["details"].endswith(", exit 1")
    [subshell] = [b for b in lines if ", no exec," in b["details"]]
    assert subshell["command"] == lines[0]["command"] and subshell["details"].endswith(", exit 3")
    assert block["sleep 30"]["details"].endswith(", killed by SIGTERM")
    assert block["sh -c 'kill -KILL $$'"]["details"].endswith(", killed by SIGKILL")
    assert "\\x0a" in lines[0]["command"], "the script's newlines are shown escaped"


def test_a_daemon_left_running_is_running(bpf):
    started = time.monotonic()
    r = run_cli("run", "--json", "--", "sh", "-c", "sleep 30 & exit 0")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 20, "run waited for the daemon"
    tree = summary_of(r)["tree"]
    assert not tree["running"] and tree["exit_code"] == 0
    [daemon] = tree["children"]
    # Whether it had exec'd sleep yet or not, it outlived CMD.
    assert daemon["running"], daemon
    assert (daemon["exit_code"], daemon["signal"], daemon["duration_ns"]) == (None, None, None)

    wait_exec = 'until [ "$(cat /proc/$!/comm)" = sleep ]; do :; done'
    script = f"sleep 30 >/dev/null 2>&1 & {wait_exec}"
    r = run_cli("run", "--tree", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    block = tree_block(r.stderr, render.cmdline(["sh", "-c", script]))
    [sleep] = [b for b in block if b["command"] == "sleep 30"]
    assert sleep["details"] == ", running" and sleep["parent"] == block[0]["pid"]
    assert f"still running: sleep (pid {sleep['pid']})" in r.stderr


def test_a_tree_larger_than_kept_says_how_many_were_left_out(bpf):
    """The bound, on a real run: run's tree keeping 10 nodes, CMD starting 30
    children (TREE_NODES_KEPT set through a wrapper, as for run's Python module)."""
    wrapper = (
        "import sys; from procmon_ctl.process import tree as run_tree; "
        "run_tree.TREE_NODES_KEPT = 10; "
        "sys.argv[0] = 'procmon-ctl'; from procmon_ctl.cli import main; main()"
    )
    loop = "i=0; while [ $i -lt 30 ]; do /bin/true; i=$((i+1)); done"
    for fmt in ("--json", "--tree"):
        p = subprocess.run(
            [sys.executable, "-c", wrapper, "run", fmt, "--", "sh", "-c", loop],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert p.returncode == 0, p.stderr
        if fmt == "--json":
            summary = json.loads(p.stdout.splitlines()[-1])
            assert summary["processes"] == 31
            assert len(nodes_of(summary["tree"])) == 10 and summary["tree_left_out"] == 21
        else:
            assert "... and 21 more process(es) not in the tree (it keeps the first 10 " in (
                p.stderr
            )


def test_run_tree_without_a_command_is_a_usage_error():
    for args in (["run", "--tree"], ["run", "--tree", "--json"], ["run", "--tree", "4321"]):
        r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("procmon-ctl: error: "), r.stderr
        assert r.stdout == ""
    assert "--tree-of 4321" in r.stderr  # what `run --tree PID` used to mean


def test_run_tree_of_pid_shows_only_that_tree(bpf):
    """Without CMD, `--tree-of PID` keeps the rows of PID and its new descendants."""
    script = "read go; ls / >/dev/null; sh -c '/bin/true; /bin/true'"
    target = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE)
    reader = subprocess.Popen(
        [*CLI, "run", "--json", "--tree-of", str(target.pid), "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while len(bpf_held_by(reader.pid)["link"]) < 3:
            assert reader.poll() is None and time.monotonic() < deadline, reader.stderr
            time.sleep(0.01)
        stranger = subprocess.run(["ls", "/"], capture_output=True)
        target.communicate(b"go\n", timeout=30)
        lines, _ = lines_until(
            reader,
            lambda ls: any('"exit"' in x and f'"pid":{target.pid},' in x for x in ls),
        )
    finally:
        target.kill()
        target.wait()
        reader.kill()
        reader.wait()
    events = [json.loads(x) for x in lines if x.startswith("{")]
    tree = {target.pid}
    for e in events:
        if e["type"] == "fork" and e["ppid"] in tree:
            tree.add(e["tgid"])
        assert e["tgid"] in tree, f"a row outside the tree of {target.pid}: {e}"
    assert {e["comm"] for e in events if e["type"] == "exec"} == {"ls", "sh", "true"}, events
    assert stranger.returncode == 0


# --- the builder alone, on made-up records -----------------------------------------

ROOT_PID = 1000
ARGV = ["sh", "-c", "x"]  # the root's command line


def event(kind: EventType, tgid: int, ppid: int, ts: int, **fields) -> Event:
    """A record as decode gives it (by field name: Event gains fields over time)."""
    values = {
        "type": kind,
        "ts_ns": ts,
        "pid": tgid,
        "tgid": tgid,
        "ppid": ppid,
        "uid": 0,
        "comm": "sh",
        "thread": False,
        "filename": None,
        "exit_code": None,
        "exit_signal": None,
        "duration_ns": None,
        "dropped_total": 0,
        **fields,
    }
    defaults = Event._field_defaults
    return Event(**{f: values[f] if f in values else defaults.get(f, 0) for f in Event._fields})


def fork(tgid, ppid, ts, comm="sh", thread=False):
    return event(EventType.FORK, tgid, ppid, ts, comm=comm, thread=thread)


def exec_(tgid, ppid, ts, *argv, truncated=False):
    return event(EventType.EXEC, tgid, ppid, ts, comm=argv[0], argv=argv, argv_truncated=truncated)


def exit_(tgid, ppid, ts, code=0, sig=0, duration=1000):
    return event(
        EventType.EXIT, tgid, ppid, ts, exit_code=code, exit_signal=sig, duration_ns=duration
    )


def built(records, **kw) -> tuple[RunNode, ProcessTree]:
    tree = ProcessTree(ROOT_PID, ARGV, **kw)
    tree.feed(fork(ROOT_PID, 1, 10))
    for r in records:
        tree.feed(r)
    return tree_model(tree), tree


def test_a_child_that_never_execs_shows_its_parents_program():
    model, _ = built(
        [
            exec_(ROOT_PID, 1, 11, "sh", "-c", "x"),
            fork(1001, ROOT_PID, 12),
            exec_(ROOT_PID, 1, 13, "make", "all"),  # the parent moves on; the child not
            exit_(1001, ROOT_PID, 14),
        ]
    )
    [child] = model.children
    assert child.inherited and child.argv == ["sh", "-c", "x"] and child.comm == "sh"
    assert not model.inherited and model.argv == ["make", "all"] and model.running
    assert "(pid 1001, no exec, 0.0ms, exit 0)" in tree_text(model)


def test_children_in_start_order_whatever_order_their_records_came_in():
    model, _ = built([fork(1002, ROOT_PID, 30), fork(1001, ROOT_PID, 20), fork(1003, ROOT_PID, 40)])
    assert [c.pid for c in model.children] == [1001, 1002, 1003]


def test_a_process_whose_parent_was_not_seen_hangs_under_the_root():
    model, tree = built(
        [
            exec_(1500, 1400, 20, "ls"),  # its fork (and its parent's) lost
            exit_(1500, 1400, 50, duration=35),
            exit_(1600, 1400, 60, code=3, duration=5),  # only its exit seen
        ]
    )
    # In start order: ls from its exit's duration (50 - 35), the other likewise (60 - 5).
    assert [c.pid for c in model.children] == [1500, 1600]
    by_pid = {c.pid: c for c in model.children}
    assert by_pid[1500].parent_unseen and by_pid[1500].ppid == 1400
    assert by_pid[1500].started_ns == 15 and by_pid[1500].exit_code == 0
    assert by_pid[1600].started_ns == 55 and by_pid[1600].exit_code == 3
    assert tree.left_out == 0
    assert "parent 1400 not seen" in tree_text(model)


def test_a_reused_pid_is_a_new_process():
    model, _ = built(
        [
            fork(1001, ROOT_PID, 20),
            exit_(1001, ROOT_PID, 30, code=1),
            fork(1002, ROOT_PID, 40),
            fork(1001, 1002, 50),  # the pid again, under another parent
            exec_(1001, 1002, 51, "true"),
        ]
    )
    first, second = model.children
    assert (first.pid, first.exit_code, first.argv, first.running) == (1001, 1, ARGV, False)
    [again] = second.children
    assert (again.pid, again.argv, again.running) == (1001, ["true"], True)


def test_threads_are_counted_on_their_process_not_made_nodes():
    records = [fork(ROOT_PID, ROOT_PID, 20 + i, thread=True) for i in range(3)]
    model, _ = built(records, count_threads=True)
    assert model.threads == 3 and model.children == []
    assert "3 thread(s)" in tree_text(model)
    model, _ = built(records)
    assert model.threads is None  # not streamed without --threads: not known


def test_the_tree_keeps_at_most_max_nodes_and_counts_the_rest():
    records = []
    for i in range(10):
        pid = 1001 + i
        records += [fork(pid, ROOT_PID, 20 + i), exec_(pid, ROOT_PID, 20 + i, "cc")]
        records += [fork(2000 + i, pid, 40 + i), exit_(2000 + i, pid, 60 + i)]
        records.append(exit_(pid, ROOT_PID, 80 + i))
    model, tree = built(records, max_nodes=5)
    assert [c.pid for c in model.children] == [1001, 1002]  # the first started
    assert [g.pid for g in model.children[0].children] == [2000]
    assert tree.kept == 5 and tree.left_out == 21 - 5
    assert not tree._left_out_live and list(tree._live) == [ROOT_PID], "what ended is let go"
    assert tree_text(model, tree.left_out).endswith(
        f"... and 16 more process(es) not in the tree (it keeps the first {TREE_NODES_KEPT} "
        f"processes, {TREE_DEPTH_KEPT} levels deep)"
    )


def test_a_chain_deeper_than_kept_is_cut_and_its_json_reads_back():
    records = [fork(ROOT_PID + d, ROOT_PID + d - 1, 10 + d) for d in range(1, TREE_DEPTH_KEPT + 50)]
    model, tree = built(records)
    depth, node = 0, model
    while node.children:
        [node] = node.children
        depth += 1
    assert depth == TREE_DEPTH_KEPT and tree.left_out == 49
    summary = RunSummary(
        command=["sh"], exit_code=0, processes=TREE_DEPTH_KEPT + 50, threads=0, by_name={},
        failures=0, failed=[], longest=[], running=[], lost_records=0, unfollowed=0,
        wall_ns=1, tree=model, tree_left_out=tree.left_out,
    )  # fmt: skip
    assert json.loads(summary.model_dump_json())["tree_left_out"] == 49
    assert len(tree_text(model).splitlines()) == TREE_DEPTH_KEPT + 1


def test_a_big_build_stays_bounded():
    """100,000 compilers, each forked, exec'd and exited: the tree holds the first
    TREE_NODES_KEPT, and nothing grows with the rest."""
    tree = ProcessTree(ROOT_PID, ["make"])
    for i in range(100_000):
        pid = 2000 + i
        tree.feed(fork(pid, ROOT_PID, 20 + 3 * i))
        tree.feed(exec_(pid, ROOT_PID, 21 + 3 * i, "cc", "-c", f"f{i}.c"))
        tree.feed(exit_(pid, ROOT_PID, 22 + 3 * i))
    assert tree.kept == TREE_NODES_KEPT and tree.left_out == 100_000 + 1 - TREE_NODES_KEPT
    assert len(tree._live) == 1 and not tree._left_out_live
    model = tree_model(tree)
    assert len(model.children) == TREE_NODES_KEPT - 1


def test_text_lines_fit_a_terminal_and_show_controls_escaped():
    long_arg = "x" * 300
    model, _ = built(
        [
            exec_(ROOT_PID, 1, 11, "sh", "-c", "printf '\x1b[2J'; a b"),
            fork(1001, ROOT_PID, 20),
            exec_(1001, ROOT_PID, 21, "cc", "-c", long_arg),
            fork(1002, 1001, 30),
            exec_(1002, 1001, 31, "cc1", long_arg, truncated=True),
            exit_(1002, 1001, 40, sig=9, duration=2_500_000),
            exit_(1001, ROOT_PID, 50, code=2, duration=1_500_000_000),
        ]
    )
    width = 80
    text = tree_text(model, width=width)
    assert "\x1b" not in text and "\\x1b[2J" in text
    lines = text.splitlines()
    assert all(render.columns(ln) <= width for ln in lines), lines
    assert lines[1].startswith("\u2514\u2500 cc -c xxx") and lines[1].endswith(
        "\u2026  (pid 1001, 1.50s, exit 2)"
    )
    assert lines[2].startswith("   \u2514\u2500 cc1 xxx")
    assert lines[2].endswith("\u2026  (pid 1002, 2.5ms, killed by SIGKILL)")
    assert lines[0].endswith("  (pid 1000, running)")
    whole = tree_text(model)  # piped: whole, the cut argv marked as in tables
    assert f"cc -c {long_arg}  (pid 1001" in whole and f"cc1 {long_arg} ...  (pid" in whole


def test_signal_names():
    assert signal_text(15) == "SIGTERM" and signal_text(200) == "SIG200"
    assert signal_text(36) == "SIGRTMIN+2" and signal_text(64) == "SIGRTMAX"


def test_the_documented_bounds_are_the_constants():
    text = RunSummary.model_fields["tree_left_out"].description
    assert f"{TREE_NODES_KEPT:,}" in text and f"{TREE_DEPTH_KEPT} levels" in text


def test_docs_list_the_run_summary_s_fields():
    """docs/logs.md's run section names each field of the summary and of a tree node."""
    text = (ROOT / "docs" / "logs.md").read_text()
    section = text.split("\n## The summary of `run --json`\n", 1)[1].split("\n## ", 1)[0]
    summary_part, node_part = section.split("Each node of `tree`", 1)
    fields = re.compile(r"^- `(\w+)` \(", re.MULTILINE)
    assert fields.findall(summary_part) == list(RunSummary.model_fields)
    assert fields.findall(node_part) == list(RunNode.model_fields)


def test_run_says_where_the_cpu_and_memory_went():
    """run's cost (issue 29.3): the tree's CPU summed from the exit records matches
    what wait4() gave run for CMD, the kernel's own total (every process here is
    waited for), within what each exit path costs after its record: at most 10 ms
    a process, plus 50 ms.  The costliest by CPU and by memory are the processes
    that did that work; --tree and the text summary show them."""
    toucher = f"{sys.executable} -c 'b = bytearray(96 << 20); b[::4096] = b\"x\" * (24 << 10)'"
    script = f"dd if=/dev/zero of=/dev/null bs=64k count=100000 2>/dev/null; {toucher}"
    r = run_cli("run", "--json", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    cost = summary["cost"]
    tree_cpu = cost["cpu_user_ns"] + cost["cpu_system_ns"]
    waited = cost["waited_cpu_user_ns"] + cost["waited_cpu_system_ns"]
    assert cost["measured"] == summary["processes"] == 3, cost
    assert 0 <= waited - tree_cpu <= 10_000_000 * cost["measured"] + 50_000_000, cost
    assert cost["top_cpu"][0]["comm"] == "dd" and cost["top_cpu"][0]["cpu_ns"] > 20_000_000
    peak = cost["top_memory"][0]
    assert peak["comm"].startswith("python") and peak["max_rss_kib"] >= 96 << 10, cost
    assert cost["waited_max_rss_kib"] == peak["max_rss_kib"], cost
    assert 0 < peak["after_ns"] < summary["wall_ns"]
    nodes = [summary["tree"], *summary["tree"]["children"]]
    assert sum(n["cpu_user_ns"] + n["cpu_system_ns"] for n in nodes) == tree_cpu
    text = run_cli("run", "--tree", "--", "sh", "-c", script).stderr
    assert re.search(r"^  cpu: \S+ \(user \S+, system \S+\); wait4\(\) for CMD: \S+$", text, re.M)
    assert re.search(r"^  peak memory: \d+\.\dM, python\S* \(pid \d+\), from ", text, re.M), text
    assert re.search(r"^  most cpu: dd \(pid \d+\) ", text, re.M), text
    assert re.search(r"^\u251c\u2500 dd .*, cpu \S+ peak \S+, exit 0\)$", text, re.M), text
