"""What `procmon-ctl stats` loads to start: only its own command and modules.

The CLI registers every command with Typer, but makes a command (signature, type
hints, options) only when it is invoked, listed by --help or completed; the modules
of the other commands stay unimported."""

from __future__ import annotations

import json
import subprocess

from conftest import CLI

# Run main() like the console script, and report which commands were made and which
# of our modules (and heavy dependencies of other commands) were imported.
PROBE = """
import atexit, gc, json, sys
from procmon_ctl import cli
from procmon_ctl.cli import app
made = []
make = app.typer_command
def counting(name):
    made.append(name)
    return make(name)
app.typer_command = counting
def report():
    mods = sorted(m for m in sys.modules
                  if m.startswith("procmon_ctl") or m.split(".")[0] in ("prometheus_client", "sh"))
    print(json.dumps({"made": made, "modules": mods, "gc": gc.isenabled()}), file=sys.stderr)
atexit.register(report)
sys.argv[0] = "procmon-ctl"
cli.main(sys.argv[1:])
"""

OTHER_COMMANDS = [
    "procmon_ctl.instance.attach",
    "procmon_ctl.cli.attach",
    "procmon_ctl.cli.doctor",
    "procmon_ctl.cli.events",
    "procmon_ctl.cli.load",
    "procmon_ctl.cli.run",
    "procmon_ctl.cli.schema",
    "procmon_ctl.cli.serve",
    "procmon_ctl.instance.private",
    "procmon_ctl.views.json_lines",
    "procmon_ctl.process.rows",
    "procmon_ctl.instance.settings",
    "procmon_ctl.commands.doctor",
    "procmon_ctl.commands.exporter",
    "procmon_ctl.views.json_native",
    # (procmon_ctl.kernel.libbpf is stats' own too: it checks the pins' kernel ids.)
    "procmon_ctl.instance.load",
    "procmon_ctl.stream.logfile",
    "procmon_ctl.views.render",
    "procmon_ctl.kernel.ringbuf",
    "procmon_ctl.commands.run",
    "procmon_ctl.stream.follow",
    "prometheus_client",
    # The models and tools of other commands: every pydantic class costs its creation.
    "procmon_ctl.views.schema",
    "procmon_ctl.kernel.bpftool_json",
    "procmon_ctl.kernel.bpftool",
    "sh",
]


def probe(cli, *argv: str) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run(
        [CLI[0], "-c", PROBE, *argv], capture_output=True, text=True, env=cli.env, timeout=60
    )
    return r, json.loads(r.stderr.splitlines()[-1])


def test_stats_makes_only_its_command_and_imports_only_its_modules(cli):
    cli("load")
    r, seen = probe(cli, "stats", "--json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) >= {"process_count", "processes", "dropped"}
    assert seen["made"] == ["stats"]
    assert not set(seen["modules"]) & set(OTHER_COMMANDS), seen["modules"]
    assert seen["gc"] is False  # a quick command runs without the cyclic collector


def test_importing_the_cli_leaves_the_collector_alone():
    r = subprocess.run(
        [CLI[0], "-c", "import gc, procmon_ctl.cli.app; print(gc.isenabled())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout.strip() == "True", r.stderr


def test_help_lists_every_command_in_order(cli):
    r, seen = probe(cli, "--help")
    assert r.returncode == 0
    listed = [
        line.split()[0]
        for line in r.stdout.split("Commands:\n")[1].split("\n\n")[0].splitlines()
        if line.startswith("  ")
    ]
    expected = [
        "load",
        "attach",
        "detach",
        "unload",
        "stats",
        "status",
        "readers",
        "events",
        "run",
        "lineage",
        "schema",
        "doctor",
        "serve",
        "help",
    ]
    assert listed == expected
    assert seen["made"] == expected


def test_unknown_command_still_suggests(cli):
    r, seen = probe(cli, "stat")
    assert r.returncode == 2
    assert "No such command 'stat'. Did you mean 'stats', 'status'?" in r.stderr
    assert seen["made"] == []
