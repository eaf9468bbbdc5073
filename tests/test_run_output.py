"""`run -- CMD` stays out of CMD's way (issue 29, point 4): --output takes every byte
of run's own and leaves CMD's stdout and stderr exactly CMD's; --quiet (and -n 0)
leaves the summary alone; on a terminal CMD shares, run's lines never start in the
middle of one of CMD's; --user runs CMD as a user, as `sudo -u` does; `run --`
with nothing after it is refused.

Host only: none of this depends on the kernel's version (the rows are the same
records every kernel of the matrix gives test_run.py)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import AS_NOBODY, CLI, nobody_env, nobody_python
from tmux80 import run_in_tmux, tmux_pane

pytestmark = pytest.mark.usefixtures("bpf")

SCRIPT = "echo out; echo err >&2; /bin/true"


@pytest.fixture
def open_dir():
    """A directory every user can reach (pytest's tmp_path is under a directory of
    root's alone), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="procmon-run-output-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PROCMON_PIN_DIR"}
    return subprocess.run(
        [*CLI, "run", *args], capture_output=True, text=True, timeout=120, env=env, **kw
    )


def json_lines(text: str) -> tuple[list[dict], dict]:
    """The rows and the summary (the last line) of run --json's output; every line
    must parse."""
    *rows, summary = [json.loads(line) for line in text.splitlines()]
    return rows, summary


def test_output_file_takes_the_json_rows_and_summary_and_cmd_keeps_its_streams(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text("an older run's lines\n")  # emptied, as time -o and strace -o do
    r = run("-o", str(trace), "--json", "--", "sh", "-c", SCRIPT)
    assert r.returncode == 0, r.stderr
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    rows, summary = json_lines(trace.read_text())
    assert {row["type"] for row in rows} >= {"exec", "exit"}, rows
    assert [row["comm"] for row in rows if row["type"] == "exec"] == ["sh", "true"]
    assert summary["exit_code"] == 0 and summary["processes"] == 2, summary


def test_output_file_takes_the_table_the_summary_and_the_tree(tmp_path):
    trace = tmp_path / "trace.txt"
    r = run("--output", str(trace), "--tree", "--", "sh", "-c", SCRIPT + "; exit 3")
    assert r.returncode == 3
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    text = trace.read_text()
    assert text.startswith("PID "), text
    assert ": exit code 3, 2 process(es) started in " in text
    assert "\u2514\u2500 /bin/true  (pid " in text  # the tree, last


def test_output_file_is_created_as_the_umask_says(tmp_path):
    trace = tmp_path / "new.jsonl"
    r = run("-o", str(trace), "--json", "--", "true", preexec_fn=lambda: os.umask(0o077))
    assert r.returncode == 0, r.stderr
    assert trace.stat().st_mode & 0o777 == 0o600


def test_output_file_through_a_symlink_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "real").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    marker = tmp_path / "ran"
    r = run("-o", str(tmp_path / "link"), "--", "touch", str(marker))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "symlink" in r.stderr, r.stderr
    assert not marker.exists()


def test_output_dash_is_stdout_and_a_descriptor_can_be_piped_to_a_json_reader():
    """`-o -`: everything of run's on stdout (stderr is CMD's alone).  `-o /dev/fd/N`
    (a shell's >(jq ...)): a pipe that holds only run's JSON, whatever CMD prints on
    its stdout, so a JSON reader gets the summary as its last line."""
    r = run("-o", "-", "--json", "--", "sh", "-c", "echo err >&2")
    assert r.returncode == 0 and r.stderr == "err\n"
    _, summary = json_lines(r.stdout)
    assert summary["command"] == ["sh", "-c", "echo err >&2"]

    read_end, write_end = os.pipe()
    try:
        make_like = "echo 'make: Entering directory'; /bin/true; echo 'cc -c a.c'"
        with subprocess.Popen(
            [*CLI, "run", "--json", "-o", f"/dev/fd/{write_end}", "--", "sh", "-c", make_like],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(write_end,),
        ) as proc:
            os.close(write_end)
            write_end = -1
            with os.fdopen(read_end, "r") as jq_like:
                read_end = -1
                rows, summary = json_lines(jq_like.read())
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out == "make: Entering directory\ncc -c a.c\n" and err == ""
        assert summary["exit_code"] == 0 and summary["by_name"] == {"sh": 1, "true": 1}
        assert all("type" in row for row in rows)
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)


