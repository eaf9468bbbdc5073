"""`run`'s summary, `run --tree` and `doctor` in a real 80-column terminal (tmux): no
line wraps; what is cut is a command line, marked with …, never an exit code, a
count or a pid; a fix is folded onto continuation lines, not cut.  Piped, every
line is whole."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import CLI
from tmux80 import run_in_tmux

from procmon_ctl.cli.hints import Hints
from procmon_ctl.views import render
from procmon_ctl.views.doctor import NAME_COLUMN_MAX
from procmon_ctl.views.run_summary import summary_text
from procmon_ctl.views.schema import RunExit, RunProcess, RunSummary

WIDTH = 80
CUT = render.CUT
DURATION = r"\d+\.\d+m?s"
STATUSES = ("PASS", "WARN", "FAIL", "INFO")


def env() -> dict[str, str]:
    """As conftest's Cli.env, without a pin dir: run and doctor have no pinned
    instance."""
    return {k: v for k, v in os.environ.items() if k != "PROCMON_PIN_DIR"}


def too_long(lines: list[str]) -> list[str]:
    return [ln for ln in lines if render.columns(ln) > WIDTH]


def piped(*args: str, check_code: int | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env())
    if check_code is not None:
        assert r.returncode == check_code, r.stderr
    return r


@pytest.fixture
def long_names(tmp_path: Path) -> Path:
    """A directory of programs whose names fill the kernel's 15 bytes: twelve of
    /bin/true and one of sleep, so that `by name:` is longer than a line."""
    for i in range(12):
        (tmp_path / f"a-long-name-{i:03d}").symlink_to("/bin/true")
    (tmp_path / "a-long-sleeper-1").symlink_to(os.path.realpath("/bin/sleep"))
    return tmp_path


def script_of(bin_dir: Path) -> tuple[str, str, str]:
    """CMD's script, a failing child's script, and its long argument."""
    long_arg = "--an-argument-that-goes-on=" + "v" * 200
    child = "exit 5"
    names = "; ".join(f"{bin_dir}/a-long-name-{i:03d}" for i in range(12))
    # CMD goes on only once the sleeper has exec'd (shell builtins only: no process more),
    # so that a loaded machine cannot end CMD while the sleeper is still named sh.
    script = (
        f"{names}; {bin_dir}/a-long-sleeper-1 30 >/dev/null 2>&1 & "
        'while read -r c < /proc/$!/comm && [ "$c" != a-long-sleeper- ]; do :; done; '
        f"sh -c '{child}' sh {long_arg}; exit 3"
    )
    return script, child, long_arg


def kill_sleepers(text: str) -> None:
    """What the summary says is still running (the sleeper CMD left behind)."""
    for line in text.splitlines():
        if line.startswith("  still running: "):
            for pid in re.findall(r"\(pid (\d+)\)", line):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def test_run_summary_fits_80_columns_and_is_whole_when_piped(long_names):
    script, child, long_arg = script_of(long_names)
    code, lines = run_in_tmux([*CLI, "run", "--", "sh", "-c", script], env(), WIDTH)
    text = "\n".join(lines)
    try:
        assert code == 3, text
        assert too_long(lines) == [], text
        [head] = [ln for ln in lines if ": exit code 3, " in ln]
        # The command line gave way; the outcome is whole.
        assert head.startswith("sh -c ") and re.search(
            rf"{CUT}: exit code 3, 15 process\(es\) started in {DURATION}$", head
        ), head
        failed_sh = r"  failed: sh \(pid \d+\): exit code"
        [failed] = [ln for ln in lines if re.match(f"{failed_sh} 5: ", ln)]
        [cmd_failed] = [ln for ln in lines if re.match(f"{failed_sh} 3: ", ln)]
        assert cmd_failed.endswith(CUT) and render.columns(cmd_failed) == WIDTH, cmd_failed
        assert re.fullmatch(
            rf"  failed: sh \(pid \d+\): exit code 5: sh -c '{child}' sh --an-arg\S*{CUT}", failed
        ), failed
        [by_name] = [ln for ln in lines if ln.startswith("  by name: ")]
        shown = re.findall(r"(\S+) x(\d+)", by_name)
        more = re.search(rf", {CUT} (\d+) more$", by_name)
        # 14 names: sh (CMD and its child), the 12 and the sleeper.
        assert more and len(shown) + int(more.group(1)) == 14, by_name
        assert all(int(n) >= 1 for _, n in shown)
        assert any(
            re.fullmatch(r"  longest-lived: \S+ \(pid \d+\) " + DURATION, ln) for ln in lines
        )
        assert any(re.fullmatch(r"  still running: \S+ \(pid \d+\)", ln) for ln in lines), text
    finally:
        kill_sleepers(text)

    r = piped("run", "--", "sh", "-c", script, check_code=3)
    try:
        whole = r.stderr.splitlines()
        command = render.cmdline(["sh", "-c", script])
        assert any(ln.startswith(f"{command}: exit code 3, 15 process(es)") for ln in whole), (
            r.stderr
        )
        assert f": exit code 5: sh -c '{child}' sh {long_arg}\n" in r.stderr
        by_name = next(ln for ln in whole if ln.startswith("  by name: "))
        assert CUT not in by_name and by_name.count(" x") == 14, by_name
    finally:
        kill_sleepers(r.stderr)


def test_run_json_is_never_cut(long_names):
    script, _, long_arg = script_of(long_names)
    code, lines = run_in_tmux([*CLI, "run", "--json", "--", "sh", "-c", script], env(), WIDTH)
    try:
        assert code == 3
        summary = json.loads(lines[-1])  # the pane's rows joined: one line of JSON
        assert summary["command"] == ["sh", "-c", script]
        assert [f["argv"][-1] for f in summary["failed"] if f["exit_code"] == 5] == [long_arg]
    finally:
        for p in summary["running"]:
            os.kill(p["pid"], signal.SIGKILL)


TREE_LINE = re.compile(
    r"(?P<prefix>[\u2502\u251c\u2514\u2500 ]*)(?P<command>.+?)"
    r"  \(pid (?P<pid>\d+)(?:, [^)]*)?, (?:exit \d+|killed by \w+|running)\)"
)


def test_run_tree_fits_80_columns_and_is_whole_when_piped():
    long_arg = "w" * 150
    script = (
        f"sh -c 'sh -c \"exit 0\" {long_arg}; exit 0' sh {long_arg}; "
        f"sh -c 'exit 2' sh {long_arg}; exit 0"
    )
    code, lines = run_in_tmux([*CLI, "run", "--tree", "--", "sh", "-c", script], env(), WIDTH)
    text = "\n".join(lines)
    assert code == 0, text
    assert too_long(lines) == [], text
    tree = [m for ln in lines if (m := TREE_LINE.fullmatch(ln))]
    # CMD, its two children, the grandchild: each with its pid, lifetime and status whole.
    assert len(tree) == 4, text
    assert tree[0].group("prefix") == "" and tree[0].group("command").startswith("sh -c ")
    assert [m.group("prefix") for m in tree[1:]] == [
        "\u251c\u2500 ", "\u2502  \u2514\u2500 ", "\u2514\u2500 "
    ]  # fmt: skip
    assert all(m.group("command").endswith(CUT) for m in tree), text
    assert re.search(r", exit 2\)$", tree[3].group()), text
    cost = rf"cpu {DURATION} peak \d+(?:\.\d)?[KMG]"
    assert all(re.search(rf"\(pid \d+, {DURATION}, {cost}, exit \d\)$", m.group()) for m in tree)

    r = piped("run", "--tree", "--", "sh", "-c", script, check_code=0)
    assert f"sh -c 'exit 2' sh {long_arg}  (pid " in r.stderr
    assert f"sh -c 'exit 0' {long_arg}  (pid " in r.stderr.replace('"', "'")
    assert CUT not in r.stderr


def _records(lines: list[str]) -> list[tuple[str, str, str, str]]:
    """doctor's lines read back: (status, name, detail, fix) per check, each
    continuation line joined to what it continues."""
    records: list[list[str]] = []
    part = 2
    for ln in lines:
        if ln.startswith(STATUSES):
            status, _, rest = ln.partition("  ")
            name, _, detail = rest.partition("  ")
            records.append([status, name, detail.strip(), ""])
            part = 2
        elif ln.startswith(" ") and records:
            if ln.strip().startswith("fix: "):
                part = 3
                records[-1][3] = ln.strip()[5:]
            else:
                records[-1][part] += " " + ln.strip()
    return [tuple(r) for r in records]


def _same_words(a: str, b: str) -> bool:
    """Equal but for where lines were broken (a word too long is split, not cut)."""
    return "".join(a.split()) == "".join(b.split())


def test_doctor_fits_80_columns_with_every_fix_whole():
    missing = "/nonexistent/" + "x" * 100 + ".bpf.o"  # a FAIL, its detail one long word
    report = json.loads(piped("doctor", "--json", "--object", missing, check_code=4).stdout)
    code, lines = run_in_tmux([*CLI, "doctor", "--object", missing], env(), WIDTH)
    text = "\n".join(lines)
    assert code == 4, text
    assert too_long(lines) == [], text
    assert CUT not in text  # folded, never cut
    shown = _records(lines[:-2])
    assert [(s, n.strip()) for s, n, _, _ in shown] == [
        (c["status"], c["name"]) for c in report["checks"]
    ], text
    for (_, _, detail, fix), check in zip(shown, report["checks"], strict=True):
        assert _same_words(detail, check["detail"]), (detail, check)
        wants_fix = check["status"] in ("FAIL", "WARN")
        assert _same_words(fix, check["fix"] if wants_fix else ""), (fix, check)
    # Aligned: every detail starts in one column, whatever the names' lengths; a
    # name too long for the column has a line of its own.
    column = max(len(c["name"]) for c in report["checks"] if len(c["name"]) <= NAME_COLUMN_MAX)
    fix_open = False
    for ln in lines:
        if ln.startswith(STATUSES):
            if "  " not in ln[6:]:
                assert len(ln) - 6 > column, ln  # a long name, alone
            else:
                assert ln[6 + column : 8 + column] == "  " and ln[8 + column] != " ", ln
        elif ln.startswith(" "):
            # A detail's next line, or a fix (whose own next lines hang under its text).
            indent = len(ln) - len(ln.lstrip())
            assert indent == 8 + column or (indent == 13 + column and fix_open), ln
        fix_open = ln.strip().startswith("fix: ") or (fix_open and ln.startswith(" "))
    assert re.fullmatch(r"\d+ passed, \d+ warnings?, 1 failed", lines[-2]), lines[-2]
    assert lines[-1] == "procmon-ctl: error: doctor: 1 check(s) failed: BPF object"

    whole = piped("doctor", "--object", missing, check_code=4).stdout.splitlines()
    under = " " * (8 + column)
    for c in report["checks"]:
        assert any(ln.endswith("  " + c["detail"]) for ln in whole), c
        if c["status"] in ("FAIL", "WARN"):
            assert f"{under}fix: {c['fix']}" in whole, c


def test_summary_lines_fit_any_width_and_fold_what_says_what_to_do():
    """A summary at its worst (names all escapes, a huge pid, every list long, both
    INCOMPLETE lines) at 80 columns and narrower: every line fits; the outcome and
    each INCOMPLETE line's advice are whole."""
    name = "\\xff" * 15
    s = RunSummary(
        command=["make", "-j", "x" * 300], exit_code=2, processes=123456, threads=0,
        by_name={f"n{i}": i for i in range(1, 200)}, failures=30,
        failed=[RunExit(pid=4194304, comm=name, exit_code=255, signal=0, argv=["cc"] * 80,
                        argv_truncated=True)],
        longest=[], running=[RunProcess(pid=4194304, comm=name) for _ in range(30)],
        lost_records=4294967295, unfollowed=4294967295, wall_ns=3_600_000_000_000,
    )  # fmt: skip
    for width in (80, 60, 40, 20):  # below 60 the outcome is cut too, but nothing wraps
        lines = summary_text(s, width, Hints().words).splitlines()
        assert [ln for ln in lines if render.columns(ln) > width] == [], (width, lines)
        incomplete = lines[next(i for i, ln in enumerate(lines) if "INCOMPLETE" in ln) :]
        advice = " ".join(ln.strip() for ln in incomplete)
        assert "(the ring buffer was full; a larger --ring-size helps)" in advice, lines
        assert "(more than 32768 at once)" in advice, lines
        if width >= 60:
            assert lines[0].endswith(
                f"{CUT}: exit code 2, 123456 process(es) started in 3600.00s"
            ), lines
            assert "(pid 4194304): exit code 255" in lines[2] and lines[2].endswith(CUT)
            assert lines[1].endswith(" more") and lines[4].endswith(" more"), lines
    whole = summary_text(s).splitlines()
    assert whole[0] == f"make -j {'x' * 300}: exit code 2, 123456 process(es) started in 3600.00s"
    assert whole[1].count(" x") == 199 and CUT not in "\n".join(whole)
