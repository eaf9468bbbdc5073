"""Command lines in exec records, on real processes with hostile command lines
(issue 14): every argument in order, empty ones included; bytes kept exactly
(decode.unescape gives them back); cut at the load's --argv-bytes and marked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest
from conftest import ROOT, build_program, pin_tree

from procmon_ctl.process.decode import unescape

TRUE = os.path.realpath(shutil.which("true"))
DEFAULT_BOUND = 4096


def area_size(args: list[bytes]) -> int:
    """Bytes of the argument area the kernel lays out for `args`."""
    return sum(len(a) + 1 for a in args)


def run_all(*commands: list) -> None:
    for argv in commands:
        assert subprocess.run(argv).returncode == 0


def execs_by_marker(events: list[dict], markers: list[str]) -> dict[str, dict]:
    """The exec line whose arguments hold each marker."""
    found = {}
    for e in events:
        if e["type"] == "exec":
            for marker in set(markers).intersection(e["argv"]):
                found[marker] = e
    assert set(found) == set(markers), f"missing: {set(markers) - set(found)}"
    return found


@pytest.mark.kernel
def test_hostile_command_lines_come_out_exact(attached):
    """Empty arguments, newline, ESC, bytes that are not UTF-8, a backslash; a
    `sh -c` with a long script; one argument longer than the bound; 10,000
    arguments: every argument as given, in order, until the bound, which is marked."""
    tag = uuid.uuid4().hex[:8]
    m = {k: f"{k}-{tag}" for k in ("empty", "bytes", "script", "long", "many")}
    hostile = [b"new\nline", b"\x1b[2J\x1b]0;title\x07", b"\xff\xfe", b"caf\xc3\xa9"]
    hostile += [b"back\\slash", b"\\xff", b"\t"]
    script = "true" + "; true" * 600 + " # " + m["script"]
    long_arg = b"a" * 10_000
    many = [str(i).encode() for i in range(10_000)]
    with attached.reading("events", "--json") as reading:
        run_all(
            [TRUE, m["empty"], "", "x", "", ""],
            [TRUE.encode(), m["bytes"].encode(), *hostile],
            ["sh", "-c", script, m["script"]],
            [TRUE.encode(), m["long"].encode(), long_arg],
            [TRUE.encode(), m["many"].encode(), *many],
        )
    got = execs_by_marker(reading.json_lines(), list(m.values()))

    e = got[m["empty"]]
    assert e["argv"] == [TRUE, m["empty"], "", "x", "", ""]
    assert (e["argv_truncated"], e["argc"], e["filename"]) == (False, 6, TRUE)

    e = got[m["bytes"]]
    assert [unescape(a) for a in e["argv"]] == [TRUE.encode(), m["bytes"].encode(), *hostile]
    assert e["argv"][4] == "\\xff\\xfe" and e["argv"][6] == "back\\\\slash"
    assert e["argv_truncated"] is False

    e = got[m["script"]]  # sh -c SCRIPT NAME: the script is argv[2], whole
    assert e["argv"] == ["sh", "-c", script, m["script"]]
    assert len(script) > 3000 and e["argv_truncated"] is False

    e = got[m["long"]]
    head = [TRUE.encode(), m["long"].encode()]
    kept = DEFAULT_BOUND - area_size(head)
    assert e["argv"] == [TRUE, m["long"], "a" * kept]  # cut, without its NUL
    assert (e["argv_truncated"], e["argc"]) == (True, 3)

    e = got[m["many"]]
    assert e["argc"] == 10_002 and e["argv_truncated"] is True
    given = [TRUE, m["many"], *(a.decode() for a in many)]
    complete = e["argv"][:-1]  # the last one kept may be cut
    assert complete == given[: len(complete)]
    assert given[len(complete)].startswith(e["argv"][-1])
    assert area_size([a.encode() for a in e["argv"]]) - 1 <= DEFAULT_BOUND


def test_argv_bytes_bounds_what_load_keeps(cli):
    """`load --argv-bytes N`: at most N bytes of each command line; 0 keeps none
    (the record still says how many arguments there were, and that they were cut)."""
    tag = uuid.uuid4().hex[:8]
    cli("load", "--argv-bytes", "64")
    cli("attach")
    marker = f"b64-{tag}"
    with cli.reading("events", "--json") as reading:
        run_all([TRUE, marker, "x" * 100])
    e = execs_by_marker(reading.json_lines(), [marker])[marker]
    assert area_size([a.encode() for a in e["argv"]]) - 1 == 64
    assert e["argv_truncated"] is True and e["argc"] == 3
    cli("unload")

    cli("load", "--argv-bytes", "0")
    cli("attach")
    with cli.reading("events", "--json") as reading:
        run_all([TRUE, marker, "y"])
    execs = [
        e
        for e in reading.json_lines()
        if e["type"] == "exec" and e["filename"] == TRUE and e["argc"] == 3
    ]
    assert execs and all(e["argv"] == [] and e["argv_truncated"] for e in execs)


def argv_read(cli) -> int:
    """What the exec program reads of each command line now (settings.argv_read)."""
    dump = json.loads(
        subprocess.run(
            ["bpftool", "-j", "map", "dump", "pinned", str(cli.pin_dir / "maps" / "settings")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return dump[0]["formatted"]["value"]["argv_read"]


def test_each_reader_keeps_its_own_argv_bytes_and_the_kernel_reads_only_what_one_wants(cli):
    """`events --argv-bytes N` per reader, beside readers of the load's bound: each gets
    its own cut of the same exec, and the kernel reads the most any reader keeps (none
    while the only reader keeps none)."""
    tag = uuid.uuid4().hex[:8]
    cli("load", "--argv-bytes", "64")
    cli("attach")
    assert argv_read(cli) == 0  # no reader yet
    marker = f"each-{tag}"
    given = [TRUE, marker, "z" * 100]
    with cli.reading("events", "--json", "--argv-bytes", "0") as none:
        assert argv_read(cli) == 0
        with cli.reading("events", "--json", "--argv-bytes", "16") as short:
            assert argv_read(cli) == 16
            with cli.reading("events", "--json") as default:
                assert argv_read(cli) == 64
                run_all(given)
            assert argv_read(cli) == 16  # the reader of 64 has gone
    assert argv_read(cli) == 0
    full = execs_by_marker(default.json_lines(), [marker])[marker]
    assert area_size([a.encode() for a in full["argv"]]) - 1 == 64
    kept = {}
    for reading, bound in ((none, 0), (short, 16)):
        # The same exec: the same process at the same moment.
        same = [
            e
            for e in reading.json_lines()
            if e["type"] == "exec" and (e["ts_ns"], e["pid"]) == (full["ts_ns"], full["pid"])
        ]
        assert len(same) == 1, f"--argv-bytes {bound}: {same}"
        kept[bound] = e = same[0]
        assert e["argv_truncated"] is True and e["argc"] == 3 and e["filename"] == TRUE
    assert kept[0]["argv"] == []
    assert area_size([a.encode() for a in kept[16]["argv"]]) - 1 == 16
    # The bytes kept are the start of what the longest kept.
    assert "\0".join(full["argv"]).startswith("\0".join(kept[16]["argv"]))


@pytest.mark.parametrize("value", ["-1", "16385", "lots"])
def test_a_bound_out_of_range_is_refused(cli, value):
    result = cli("load", "--argv-bytes", value, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--argv-bytes" in lines[0], result.stderr
    if value != "lots":
        assert "0" in lines[0] and "16384" in lines[0]  # the allowed range
    assert "Traceback" not in result.stderr
    assert not cli.pin_dir.exists() or pin_tree(cli.pin_dir) == set()


@pytest.fixture(scope="module")
def rewrite_argv(tmp_path_factory):
    return build_program(tmp_path_factory, ROOT / "tests" / "programs" / "rewrite_argv.c")


def test_a_process_that_rewrites_its_argv_shows_what_it_was_started_with(attached, rewrite_argv):
    """The record is made at exec, before the program's first instruction: a process
    that later overwrites its argument area (a daemon retitling itself) is shown
    with the command line it was started with; /proc says what it says now."""
    marker = f"rw-{uuid.uuid4().hex[:8]}"
    with attached.reading("events", "--json") as reading:
        proc = subprocess.Popen(
            [str(rewrite_argv), marker, "secret"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert proc.stdout.readline() == b"rewritten\n"
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                now = f.read().split(b"\0")
            assert now[1:3] == [b"X" * len(marker), b"XXXXXX"]
        finally:
            proc.stdin.close()
            proc.wait()
    e = next(e for e in reading.json_lines() if e["type"] == "exec" and e["tgid"] == proc.pid)
    assert e["argv"] == [str(rewrite_argv), marker, "secret"]


@pytest.mark.parametrize("name", [b"back\\sl", b"caf\xe9"])
def test_comm_filter_takes_the_name_as_typed(attached, tmp_path, name):
    """--comm NAME matches the process whose name is those bytes, though the output
    shows it escaped (a backslash doubled, a byte that is not UTF-8 as \\xNN)."""
    link = os.path.join(os.fsencode(tmp_path), name)
    os.symlink(TRUE, link)
    # The name as an argument: a str that stands for its bytes (surrogate escapes).
    with attached.reading("events", "--json", "--comm", os.fsdecode(name)) as reading:
        assert subprocess.run([link]).returncode == 0
    lines = reading.json_lines()
    execs = [e for e in lines if e["type"] == "exec"]
    assert execs and all(unescape(e["comm"]) == name for e in lines)