@pytest.mark.parametrize("quiet", [["-q"], ["--quiet"], ["-n", "0"]])
def test_quiet_leaves_the_summary_alone(quiet):
    r = run(*quiet, "--", "sh", "-c", "/bin/true; echo out")
    assert r.returncode == 0 and r.stdout == "out\n"
    assert r.stderr.startswith("sh -c '/bin/true; echo out': exit code 0, 2 process(es)"), r.stderr
    assert "PID" not in r.stderr
    r = run(*quiet, "--json", "--", "sh", "-c", "/bin/true")
    assert r.stderr == ""
    [summary] = [json.loads(line) for line in r.stdout.splitlines()]
    assert summary["processes"] == 2 and summary["by_name"] == {"sh": 1, "true": 1}


@pytest.mark.parametrize(
    "args",
    [
        ["-q", "--wide", "--", "true"],
        ["-q", "-n", "3", "--", "true"],
        ["-q", "--comm", "true", "--", "true"],
        ["-q"],
        ["-o", "x"],
        ["-u", "nobody"],
        ["--"],
        ["--json", "--"],
    ],
)
def test_what_cannot_apply_is_refused_in_one_line(args, tmp_path):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("procmon-ctl: error: "), r.stderr
    assert r.stdout == "" and list(tmp_path.iterdir()) == []


def test_a_dash_dash_given_as_an_option_s_value_is_not_a_bare_dash_dash():
    r = run("--duration", "0.2", "--comm", "--")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("PID "), r.stdout


def test_user_runs_cmd_with_that_user_s_ids_groups_and_environment(tmp_path):
    nobody = pwd.getpwnam("nobody")
    script = 'id -u; id -g; id -G; echo "$HOME|$USER|$LOGNAME|$SHELL"'
    r = run("--user", "nobody", "-q", "--", "sh", "-c", script, cwd="/")
    assert r.returncode == 0, r.stderr
    uid, gid, groups, env = r.stdout.splitlines()
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid) == (65534, 65534)
    assert {int(g) for g in groups.split()} == set(os.getgrouplist("nobody", nobody.pw_gid))
    assert env == f"{nobody.pw_dir}|nobody|nobody|{nobody.pw_shell}"
    assert r.stderr.startswith("sh -c ")  # run's summary: run kept root for the kernel


def test_user_gets_every_supplementary_group_as_a_login_does():
    """A user with supplementary groups, from this host's group database."""
    members = {m for g in grp.getgrall() for m in g.gr_mem}
    users = [u for u in pwd.getpwall() if u.pw_name in members and u.pw_uid != 0]
    if not users:
        pytest.skip("no user here has a supplementary group")
    user = users[0]
    r = run("-u", user.pw_name, "-q", "--", "id", "-G", cwd="/")
    assert r.returncode == 0, r.stderr
    expected = set(os.getgrouplist(user.pw_name, user.pw_gid))
    assert len(expected) > 1 and {int(g) for g in r.stdout.split()} == expected


def test_user_by_number_and_an_unknown_user():
    r = run("-u", "65534", "-q", "--", "id", "-un", cwd="/")
    assert (r.returncode, r.stdout) == (0, "nobody\n"), r.stderr
    r = run("-u", "no-such-user-here", "--", "true")
    assert r.returncode == 2
    assert r.stderr == (
        "procmon-ctl: error: --user no-such-user-here: no such user (getent passwd has none)\n"
    )
    # A digit that is not ASCII ("²": str.isdigit() says yes, int() refuses) is a name.
    r = run("-u", "\u00b2", "--", "true")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such user" in r.stderr


