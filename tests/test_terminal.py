"""What a shell user meets around the commands: --version, shell completion
through Typer, no colour codes when output is not a terminal or NO_COLOR is set,
and the table's command lines cut to the terminal's width."""

from __future__ import annotations

import fcntl
import functools
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
from conftest import CLI
from test_tables import reading_on_a_terminal

from procmon_ctl import __version__

ESC = "\x1b"
COMMANDS = [
    ["--help"],
    ["serve", "--help"],
    ["events", "--help"],
    ["run", "--help"],
    [],
    ["--version"],
    ["no-such-command"],
    ["serve", "--no-such-option"],
    ["stats"],
    ["status"],
    ["readers"],
    ["events", "--duration", "0.3"],
    ["stats", "--json"],
    ["schema"],
]


def on_a_tty(argv: list[str], env: dict[str, str], columns: int = 0) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal (`columns` wide, if
    given); returns (code, output)."""
    master, slave = pty.openpty()
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def colour_env(cli, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in cli.env.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return {**env, "TERM": "xterm-256color", "COLUMNS": "100", **extra}


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "(none)")
def test_no_colour_when_piped_or_no_color(attached, args):
    cli = attached
    piped = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=colour_env(cli)
    )
    assert ESC not in piped.stdout + piped.stderr, "colour codes in piped output"
    _, text = on_a_tty([*CLI, *args], colour_env(cli, NO_COLOR="1"))
    assert ESC not in text, f"colour codes on a terminal with NO_COLOR: {text!r}"
    assert "Traceback" not in text


def test_version(cli):
    r = cli("--version")
    assert r.stdout == f"procmon-ctl {__version__}\n" and r.stderr == ""


def test_show_completion_bash(cli):
    r = cli("--show-completion", "bash")
    assert "_procmon_ctl_completion" in r.stdout and "complete " in r.stdout


def test_completion_completes_commands_and_options(cli):
    def complete(words: str, cword: int) -> list[str]:
        r = subprocess.run(
            [sys.executable, "-m", "procmon_ctl"],
            capture_output=True,
            text=True,
            timeout=30,
            env={
                **cli.env,
                "_PROCMON_CTL_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": str(cword),
            },
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("procmon-ctl se", 1) == ["serve"]
    assert {"--address", "--attach"} <= set(complete("procmon-ctl serve --a", 2))
    assert "--output" in complete("procmon-ctl events --o", 2)


def test_install_completion_writes_to_home(cli, tmp_path):
    r = cli("--install-completion", env={"HOME": str(tmp_path), "SHELL": "/bin/bash"})
    assert "completion installed" in r.stdout
    script = tmp_path / ".bash_completions" / "procmon-ctl.sh"
    assert "_procmon_ctl_completion" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()


def test_the_table_is_cut_to_the_terminal_s_width(attached):
    """On a terminal 70 columns wide, a long command line is cut to fit, with a
    mark, in the table and in --wide (a pipe shows it whole: test_process_events)."""
    cli = attached
    long = "z" * 300
    env = {k: v for k, v in cli.env.items() if k != "COLUMNS"}
    only = ["--ppid", str(os.getpid())]
    table = functools.partial(on_a_tty, [*CLI, "events", *only], env, columns=70)
    with reading_on_a_terminal(cli.pin_dir, table) as result:
        subprocess.run(["env", "/bin/true", long], check=True)
    [(code, text)] = result
    assert code == 0, text
    [row] = [ln.rstrip("\r") for ln in text.split("\n") if "zzz" in ln]
    assert len(row) == 70 and row.endswith("zz\u2026"), text
    assert row.split()[2:4] == ["true", "/bin/true"]
    wide = functools.partial(on_a_tty, [*CLI, "events", "--wide", *only], env, columns=76)
    with reading_on_a_terminal(cli.pin_dir, wide) as result:
        subprocess.run(["env", "/bin/true", long], check=True)
    [(code, text)] = result
    assert code == 0, text
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    rows = [ln for ln in lines if len(ln.split()) > 4 and ln.split()[4] in ("exec", "exit")]
    assert [r.split()[4:6] for r in rows] == [["exec", "/bin/true"], ["exit", "0"]], text
    # Cut at the width, with the mark: the exec row in its command line, the exit row
    # (its lifetime and cost first) wherever the width falls.
    assert all(len(r) == 76 and r.endswith("\u2026") for r in rows), text
    assert rows[0].endswith("z\u2026"), text
