"""`run`: an unpinned instance of its own, and `run -- CMD` following CMD's tree in
the kernel on a busy host, forwarding signals, honouring every option."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI, bpf_held_by, bpf_ids_alive

from procmon_ctl.instance.pins import PROGRAMS
from procmon_ctl.instance.startup import PACKAGED_OBJECT
from procmon_ctl.kernel.abi import FollowLimits


class BackgroundForks:
    """Another workload on the host: a shell starting /bin/true about `rate` times
    a second until stopped; counts what it started."""

    def __init__(self, tmp_path: Path):
        self.counter = tmp_path / "forks"
        self.proc = subprocess.Popen(
            [
                "sh",
                "-c",
                'n=0; while :; do /bin/true; n=$((n+1)); echo $n > "$0"; done',
                str(self.counter),
            ],
        )
        self.last = 0

    def started(self) -> int:
        """The loop rewrites the file each time: a read may catch it empty."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.last = max(self.last, int(self.counter.read_text()))
        return self.last

    def still_running(self, more: int = 10, timeout: float = 10) -> None:
        """Fails unless the loop starts `more` processes within `timeout` s."""
        now = self.started()
        deadline = time.monotonic() + timeout
        while self.started() < now + more:
            assert self.proc.poll() is None, "the background load ended"
            assert time.monotonic() < deadline, f"the background load stopped at {now}"
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


# In the kernel matrix's emulated guests (scripts/kernels) everything is some 20-50
# times slower: the tree must be exact there too, but the time and rate bounds are
# the host's.
EMULATED = os.environ.get("PROCMON_KERNEL_GUEST") == "1"
RETURN_WITHIN = 0.5  # seconds from CMD's exit to run's


# The load the test needs: processes started a second by the background loop, over a
# window of this long, before the test starts (in an emulated guest, any load at all).
BUSY_RATE = 2 if EMULATED else 100
BUSY_WINDOW = 0.5


