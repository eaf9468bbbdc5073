"""`run -- CMD` and what happens around CMD (issue 25.3, 25.4): a closed pipe stops
the rows, never CMD; Ctrl-C on a real terminal stops run however CMD arranged its
process group, and a second Ctrl-C ends run's wait for a CMD that goes on."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import CLI

# A try that fails waits this long for what should have come at once.
PATIENCE = 20


def tree_of(pid: int) -> set[int]:
    """pid, if it runs, and every process below it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    # pid (comm) state ppid …: comm may hold spaces and parentheses.
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = {pid} if pid in parents else set()
    grew = True
    while grew:
        below = {p for p, parent in parents.items() if parent in found} - found
        found |= below
        grew = bool(below)
    return found


def kill_tree(pid: int) -> None:
    for p in tree_of(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def poll(condition, timeout: float = PATIENCE, every: float = 0.02):
    """condition()'s first true value, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


# --- a closed pipe (25.3) ------------------------------------------------------------

# CMD: forks a `sleep` (a row each) until the test says go, then leaves a mark and
# exits 7; it writes nothing to the pipe itself.
WAITING_CMD = (
    "n=0; while [ ! -e go ]; do sleep 0.05; n=$((n+1)); echo $n > count; done; touch alive; exit 7"
)


def _count(cwd: Path) -> int:
    try:
        return int((cwd / "count").read_text())
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.parametrize("closed", ["stdout and stderr", "stderr"])
def test_a_closed_pipe_stops_the_rows_not_cmd(tmp_path, closed):
    """`run -- CMD 2>&1 | head -c 1`: the pipe closes under run's rows.  As under
    `time` and `timeout`, CMD runs to its end and run exits with its status (on
    main, run SIGKILLed CMD and exited 0).  With stdout still open, run says once
    there that the rows stopped, and the JSON summary is still its last line."""
    json_out = closed == "stderr"
    with contextlib.ExitStack() as stack:
        stdout = subprocess.PIPE
        if json_out:
            stdout = stack.enter_context(open(tmp_path / "stdout", "w"))
        proc = subprocess.Popen(
            [*CLI, "run", *(["--json"] if json_out else []), "--", "sh", "-c", WAITING_CMD],
            cwd=tmp_path,
            stdout=stdout,
            stderr=subprocess.PIPE if json_out else subprocess.STDOUT,
        )
        stack.callback(lambda: proc.poll() is None and proc.kill())
        pipe = proc.stderr if json_out else proc.stdout
        assert pipe.read(1), "run wrote nothing"  # `head -c 1`
        pipe.close()
        # Ten more rows written to the closed pipe (or CMD killed, and run gone).
        start = _count(tmp_path)
        poll(lambda: _count(tmp_path) >= start + 10 or proc.poll() is not None)
        (tmp_path / "go").touch()
        code = proc.wait(timeout=PATIENCE)
    assert (tmp_path / "alive").exists(), f"CMD did not run to its end (run exited {code})"
    assert code == 7
    if json_out:
        lines = (tmp_path / "stdout").read_text().splitlines()
        assert len(lines) == 2, lines
        assert lines[0].startswith("procmon-ctl: warning: no more rows: writing them to stderr")
        assert json.loads(lines[1])["exit_code"] == 7


# --- Ctrl-C on a real terminal (25.4) ---------------------------------------------------


class Terminal:
    """A real terminal: a tmux pane running one command, to type keys into.  The
    pane's shell prints the command's exit status as `exit:N` and stays (it takes
    Ctrl-C itself with a trap: ignored, CMD would inherit the ignoring)."""

    def __init__(self, argv: list[str], cwd: Path):
        self.socket = f"procmon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmux = ["tmux", "-L", self.socket]
        exports = " ".join(
            f"{k}={shlex.quote(v)}" for k, v in os.environ.items() if k.isidentifier()
        )
        command = (
            f"trap : INT; env -i {exports} TERM=screen {shlex.join(argv)}; "
            'echo "exit:$?"; exec sleep 86400'
        )
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-x", "80", "-y", "50", "-s", "t",
             "-c", str(cwd), "sh", "-c", command],
            check=True,
        )  # fmt: skip

    def screen(self) -> str:
        """The pane's lines, without trailing blanks: -J keeps them, and a row that
        begins a batch leaves the blanks of run's fresh-line prefix after it (a row
        alone in its batch, as on a loaded host, then never ended in "\n")."""
        text = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "t"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return "\n".join(line.rstrip(" ") for line in text.split("\n"))

    def wait_for(self, text: str, timeout: float = PATIENCE) -> bool:
        return bool(poll(lambda: text in self.screen(), timeout, every=0.05))

    def ctrl_c(self) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "t", "C-c"], check=True)

    def exit_code(self, timeout: float = PATIENCE) -> int | None:
        """run's exit status once the pane's shell printed it; None if it did not end."""
        if not self.wait_for("\nexit:", timeout):
            return None
        line = next(ln for ln in self.screen().splitlines() if ln.startswith("exit:"))
        return int(line.removeprefix("exit:"))

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)

    def cmd_pid(self) -> int | None:
        """CMD's pid: its row is the table's first (what CMD prints may come first)."""
        for line in self.screen().splitlines():
            words = line.removeprefix("^C").split()
            if len(words) >= 3 and words[0].isdigit() and words[1].isdigit():
                return int(words[0])
        return None


@pytest.fixture
def terminal(tmp_path):
    """terminal(CMD...): `procmon-ctl run -- CMD` in a real terminal; what is left of
    CMD's tree is killed afterwards (by pid)."""
    made: list[Terminal] = []

    def start(*cmd: str) -> Terminal:
        term = Terminal([*CLI, "run", "--", *cmd], tmp_path)
        made.append(term)
        return term

    yield start
    for term in made:
        cmd = term.cmd_pid()
        term.close()
        if cmd is not None:
            kill_tree(cmd)


