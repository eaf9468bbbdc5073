"""Help that reads like git's or podman's, and messages that fit the terminal (issue
30, points 1 and 5): no arguments prints the help; `help [COMMAND]`; metavars that
say what is wanted; the command list whole; examples at the end of every help;
typo suggestions from the command's own options; errors folded at word boundaries
on a terminal and one whole line when piped.  No BPF needed: these run anywhere."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
import typer
from conftest import CLI, ROOT
from test_terminal import on_a_tty
from typer.main import get_command

from procmon_ctl.cli._common import REGISTRY, Invocation
from procmon_ctl.cli.app import COMMANDS, app, purpose, typer_command
from procmon_ctl.cli.examples import EXAMPLES
from procmon_ctl.errors import EXIT_USAGE
from procmon_ctl.views import render

ERROR = "procmon-ctl: error: "


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("PROCMON_PIN_DIR", "COLUMNS")}
    return {**base, **extra}


def procmon(*args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env(**extra)
    )


def section(help_text: str, heading: str) -> list[str]:
    """The lines of one section of a help ("Commands:"), up to the blank line."""
    return help_text.split(f"\n{heading}\n", 1)[1].split("\n\n", 1)[0].splitlines()


def test_no_arguments_prints_the_help_not_an_error_line():
    r = procmon()
    assert r.returncode == EXIT_USAGE  # as Click does: nothing was done
    assert r.stdout == ""
    assert r.stderr.startswith("Usage: procmon-ctl [OPTIONS] COMMAND [ARGS]...\n"), r.stderr
    assert "\\n" not in r.stderr and ERROR not in r.stderr
    assert "\nCommands:\n" in r.stderr and "\nOptions:\n" in r.stderr
    assert r.stderr == procmon("--help").stdout


def test_help_is_the_group_s_or_a_command_s_help():
    whole = procmon("--help")
    assert procmon("help").stdout == whole.stdout and procmon("help").returncode == 0
    events = procmon("help", "events")
    assert events.returncode == 0 and events.stderr == ""
    assert events.stdout == procmon("events", "--help").stdout
    assert events.stdout.startswith("Usage: procmon-ctl events [OPTIONS]\n")
    assert procmon("help", "run").stdout == procmon("run", "--help").stdout


def test_help_of_an_unknown_command_is_one_clear_line():
    r = procmon("help", "stat")
    assert r.returncode == EXIT_USAGE and r.stdout == ""
    assert r.stderr == (
        f"{ERROR}no command stat (did you mean stats or status?): `procmon-ctl help` lists them\n"
    )


def _group_and_commands():
    group = get_command(app)
    root = typer.Context(group, info_name="procmon-ctl")
    yield "procmon-ctl", group, root
    for name in COMMANDS:
        command = group.get_command(root, name)
        yield name, command, typer.Context(command, info_name=name, parent=root)


# A metavar names what is wanted (DIR, PID, SECONDS...), or is a literal word the
# command takes (`readers rm`): never a Python type such as <str> or <list[str]>.
METAVAR = re.compile(r"[A-Z][A-Z0-9_]*|\[[A-Z]+\]|\[-- CMD \[ARG\]\.\.\.\]")
LITERALS = {("readers", "rm")}
PYTHON_TYPES = re.compile(r"<|>|\b(str|int|float|bool|list|dict|text|integer)\b", re.I)


def test_every_metavar_names_what_is_wanted():
    seen = []
    for name, command, ctx in _group_and_commands():
        for param in command.params:
            if getattr(param, "is_flag", False) or getattr(param, "hidden", False):
                continue
            metavar = param.make_metavar(ctx)
            seen.append((name, param.name, metavar))
            assert not PYTHON_TYPES.search(metavar), (name, param.name, metavar)
            assert (name, metavar) in LITERALS or METAVAR.fullmatch(metavar), (name, metavar)
    metavars = {m for _, _, m in seen}
    assert {"DIR", "PID", "SECONDS", "BYTES", "N", "FILE", "[-- CMD [ARG]...]"} <= metavars


@pytest.mark.parametrize("columns", ["80", "200"])
def test_the_command_list_is_whole_and_says_what_each_is_for(columns):
    r = procmon("--help", COLUMNS=columns)
    assert r.returncode == 0
    rows = [ln for ln in section(r.stdout, "Commands:") if ln.strip()]
    listed = {ln.split()[0]: ln.split(None, 1)[1] for ln in rows}
    assert list(listed) == list(COMMANDS), rows
    assert not [ln for ln in r.stdout.splitlines() if render.columns(ln) > 80]
    for name, summary in listed.items():
        typer_command(name)  # registers it
        assert "..." not in summary and "\u2026" not in summary, summary
        assert summary == purpose(REGISTRY[name][0].__doc__), summary
    assert listed["run"] == "Run a command and show every process it started"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_help_ends_with_examples_kept_as_written(name):
    r = procmon(name, "--help", COLUMNS="80")
    assert r.returncode == 0
    head, _, examples = r.stdout.partition("\nExamples:\n")
    assert examples, f"no Examples section in `{name} --help`"
    lines = examples.splitlines()
    assert 2 <= len(EXAMPLES[name]) <= 4 and len(lines) == 2 * len(EXAMPLES[name]), lines
    pairs = zip(lines[::2], lines[1::2], strict=True)
    for (what, command), (said, typed) in zip(EXAMPLES[name], pairs, strict=True):
        assert said == f"  # {what}" and typed == f"  {command}", (said, typed)
        assert render.columns(typed) <= 80, typed
        assert typed.split()[:2] == ["procmon-ctl", name] or name == "help" or "--pin-dir" in typed
    assert "Options:" in head


def test_a_typo_is_matched_against_the_command_s_own_options():
    r = procmon("run", "--lineage")
    assert r.returncode == EXIT_USAGE
    assert r.stderr == f"{ERROR}No such option: --lineage (an option of events, not of run)\n"
    assert "--ring-size" not in r.stderr
    wid = procmon("events", "--wid")
    assert wid.stderr == f"{ERROR}No such option: --wid (did you mean --wide?)\n"
    none = procmon("stats", "--frobnicate")
    assert none.stderr == (
        f"{ERROR}No such option: --frobnicate (the options: `procmon-ctl stats --help`)\n"
    )


LONG_DIRS = ("/sys/fs/bpf/a-first-instance-with-a-long-name", "/sys/fs/bpf/another-instance-again")


def test_an_error_folds_at_words_on_a_terminal_and_is_one_line_piped():
    argv = ["--pin-dir", LONG_DIRS[0], "stats", "--pin-dir", LONG_DIRS[1]]
    piped = procmon(*argv)
    assert piped.returncode == EXIT_USAGE and piped.stdout == ""
    [line] = piped.stderr.splitlines()
    assert line.startswith(f"{ERROR}--pin-dir given twice") and render.columns(line) > 80

    code, text = on_a_tty([*CLI, *argv], env(), columns=80)
    assert code == EXIT_USAGE
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    assert len(lines) > 1 and lines[0].startswith(ERROR), lines
    assert all(render.columns(ln) <= 80 for ln in lines), lines
    assert all(ln.startswith("  ") for ln in lines[1:]), lines
    # Broken only at spaces: the same words, in order, none split.
    assert " ".join(ln.strip() for ln in lines).split() == line.split(), lines


def test_a_word_moves_to_the_next_line_before_it_is_split():
    from procmon_ctl.views.messages import message_lines

    path = "/sys/fs/bpf/" + "x" * 60
    lines = message_lines("error", f"nothing loaded at {path}: run `procmon-ctl load` first", 80)
    assert lines == [
        f"{ERROR}nothing loaded at",
        f"  {path}: run",
        "  `procmon-ctl load` first",
    ]
    too_long = message_lines("error", "y" * 200, 80)
    assert "".join(ln.strip() for ln in too_long).endswith("y" * 180)
    assert all(len(ln) <= 80 for ln in too_long)


def command_lines(line: str) -> list[list[str]]:
    """The words of each command of a shell line (`sudo` and comments left out):
    `a && b` is two, a redirection's file is none."""
    commands: list[list[str]] = [[]]
    redirected = False
    for word in shlex.split(line, comments=True):
        if word == "sudo" and not commands[-1]:
            continue
        if word in ("&&", "||", "|", ";"):
            commands.append([])
            redirected = False
        elif word == ">":
            redirected = True
        elif not redirected:
            commands[-1].append(word)
    return commands


def parses(words: list[str]) -> str:
    """The name of the command `procmon-ctl WORDS` runs, once its options parsed."""
    group = get_command(app)
    root = group.make_context("procmon-ctl", words, obj=Invocation())
    name, command, rest = group.resolve_command(root, [*root._protected_args, *root.args])
    command.make_context(name, rest, parent=root)  # parsed: the options exist
    return name


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_names_a_command_and_options_that_exist(name):
    """Each example's procmon-ctl command lines parse: a renamed or removed option
    fails here, not in a reader's terminal."""
    for _, line in EXAMPLES[name]:
        for first, words in zip((True, False, False), command_lines(line), strict=False):
            assert words[0] == "procmon-ctl", line
            ran = parses(words[1:])
            assert ran == name or not first or name == "procmon-ctl", line


def test_the_readme_s_quick_start_commands_parse():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick_start, re.S)
    commands = [
        words for block in blocks for line in block.splitlines() for words in command_lines(line)
    ]
    ours = [words for words in commands if words[:1] == ["procmon-ctl"]]
    assert {parses(words[1:]) for words in ours} >= {"run", "load", "events", "serve", "doctor"}
    assert [words for words in commands if words[:1] != ["procmon-ctl"]] == [["make", "install"]]