@pytest.fixture
def busy_host(tmp_path):
    """A background load of BUSY_RATE processes a second or more, reached before the
    test starts (on a machine busy with other work it may take a moment)."""
    load = BackgroundForks(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            t0, n0 = time.monotonic(), load.started()
            time.sleep(BUSY_WINDOW)
            rate = (load.started() - n0) / (time.monotonic() - t0)
            if rate >= BUSY_RATE:
                break
            assert time.monotonic() < deadline, f"the background load reached only {rate:.0f}/s"
        yield load
    finally:
        load.stop()


def run_json(*cmd: str, options=(), timeout=60):
    """`run --json OPTIONS -- CMD`: (JSON rows from stderr, the summary, when CMD's
    exit record says it ended (CLOCK_MONOTONIC ns), when run had exited)."""
    p = subprocess.Popen(
        [*CLI, "run", "--json", *options, "--", *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = p.communicate(timeout=timeout)
    ended = time.monotonic_ns()
    rows = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    summary = json.loads(out.splitlines()[-1])
    return p.returncode, rows, summary, ended, err


@pytest.mark.kernel
def test_run_follows_only_its_tree_and_returns_at_once_on_a_busy_host(busy_host):
    for cmd, names in (
        (["true"], {"true": 1}),
        (
            ["sh", "-c", "ls / >/dev/null; ps | head -1 >/dev/null"],
            {"sh": 1, "ls": 1, "ps": 1, "head": 1},
        ),
    ):
        code, rows, summary, ended, err = run_json(*cmd)
        assert code == 0, err
        # Exactly CMD's tree: its first record is its own fork by run; every other
        # process descends from it.
        cmd_pid = rows[0]["tgid"]
        tree = {cmd_pid}
        for r in rows:
            if r["type"] == "fork" and r["tgid"] != cmd_pid:
                assert r["ppid"] in tree, r
                tree.add(r["tgid"])
            assert r["tgid"] in tree, f"a process outside CMD's tree: {r}"
        execs = sorted(r["comm"] for r in rows if r["type"] == "exec")
        assert execs == sorted(n for n, c in names.items() for _ in range(c))
        assert len([r for r in rows if r["type"] == "exit"]) == len(tree)
        assert summary["by_name"] == names
        assert summary["processes"] == sum(names.values())
        assert summary["exit_code"] == 0 and summary["running"] == []
        assert summary["lost_records"] == 0 and summary["unfollowed"] == 0
        cmd_exit = next(r for r in rows if r["type"] == "exit" and r["tgid"] == cmd_pid)
        # run's own end, Python's teardown included, is measured from CMD's exit.
        if not EMULATED:
            took = (ended - cmd_exit["ts_ns"]) / 1e9
            assert took < RETURN_WITHIN, f"run returned {took:.3f} s after CMD's exit"
    # Still busy at the end.  (Not a rate over the test: the host's processes stall
    # while run's programs are loaded and attached, some 0.5 s here, and the commands
    # above last about that long.)
    busy_host.still_running()


def test_run_lists_descendants_still_running_and_does_not_wait():
    wait_exec = 'until [ "$(cat /proc/$!/comm)" = sleep ]; do :; done'
    code, rows, summary, ended, err = run_json(
        "sh", "-c", f"sleep 30 >/dev/null 2>&1 & {wait_exec}; exit 4"
    )
    try:
        assert code == 4, err
        running = summary["running"]
        assert [p["comm"] for p in running] == ["sleep"], summary
        sh_exit = next(r for r in rows if r["type"] == "exit")
        assert (ended - sh_exit["ts_ns"]) / 1e9 < RETURN_WITHIN
        assert "still running: sleep (pid" not in err  # text only without --json
    finally:
        for p in summary["running"]:
            os.kill(p["pid"], signal.SIGKILL)


def test_run_summary_text_lists_what_still_runs(cli):
    wait_exec = 'until [ "$(cat /proc/$!/comm)" = sleep ]; do :; done'
    r = cli("run", "--", "sh", "-c", f"sleep 30 >/dev/null 2>&1 & {wait_exec}; echo $! >&2")
    pid = int(next(ln for ln in r.stderr.splitlines() if ln.isdigit()))
    try:
        assert f"still running: sleep (pid {pid})" in r.stderr
    finally:
        os.kill(pid, signal.SIGKILL)


def test_the_followed_set_forgets_processes_that_exited():
    """200 children start and end one after another: none is left in the tree, and
    each was counted once."""
    code, _, summary, _, err = run_json(
        "sh", "-c", "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done"
    )
    assert code == 0, err
    assert summary["processes"] == 201 and summary["by_name"] == {"sh": 1, "true": 200}
    assert summary["running"] == []


@pytest.mark.kernel
def test_a_tree_wider_than_the_followed_map_is_counted():
    """With room for 4 processes, the 10 children of a followed process cannot all
    be followed: the fork program counts the 7 it had no room for (the parent and 3
    children fill the map)."""
    from procmon_ctl.instance.private import PrivateInstance

    assert FollowLimits.FOLLOWED_MAX_PROCESSES == 32768
    with PrivateInstance(PACKAGED_OBJECT, list(PROGRAMS), None, follow=True, follow_limit=4) as i:
        i.follow(os.getpid())
        children = [subprocess.Popen(["sleep", "30"]) for _ in range(10)]
        try:
            i.unfollow(os.getpid())
            assert len(i.followed()) == 3
            assert i.counters()["unfollowed"] == 7
        finally:
            for c in children:
                c.kill()
                c.wait()
        assert i.followed() == []  # each leaves the map as it exits


def test_lost_records_make_the_summary_say_incomplete(cli):
    """A one-page ring and a burst of 3,000 processes: what was lost is counted and
    said, never silently left out."""
    burst = "i=0; while [ $i -lt 3000 ]; do /bin/true & i=$((i+1)); done; wait"
    r = cli("run", "--json", "--ring-size", "4096", "--", "sh", "-c", burst)
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["lost_records"] > 0
    text = cli("run", "--ring-size", "4096", "--", "sh", "-c", burst).stderr
    assert "INCOMPLETE:" in text and "record(s) lost" in text


def _unpinned_instance_ids(p: subprocess.Popen, timeout=30) -> dict[str, set[int]]:
    deadline = time.monotonic() + timeout
    while len(bpf_held_by(p.pid)["link"]) < 3:
        assert p.poll() is None, p.stderr.read() if p.stderr else p.returncode
        assert time.monotonic() < deadline, "run did not attach"
        time.sleep(0.01)
    return bpf_held_by(p.pid)


@pytest.mark.kernel
@pytest.mark.private_bpffs  # what appears at the top of bpffs is then run's alone
def test_run_pins_nothing_and_leaves_nothing_when_killed(tmp_path):
    """SIGKILL at several moments (starting, loading, attached with CMD running):
    nothing of run's instance outlives it."""
    before = set(os.listdir("/sys/fs/bpf"))
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, None):
        p = subprocess.Popen(
            [*CLI, "run", "--", "sleep", "30"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seen: dict[str, set[int]] = {"prog": set(), "link": set(), "map": set()}
        if delay is None:
            seen = _unpinned_instance_ids(p)
            assert len(seen["prog"]) == 3
        else:
            end = time.monotonic() + delay
            while time.monotonic() < end:
                for kind, ids in bpf_held_by(p.pid).items():
                    seen[kind] |= ids
        assert set(os.listdir("/sys/fs/bpf")) == before, "run pinned something"
        p.kill()
        p.wait()
        subprocess.run(["pkill", "-KILL", "-P", str(p.pid)], check=False)
        for kind in ("link", "prog", "map"):
            assert not bpf_ids_alive(kind, seen[kind]), (delay, kind)
    assert set(os.listdir("/sys/fs/bpf")) == before


def test_run_without_command_stops_on_sigterm_and_frees_its_instance():
    p = subprocess.Popen([*CLI, "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ids = _unpinned_instance_ids(p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert not bpf_ids_alive("link", ids["link"]) and not bpf_ids_alive("prog", ids["prog"])


def _run_then_signal(sig: int, script: str, tmp_path: Path):
    log = tmp_path / "stderr"
    with open(log, "w") as err:
        p = subprocess.Popen([*CLI, "run", "--", "sh", "-c", script], stderr=err)
        # CMD's `sleep` row: sh is past its trap, and the sleep is running.
        deadline = time.monotonic() + 30
        while not re.search(r" sleep +sleep 30$", log.read_text(), re.M):
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        p.send_signal(sig)
        p.wait(timeout=20)
    return p.returncode, log.read_text()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signals_sent_to_run_alone_are_forwarded_to_cmd(tmp_path, sig, code):
    rc, err = _run_then_signal(sig, "sleep 30 >/dev/null 2>&1", tmp_path)
    assert rc == code, err
    assert f"exit code {code}" in err and f"killed by {sig.name}" in err  # the summary


def test_cmd_that_handles_the_signal_decides_run_s_status(tmp_path):
    rc, err = _run_then_signal(
        signal.SIGTERM,
        "trap 'echo caught >&2; exit 9' TERM; sleep 30 >/dev/null 2>&1 & wait",
        tmp_path,
    )
    assert rc == 9, err
    assert err.splitlines().count("caught") == 1
    subprocess.run(["pkill", "-KILL", "-f", "^sleep 30$"], check=False)


def ctrl_c_on_a_terminal(*cmd: str) -> tuple[int, str]:
    """`run -- CMD` on a pseudo-terminal of its own; once CMD's `sleep` row shows,
    type Ctrl-C (the terminal sends SIGINT to the foreground process group, run
    and CMD alike).  Returns run's exit status and everything it printed."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(CLI[0], [*CLI, "run", "--", *cmd])
    out = b""
    try:
        deadline = time.monotonic() + 30
        while b" sleep 30\r\n" not in out:
            assert time.monotonic() < deadline, out
            if select.select([fd], [], [], 0.1)[0]:
                out += os.read(fd, 4096)
        os.write(fd, b"\x03")
        while select.select([fd], [], [], 20)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: run has exited and the terminal is gone
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_ctrl_c_on_a_terminal_reaches_cmd_once_and_run_prints_the_summary():
    """Ctrl-C goes to the whole foreground process group: CMD gets it from the
    terminal, and run does not send it a second one."""
    script = "trap 'n=$((n+1)); echo INT$n' INT; sleep 30 >/dev/null 2>&1 & wait; sleep 0.3; exit 5"
    code, text = ctrl_c_on_a_terminal("sh", "-c", script)
    subprocess.run(["pkill", "-KILL", "-f", "^sleep 30$"], check=False)
    assert code == 5, text
    assert text.count("INT1") == 1 and "INT2" not in text, text
    assert "exit code 5" in text  # the summary


def test_ctrl_c_kills_a_plain_cmd_and_run_exits_130():
    code, text = ctrl_c_on_a_terminal("sleep", "30")
    assert code == 130, text
    assert "failed: sleep" in text and "killed by SIGINT: sleep 30\r\n" in text


def test_the_summary_gives_each_failed_process_s_command_line(cli):
    """What a failed process finally ran (env execs false): its name and its
    arguments, quoted and escaped as in the table; a subshell that exec'd nothing
    has its parent's command line (as ps shows it)."""
    script = "env false 'a b' '' \"$(printf '\\033[2J')\"; (exit 3); exit 0"
    r = cli("run", "--json", "--", "sh", "-c", script)
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["by_name"] == {"sh": 3, "false": 1}, summary  # $(...): a subshell
    failed = sorted(summary["failed"], key=lambda f: f["exit_code"])
    assert [(f["comm"], f["exit_code"], f["argv"], f["argv_truncated"]) for f in failed] == [
        ("false", 1, ["false", "a b", "", "\x1b[2J"], False),
        ("sh", 3, ["sh", "-c", script.replace("\\", "\\\\")], False),  # as text(): \\ doubled
    ]
    text = cli("run", "--", "sh", "-c", script).stderr
    assert "  failed: false (pid " in text
    assert "): exit code 1: false 'a b' '' '\\x1b[2J'\n" in text, text
    assert "\x1b" not in text


# --- every option `run --help` lists, with a command ---


def test_run_wide_shows_exit_rows(cli):
    r = cli("run", "--wide", "--", "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3
    header, *rows = r.stderr.splitlines()
    event = header.split().index("EVENT")  # after a TIME column, when there is one
    exits = [ln for ln in rows if ln[:1].isdigit() and ln.split()[event : event + 1] == ["exit"]]
    assert [ln.split()[event + 1] for ln in exits] == ["3"], r.stderr
    assert exits[0].endswith(": sh -c 'exit 3'"), r.stderr


def test_run_raw_shows_every_record(cli):
    r = cli("run", "--raw", "--", "sh", "-c", "/bin/true")
    kinds = [
        ln.split()[0]
        for ln in r.stderr.splitlines()
        if ln.split()[:1] in (["fork"], ["exec"], ["exit"])
    ]
    assert kinds.count("fork") == 2 and kinds.count("exec") == 2 and kinds.count("exit") == 2, (
        r.stderr
    )


def test_run_threads_streams_the_tree_s_threads(cli):
    code = (
        "import threading\n"
        "for t in [threading.Thread(target=int) for _ in range(3)]: t.start(); t.join()"
    )
    plain = cli("run", "--json", "--", sys.executable, "-c", code)
    with_threads = cli("run", "--json", "--threads", "--", sys.executable, "-c", code)
    assert not [ln for ln in plain.stderr.splitlines() if '"thread":true' in ln]
    thread_rows = [ln for ln in with_threads.stderr.splitlines() if '"thread":true' in ln]
    assert len(thread_rows) >= 3, with_threads.stderr
    assert json.loads(with_threads.stdout.splitlines()[-1])["threads"] >= 3


def test_run_count_limits_rows_not_the_summary(cli):
    script = "for i in 1 2 3 4 5; do /bin/true; done"
    r = cli("run", "--json", "--count", "2", "--", "sh", "-c", script)
    rows = [ln for ln in r.stderr.splitlines() if ln.startswith("{")]
    assert len(rows) == 2
    assert json.loads(r.stdout.splitlines()[-1])["processes"] == 6


def test_run_filters_apply_to_the_rows(cli):
    r = cli("run", "--comm", "true", "--", "sh", "-c", "/bin/true; ls >/dev/null")
    table = [ln.split() for ln in r.stderr.splitlines()[2:] if ln[:1].isdigit()]
    assert [row[2] for row in table] == ["true"], r.stderr
    assert "ls x1" in r.stderr  # the summary is the whole tree's


def test_run_duration_with_a_command_is_refused(cli):
    r = cli("run", "--duration", "1", "--", "true", check=False)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "timeout" in r.stderr