def _unique_sleep() -> str:
    """A sleep of its own: nobody else's `pkill -f 'sleep N'` ends it."""
    return f"sleep 1000.{uuid.uuid4().int % 10**9:09d}"


def test_ctrl_c_stops_run_when_cmd_is_in_a_session_of_its_own(terminal):
    """`run -- setsid sh -c …`: the terminal's Ctrl-C reaches run only; run passes it
    on to CMD's group (the shell would ignore a Ctrl-C its child did not get), CMD
    dies of it and run exits 130 with the summary.  On main it was not passed on,
    and run and CMD ran on."""
    sleep = _unique_sleep()
    term = terminal("setsid", "sh", "-c", f"{sleep}; echo not-reached")
    assert term.wait_for(f" {sleep}\n"), term.screen()
    cmd = term.cmd_pid()
    term.ctrl_c()
    code = term.exit_code()
    screen = term.screen()
    assert code == 130, screen
    assert "exit code 130" in screen and _lines(screen, "not-reached") == 0
    assert poll(lambda: not tree_of(cmd), 5), "CMD or its sleep was left running"


def test_ctrl_c_stops_run_when_cmd_leads_a_process_group_of_its_own(terminal):
    """A CMD that calls setpgid(0, 0) (as a job-control shell puts each job in a group
    of its own) left the terminal's foreground group: the Ctrl-C is passed on."""
    program = (
        "import os, signal, time; os.setpgid(0, 0); "
        "signal.signal(signal.SIGINT, signal.SIG_DFL); print('ready', flush=True); "
        "time.sleep(1000)"
    )
    term = terminal(sys.executable, "-c", program)
    assert term.wait_for("\nready"), term.screen()
    cmd = poll(term.cmd_pid)
    term.ctrl_c()
    assert term.exit_code() == 130, term.screen()
    assert poll(lambda: not tree_of(cmd), 5), "CMD was left running"


def _lines(screen: str, text: str) -> int:
    """How many of the screen's lines are `text` (after the ^C the terminal echoes)."""
    return sum(ln.removeprefix("^C") == text for ln in screen.splitlines())


@pytest.mark.parametrize("group", ["the terminal's group", "a session of its own"])
def test_a_second_ctrl_c_ends_run_s_wait(terminal, group):
    """CMD takes Ctrl-C and goes on: each Ctrl-C reaches it once (from the terminal,
    or passed on by run); the second also ends run's wait: the summary says CMD
    still runs, and run exits 130, leaving CMD be (on main, run waited on)."""
    script = "trap 'echo got-INT' INT; while :; do sleep 0.1; done"
    setsid = ["setsid"] if group == "a session of its own" else []
    term = terminal(*setsid, "sh", "-c", script)
    assert term.wait_for(" sleep 0.1\n"), term.screen()
    cmd = term.cmd_pid()
    term.ctrl_c()
    assert poll(lambda: _lines(term.screen(), "got-INT") == 1), term.screen()
    assert term.exit_code(timeout=1) is None, "the first Ctrl-C ended run"
    term.ctrl_c()
    code = term.exit_code()
    screen = term.screen()
    assert code == 130, screen
    assert _lines(screen, "got-INT") == 2, screen
    assert "still running, not waited for after a second SIGINT (exit code 130)" in screen
    # CMD's own `sleep 0.1` may be running too when the summary is made.
    still = next(ln for ln in screen.splitlines() if "still running: " in ln and "(pid" in ln)
    assert f"sh (pid {cmd})" in still.split("still running: ", 1)[1], screen
    assert cmd in tree_of(cmd), "run stopped waiting: it does not end CMD"