def test_user_s_output_file_is_opened_as_the_user(open_dir):
    """As the user's own shell would open it: theirs when new, refused where they
    may not write, whatever root may."""
    theirs = open_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    trace = theirs / "trace.jsonl"
    r = run("-u", "nobody", "-o", str(trace), "--json", "--", "true")
    assert r.returncode == 0, r.stderr
    assert (trace.stat().st_uid, trace.stat().st_gid) == (65534, 65534)
    assert json_lines(trace.read_text())[1]["exit_code"] == 0
    r = run("-u", "nobody", "-o", str(open_dir / "root-s.jsonl"), "--", "true")
    assert r.returncode == 2 and "Permission denied" in r.stderr, r.stderr
    assert not (open_dir / "root-s.jsonl").exists()


def test_not_root_is_told_so_before_any_file_is_opened(open_dir):
    """Not even as the user --user names: only root runs CMD in a followed tree."""
    exe = nobody_python()
    if exe is None:
        pytest.skip("no interpreter uid 65534 can run")
    trace = open_dir / "trace"
    args = ["run", "-u", "nobody", "-o", str(trace), "--", "true"]
    r = subprocess.run(
        [*AS_NOBODY, exe, "-m", "procmon_ctl", *args],
        capture_output=True,
        text=True,
        env=nobody_env(),
        cwd="/",
        timeout=60,
    )
    assert r.returncode == 77, r.stderr
    assert "permission denied: run as root" in r.stderr and not trace.exists()


def test_a_command_the_user_may_not_run(open_dir):
    script = open_dir / "mine"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o700)  # root's alone
    r = run("-u", "nobody", "--", str(script))
    assert r.returncode == 126 and r.stdout == "", r.stderr
    assert r.stderr.endswith(": Permission denied\n"), r.stderr


def test_on_a_shared_terminal_run_never_writes_after_cmd_s_unfinished_line():
    """CMD writes progress lines without a newline (as apt does); run's header, rows
    and summary each start on a line of their own, whenever they come, and CMD's
    lines are left whole.  The screen, as the terminal (tmux) shows it."""
    script = "printf '0%% [Working]'; /bin/true; printf '\\r0%% [Done]'"
    env = {k: v for k, v in os.environ.items() if k != "PROCMON_PIN_DIR"}
    code, lines = run_in_tmux([*CLI, "run", "--", "sh", "-c", script], env, joined=False)
    text = "\n".join(lines)
    assert code == 0, text
    progress = [line for line in lines if "0% [" in line]
    assert progress and set(progress) <= {"0% [Working]", "0% [Done]"}, text
    assert "0% [Done]" in progress, text
    assert any(line.startswith("PID ") for line in lines), text
    assert any(line.startswith("sh -c ") and ": exit code 0, " in line for line in lines), text


def test_rows_that_come_while_cmd_s_line_is_unfinished_start_a_line_of_their_own():
    """The row of a process CMD started after an unfinished line, shown while CMD
    waits (for a line typed once the row is on the screen): below that line, which
    stays whole, and CMD's next output starts after the row."""
    script = "stty -echo; printf '0%% [Working]'; /bin/true; read answer; echo \" $answer\""
    env = {k: v for k, v in os.environ.items() if k != "PROCMON_PIN_DIR"}
    with tmux_pane([*CLI, "run", "--", "sh", "-c", script], env) as pane:
        pane.wait_for(lambda lines: any(row_of("/bin/true", line) for line in lines))
        pane.type("go", "Enter")
        assert pane.ended() == 0
        lines = pane.screen(joined=False)
    text = "\n".join(lines)
    working = lines.index("0% [Working]")  # whole, on a line of its own
    true_row = next(i for i, line in enumerate(lines) if row_of("/bin/true", line))
    assert working < true_row < lines.index(" go"), text


def row_of(cmdline: str, line: str) -> bool:
    """A table row (PID first) of a process with this command line."""
    return line[:1].isdigit() and line.endswith(f" {cmdline}")
