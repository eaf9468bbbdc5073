"""Hints name the instance they are about, and --pin-dir works after the command.

Every "next:" line and every error that tells the user to run a procmon-ctl command
spells that command for the instance in use: with `--pin-dir DIR` when DIR came on
the command line, as `PROCMON_PIN_DIR=DIR procmon-ctl ...` when it came from the
variable, bare for the default instance.  Pasted into a shell, the hinted command
acts on the same instance: these tests paste each one (through shlex.split) into an
environment without PROCMON_PIN_DIR and check where it acted."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import CLI

from procmon_ctl.errors import EXIT_STATE, EXIT_USAGE
from procmon_ctl.instance.pins import DEFAULT_PIN_DIR

INSTANCE_COMMANDS = [
    "load",
    "attach",
    "detach",
    "unload",
    "stats",
    "status",
    "readers",
    "events",
    "serve",
]


def bare_env(**extra: str) -> dict[str, str]:
    """The environment of a shell that exported no PROCMON_PIN_DIR."""
    env = {k: v for k, v in os.environ.items() if k != "PROCMON_PIN_DIR"}
    return {**env, **extra}


def procmon(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *argv], capture_output=True, text=True, timeout=60, env=env or bare_env()
    )


def paste(command_text: str) -> subprocess.CompletedProcess:
    """Run a hinted command as a shell would: leading NAME=VALUE words go to its
    environment (and nothing else does: no PROCMON_PIN_DIR of ours)."""
    words = shlex.split(command_text)
    env = bare_env()
    while re.fullmatch(r"[A-Z_]+=.*", words[0], re.DOTALL):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == "procmon-ctl", command_text
    return procmon(*words[1:], env=env)


def error_line(r: subprocess.CompletedProcess, code: int) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("procmon-ctl: error: "), r.stderr
    assert r.returncode == code, r.stderr
    return lines[0]


def quoted_commands(line: str) -> list[str]:
    return re.findall(r"`([^`]*)`", line)


def status_of(pin_dir: Path) -> dict:
    import json

    r = procmon("--pin-dir", str(pin_dir), "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def attached_events(pin_dir: Path) -> set[str]:
    return {p["event"] for p in status_of(pin_dir)["programs"] if p["attached"]}


# --- the "next:" line of load ------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "after"])
def test_load_names_the_instance_given_with_the_option(pin_dir, where):
    argv = (
        ["--pin-dir", str(pin_dir), "load"]
        if where == "before"
        else ["load", "--pin-dir", str(pin_dir)]
    )
    r = procmon(*argv)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        f"loaded process_monitor.bpf.o at {pin_dir}; next: procmon-ctl --pin-dir {pin_dir} attach\n"
    )
    pasted = paste(r.stdout.split("next: ", 1)[1])
    assert pasted.returncode == 0, pasted.stderr
    assert attached_events(pin_dir) == {"fork", "exec", "exit", "cgroup"}
    assert procmon("--pin-dir", str(pin_dir), "unload").returncode == 0


def test_load_names_the_variable_it_came_from(cli):
    r = cli("load")
    assert r.stdout == (
        f"loaded process_monitor.bpf.o at {cli.pin_dir}; "
        f"next: PROCMON_PIN_DIR={cli.pin_dir} procmon-ctl attach\n"
    )
    pasted = paste(r.stdout.split("next: ", 1)[1])
    assert pasted.returncode == 0, pasted.stderr
    assert attached_events(cli.pin_dir) == {"fork", "exec", "exit", "cgroup"}


def test_load_shows_the_object_given_as_given(cli, tmp_path):
    from procmon_ctl.instance.startup import find_object

    obj = tmp_path / "mine.bpf.o"
    obj.write_bytes(find_object(None).read_bytes())
    r = cli("load", "--object", str(obj))
    assert r.stdout.startswith(f"loaded {obj} at {cli.pin_dir}; next: ")


def test_a_pin_dir_a_shell_would_split_is_quoted(cli):
    odd = cli.pin_dir / "it's $HOME dir"
    r = procmon("load", "--pin-dir", str(odd))
    assert r.returncode == 0, r.stderr
    hint = r.stdout.split("next: ", 1)[1].rstrip("\n")
    assert hint == f"procmon-ctl --pin-dir {shlex.quote(str(odd))} attach"
    pasted = paste(hint)
    assert pasted.returncode == 0, pasted.stderr
    assert attached_events(odd) == {"fork", "exec", "exit", "cgroup"}
    # From the variable, the same quoting.
    r = procmon("unload", env=bare_env(PROCMON_PIN_DIR=str(odd)))
    assert r.returncode == 0, r.stderr
    r = procmon("attach", env=bare_env(PROCMON_PIN_DIR=str(odd)))
    [hint] = quoted_commands(error_line(r, EXIT_STATE))
    assert hint == f"PROCMON_PIN_DIR={shlex.quote(str(odd))} procmon-ctl load"
    assert paste(hint).returncode == 0
    assert status_of(odd)["loaded"]


# --- the errors of commands run where nothing is loaded ---------------------------


NOT_LOADED = [
    ["attach"],
    ["stats"],
    ["stats", "--watch"],
    ["readers"],
    ["readers", "rm", "journal"],
    ["events", "--count", "1"],
    ["serve"],
]


@pytest.mark.parametrize("argv", NOT_LOADED, ids=" ".join)
@pytest.mark.parametrize("source", ["before", "after", "env"])
def test_not_loaded_errors_name_the_instance(pin_dir, argv, source):
    if source == "env":
        r = procmon(*argv, env=bare_env(PROCMON_PIN_DIR=str(pin_dir)))
        expected = f"PROCMON_PIN_DIR={pin_dir} procmon-ctl load"
    else:
        option = ["--pin-dir", str(pin_dir)]
        r = procmon(*(option + argv if source == "before" else [argv[0], *option, *argv[1:]]))
        expected = f"procmon-ctl --pin-dir {pin_dir} load"
    line = error_line(r, EXIT_STATE)
    assert line.startswith(f"procmon-ctl: error: nothing loaded at {pin_dir}: ")
    assert quoted_commands(line)[0] == expected
    assert not pin_dir.exists()
    # Pasted, the hint loads that instance (and nothing else).
    assert paste(expected).returncode == 0
    assert status_of(pin_dir)["loaded"]
    assert procmon("--pin-dir", str(pin_dir), "unload").returncode == 0


def test_events_warns_with_the_instance_when_nothing_is_attached(cli):
    cli("load")
    r = cli("events", "--duration", "0.2")
    assert f"(run `PROCMON_PIN_DIR={cli.pin_dir} procmon-ctl attach`)" in r.stderr, r.stderr
    r = procmon("events", "--pin-dir", str(cli.pin_dir), "--duration", "0.2")
    assert r.returncode == 0, r.stderr
    [hint] = [c for c in quoted_commands(r.stderr) if c.endswith(" attach")]
    assert hint == f"procmon-ctl --pin-dir {cli.pin_dir} attach"
    assert paste(hint).returncode == 0
    assert attached_events(cli.pin_dir) == {"fork", "exec", "exit", "cgroup"}


@pytest.fixture
def default_unused():
    """The default instance, which no test may load: here it must not exist."""
    if DEFAULT_PIN_DIR.exists():
        pytest.skip(f"{DEFAULT_PIN_DIR} is in use on this machine: not touching it")
    yield DEFAULT_PIN_DIR
    assert not DEFAULT_PIN_DIR.exists(), "a test made the default instance"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--pin-dir", str(DEFAULT_PIN_DIR), "attach"], {}),
        (["attach", "--pin-dir", f"{DEFAULT_PIN_DIR}/"], {}),
        (["attach"], {"PROCMON_PIN_DIR": str(DEFAULT_PIN_DIR)}),
        (["stats"], {}),
    ],
    ids=["option", "option-after-with-slash", "env", "none"],
)
def test_the_default_instance_gets_a_bare_command(default_unused, argv, env):
    r = procmon(*argv, env=bare_env(**env))
    assert error_line(r, EXIT_STATE) == (
        f"procmon-ctl: error: nothing loaded at {DEFAULT_PIN_DIR}: run `procmon-ctl load` first"
    )


# --- --pin-dir after the command ---------------------------------------------------


@pytest.mark.parametrize("command", INSTANCE_COMMANDS)
def test_every_instance_command_lists_pin_dir_in_its_help(command):
    r = procmon(command, "--help")
    assert r.returncode == 0, r.stderr
    help_text = " ".join(r.stdout.split())
    assert "--pin-dir DIR bpffs directory that holds this instance's pins" in help_text
    assert "[env var: PROCMON_PIN_DIR]" in help_text


def test_every_instance_command_takes_pin_dir_after_its_name(pin_dir):
    at = ["--pin-dir", str(pin_dir)]
    # events: a reader starts now, so --duration (a quiet machine may fork nothing).
    for argv in (
        ["load"],
        ["attach"],
        ["stats", "--json"],
        ["events", "--json", "--duration", "0.2"],
    ):
        r = procmon(argv[0], *at, *argv[1:])
        assert r.returncode == 0, (argv, r.stderr)
    assert attached_events(pin_dir) == {"fork", "exec", "exit", "cgroup"}
    r = procmon("status", *at, "--json")
    assert r.returncode == 0 and f'"pin_dir":"{pin_dir}"' in r.stdout, r.stderr
    # serve: the same validation, before anything listens.
    r = procmon("serve", "--pin-dir", "relative/dir", "--port", "1")
    assert "is relative" in error_line(r, EXIT_USAGE)
    r = procmon("detach", *at)
    assert (r.returncode, r.stdout) == (0, "detached fork, exec, exit, cgroup\n"), r.stderr
    r = procmon("unload", *at)
    assert r.returncode == 0 and r.stdout.startswith(f"unloaded {pin_dir} "), r.stderr
    assert not pin_dir.exists()


@pytest.mark.parametrize(
    ("value", "text"),
    [("", "--pin-dir is empty"), ("relative", "is relative"), ("/tmp/x", "bpffs")],
)
def test_pin_dir_after_the_command_is_checked_the_same(value, text):
    for argv in (["--pin-dir", value, "attach"], ["attach", "--pin-dir", value]):
        assert text in error_line(procmon(*argv), EXIT_USAGE)


def test_pin_dir_after_the_command_wins_over_the_variable(cli, pin_dir):
    """The option names the instance, as before the command: PROCMON_PIN_DIR is only
    the default."""
    r = cli("load", "--pin-dir", str(cli.pin_dir / "inner"))
    assert r.stdout.endswith(f"next: procmon-ctl --pin-dir {cli.pin_dir / 'inner'} attach\n")
    assert status_of(cli.pin_dir / "inner")["loaded"]
    assert not (cli.pin_dir / "progs").exists()
    cli("unload", "--pin-dir", str(cli.pin_dir / "inner"))


def test_pin_dir_twice_must_agree(pin_dir):
    other = f"{pin_dir}-other"
    r = procmon("--pin-dir", str(pin_dir), "attach", "--pin-dir", other)
    assert error_line(r, EXIT_USAGE) == (
        f"procmon-ctl: error: --pin-dir given twice with different directories "
        f"('{pin_dir}' before attach, '{other}' after it): give it once"
    )
    # The same directory twice (spelled with a trailing slash) is one instance.
    r = procmon("--pin-dir", str(pin_dir), "attach", "--pin-dir", f"{pin_dir}/")
    assert error_line(r, EXIT_STATE).startswith(f"procmon-ctl: error: nothing loaded at {pin_dir}:")


# --- commands without an instance --------------------------------------------------


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (["run", "--duration", "0.01"], "it loads an instance of its own, pinned nowhere"),
        (["doctor"], "it checks the host"),
        (["schema"], "of `events --json` lines, from no instance"),
    ],
    ids=["run", "doctor", "schema"],
)
@pytest.mark.parametrize("where", ["before", "after"])
def test_an_explicit_pin_dir_is_refused_where_there_is_no_instance(pin_dir, command, why, where):
    option = ["--pin-dir", str(pin_dir)]
    argv = [*option, *command] if where == "before" else [command[0], *option, *command[1:]]
    line = error_line(procmon(*argv), EXIT_USAGE)
    assert line.startswith(f"procmon-ctl: error: --pin-dir does not apply to {command[0]}: ")
    assert why in line and line.endswith("; leave --pin-dir out")


def test_run_and_schema_ignore_the_variable(pin_dir):
    """An exported PROCMON_PIN_DIR is for the pinned commands: even one they would
    refuse does not stop run or schema."""
    for value in ("relative", str(pin_dir)):
        env = bare_env(PROCMON_PIN_DIR=value)
        r = procmon("run", "--json", "--", "true", env=env)
        assert r.returncode == 0, r.stderr
        assert '"exit_code":0' in r.stdout.splitlines()[-1].replace(" ", "")
        r = procmon("schema", env=env)
        assert r.returncode == 0 and r.stdout.startswith("{"), r.stderr
    assert not pin_dir.exists()
