"""Only the CLI spells options and commands (issue 26): below procmon_ctl/cli/ an
error names the setting at fault by its domain name and the command that would fix
it as data (errors.Setting, errors.Command), and cli/hints words them for the
instance in use.  Docstrings and comments may speak of options; string literals,
which reach users, may not."""

from __future__ import annotations

import ast
import json
import re

import pytest
from conftest import ROOT

from procmon_ctl.cli.hints import Hints, option
from procmon_ctl.errors import Command, Given, Setting, StateError, UsageError, plain
from procmon_ctl.kernel.abi import COUNTER_NAMES as COUNTERS

PACKAGE = ROOT / "procmon_ctl"
FLAG = re.compile(r"--[a-z][a-z0-9-]*")
# Options of other programs, which doctor runs or tells the user to run.
FOREIGN = {"--version", "--reinstall"}
# ... and those named with their program (the schema's "unshare --pid").
FOREIGN_PHRASES = ("unshare --pid",)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def flag_spellings(source: str) -> list[str]:
    """The string literals of `source` (docstrings aside) that spell an option."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docs
        and set(FLAG.findall(_without_foreign_phrases(node.value))) - FOREIGN
    ]


def _without_foreign_phrases(text: str) -> str:
    for phrase in FOREIGN_PHRASES:
        text = text.replace(phrase, "")
    return text


def _below_cli():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] not in ("cli", "__main__.py"):
            yield path.relative_to(ROOT).as_posix(), path


def test_nothing_below_the_cli_spells_an_option():
    found = {name: flag_spellings(path.read_text()) for name, path in _below_cli()}
    spelling = {name: literals for name, literals in found.items() if literals}
    assert not spelling, f"options spelled below the CLI (name a Setting instead): {spelling}"


def test_nothing_below_the_cli_imports_it():
    for name, path in _below_cli():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not re.match(r"(procmon_ctl\.)?cli\b", node.module.lstrip(".")), name
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("procmon_ctl.cli") for a in node.names), name


def test_the_check_sees_a_spelled_option():
    source = '"""Takes --pin-dir."""\nraise UsageError(f"--ring-size {n} is not allowed")\n'
    assert flag_spellings(source) == ["--ring-size "]
    assert flag_spellings('x = "a -- b, --7"\n') == []
    assert flag_spellings('run(["bpftool", "--version"])\n') == []


def test_an_error_carries_its_setting_and_remedy_as_data():
    err = StateError(
        ("already loaded at /x: run ", Command("unload"), " first, or choose ", Setting("pin_dir"))
    )
    assert err.setting == "pin_dir"
    assert err.remedies == (Command("unload"),)
    assert err.message == "already loaded at /x: run `unload` first, or choose pin_dir"
    assert UsageError("plain text").words == ("plain text",) and UsageError("x").setting is None


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        (Hints(), "`procmon-ctl unload --force`"),
        (
            Hints("/sys/fs/bpf/a b", "option"),
            "`procmon-ctl --pin-dir '/sys/fs/bpf/a b' unload --force`",
        ),
        (
            Hints("/sys/fs/bpf/x", "env"),
            "`PROCMON_PIN_DIR=/sys/fs/bpf/x procmon-ctl unload --force`",
        ),
    ],
)
def test_the_cli_words_a_remedy_for_the_instance_in_use(hints, expected):
    assert hints.words(("run ", Command("unload", ("force",)))) == f"run {expected}"


def test_commands_of_no_instance_are_spelled_bare():
    hints = Hints("/sys/fs/bpf/x", "option")
    assert hints.words((Command("run"),)) == "`procmon-ctl run`"
    assert hints.words((Command("serve", ("attach",)),)) == "`procmon-ctl serve --attach`"


def test_the_cli_words_settings_and_given_values():
    assert option("ring_size") == "--ring-size" and option("tree_of") == "--tree-of"
    words = (Setting("pin_dir"), " ", Given("/sys/fs/bpf/\udcff"), " is not valid UTF-8")
    assert Hints().words(words) == "--pin-dir '/sys/fs/bpf/\\xff' is not valid UTF-8"
    assert Hints().words((Given("/a b", as_is_if_printable=True),)) == "/a b"
    assert "\n" not in plain((Given("bad\nname"),))


def test_text_below_the_cli_names_options_for_the_cli_to_spell():
    from procmon_ctl.views.metrics import metric_families
    from procmon_ctl.views.schema import EventLine
    from procmon_ctl.views.words import worded_schema

    raw = json.dumps(EventLine.model_json_schema())
    assert "<<argv_bytes>>" in raw and "--argv-bytes" not in raw
    worded = json.dumps(worded_schema(EventLine.model_json_schema(), option))
    assert "<<" not in worded and "at most the load's --argv-bytes (default 4096)" in worded
    assert '"title": "procmon-ctl events --json line"' in worded
    helps = {
        f.name: f.documentation for f in metric_families(dict.fromkeys(COUNTERS, 0), set(), option)
    }
    assert helps["procmon_events_filtered"] == (
        "Events a reader's --cgroup or --container filter kept out of the ring buffer."
    )
    assert not [h for h in helps.values() if "<<" in h]
