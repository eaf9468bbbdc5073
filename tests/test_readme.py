"""The README's walkthrough, run word for word (issue 16).

Every ```console block of README.md is run, in order, as a newcomer would type it:
each `$ ` line in an 80-column terminal (tmux), in one shell per block, as root, with
`procmon-ctl` on PATH.  What it prints (stdout and stderr, as the terminal shows them)
must be the block's text.  The variables:

- **pids**: a number of 1000 or more in the README may stand for another number in the
  run, the same one each time it appears in a block (a one-to-one map per block);
- **the pin dir** is not one: the walkthrough runs in a mount namespace of its own with
  a fresh bpffs on /sys/fs/bpf (and a private /run/procmon-ctl), so the README's default
  instance /sys/fs/bpf/procmon is this test's own, and goes with the namespace;
- runs of spaces compare equal (a table's padding follows the width of a pid);
- text cut with `…` may be cut a few characters sooner or later where a pid before it
  is wider or narrower than the README's (a summary's `(pid 27418)`), or a time or
  duration is (below);
- where the command's own comment says so, and only there: `others trimmed` (the
  block shows some of the lines, in order: other processes of the machine print
  between them), `times vary` (times of day and durations, and the peak memory an
  exit row shows beside them; the places after the first of a ranking by those
  measures, `run`'s `most cpu:` and `most memory:`, whose close runners-up swap with
  the machine's timing; and since a longer
  duration leaves less room on the line, text cut with `…` may be cut a few
  characters sooner or later), `counts vary` (every number: counters of the whole
  machine).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT
from tmux80 import run_in_tmux

README = ROOT / "README.md"
PID_MIN = 1000
MARK = "@@procmon-readme-step@@"
TIME_OF_DAY = re.compile(r"\b\d\d:\d\d:\d\d\.\d{3}\b")
DURATION = re.compile(r"\b\d+(?:\.\d+)?(?:ns|µs|us|ms|s)\b")
# The peak memory of an exit row of --wide, after its CPU time.
# A size after a duration (--wide's exit rows) or in run's summary's memory lines.
PEAK = re.compile(r"(?:(?<=<duration> )|(?<=peak memory: )|(?<=\) ))\d+(?:\.\d+)?[KMG]\b")
# A ranking of run's summary: its first place, and how many more there are.
RANKING = re.compile(r"^(\s*most (?:cpu|memory): [^,]*), .*?(, … \d+ more)?$")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
NUMBER = re.compile(r"\d+")
UNIT = re.compile(r"\d+|.", re.S)


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)

    @property
    def comment(self) -> str:
        return self.command.partition(" #")[2]


def console_blocks(text: str) -> list[list[Step]]:
    """Each ```console block as its steps: a `$ ` line and the lines under it."""
    blocks: list[list[Step]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = line == "```console"
            if inside:
                blocks.append([])
            continue
        if not inside:
            continue
        if line.startswith("$ "):
            blocks[-1].append(Step(line[2:]))
        else:
            assert blocks[-1], f"README: output before any command in a console block: {line}"
            blocks[-1][-1].expected.append(line)
    return blocks


def script_of(steps: list[Step]) -> str:
    """One shell for the block; a mark line before each step's output, and each
    step's status kept for the next (`echo $?`)."""
    lines = ["__rc=0"]
    for step in steps:
        lines.append(f"printf '%s\\n' {MARK!r}; (exit $__rc)")
        lines.append(step.command)
        lines.append("__rc=$?")
    return "\n".join(lines) + "\n"


def masked(line: str, comment: str) -> str:
    if "times vary" in comment:
        line = RFC3339.sub("<time>", line)
        line = TIME_OF_DAY.sub("<time>", line)
        line = DURATION.sub("<duration>", line)
        line = PEAK.sub("<size>", line)
        line = RANKING.sub(r"\1, <ranked>\2", line)
    if "counts vary" in comment:
        line = NUMBER.sub("<n>", line)
    return " ".join(line.split())


class PidMap:
    """README pid -> the run's number, one to one, for one block."""

    def __init__(self) -> None:
        self.to_run: dict[str, str] = {}
        self.from_run: dict[str, str] = {}

    def matches(self, expected: str, actual: str) -> bool:
        """Whether the lines are equal with pids mapped; records the new pairs only
        when they are."""
        exp_parts = NUMBER.split(expected)
        act_parts = NUMBER.split(actual)
        if exp_parts != act_parts:
            return False
        new: dict[str, str] = {}
        for e, a in zip(NUMBER.findall(expected), NUMBER.findall(actual), strict=True):
            if e == a and e not in self.to_run and a not in self.from_run:
                continue
            if int(e) < PID_MIN:
                return False
            known = self.to_run.get(e, new.get(e))
            if known is not None:
                if known != a:
                    return False
                continue
            if a in self.from_run or a in new.values():
                return False
            new[e] = a
        self.to_run.update(new)
        self.from_run.update({a: e for e, a in new.items()})
        return True


def cut_alike(expected: str, actual: str) -> tuple[str, str]:
    """Text cut with … to fit the terminal may end a little sooner or later when a
    time, a duration or a pid before it is wider or narrower in the run than in the
    README: each piece before a … is compared on the length both have, a number
    counting as one character (so a pid's width does not move the cut)."""
    exp_pieces, act_pieces = expected.split("…"), actual.split("…")
    if len(exp_pieces) == 1 or len(exp_pieces) != len(act_pieces):
        return expected, actual
    for n in range(len(exp_pieces) - 1):
        exp_units, act_units = UNIT.findall(exp_pieces[n]), UNIT.findall(act_pieces[n])
        common = min(len(exp_units), len(act_units))
        exp_pieces[n], act_pieces[n] = "".join(exp_units[:common]), "".join(act_units[:common])
    return "…".join(exp_pieces), "…".join(act_pieces)


def check_step(step: Step, actual: list[str], pids: PidMap) -> str | None:
    """None when the output is the README's; else what differs."""
    comment = step.comment
    want = [masked(line, comment) for line in step.expected]
    got = [masked(line, comment) for line in actual]

    def same(expected: str, printed: str) -> bool:
        expected, printed = cut_alike(expected, printed)
        return pids.matches(expected, printed)

    if "others trimmed" in comment:
        at = 0
        for line in want:
            while at < len(got) and not same(line, got[at]):
                at += 1
            if at == len(got):
                return f"not found in order: {line!r}"
            at += 1
        return None
    if len(want) != len(got):
        return f"{len(got)} lines, the README shows {len(want)}"
    for w, g in zip(want, got, strict=True):
        if not same(w, g):
            return f"README: {w!r}\n   run: {g!r}"
    return None


@pytest.fixture
def private_bpffs(bpf, tmp_path):
    """A process in a mount namespace of its own, with a fresh bpffs on /sys/fs/bpf
    and a private /run/procmon-ctl; yields its pid (for nsenter).  Killing it ends the
    namespace, and with it whatever was pinned there."""
    Path("/run/procmon-ctl").mkdir(mode=0o700, exist_ok=True)
    holder = subprocess.Popen(
        [
            "unshare", "-m", "--propagation", "private", "sh", "-euc",
            "mount -t bpf -o mode=700 bpf /sys/fs/bpf; "
            "mount -t tmpfs -o mode=700 tmpfs /run/procmon-ctl; "
            "echo ready; exec sleep 86400",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "ready\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_the_readme_walkthrough_is_what_happens(private_bpffs, tmp_path):
    blocks = console_blocks(README.read_text())
    assert len(blocks) >= 8, "the walkthrough's blocks are gone from README.md"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # What `make install` puts on PATH: the console script, named procmon-ctl.
    (bin_dir / "procmon-ctl").symlink_to(ROOT / ".venv" / "bin" / "procmon-ctl")
    env = {
        "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }
    home = tmp_path / "work"
    home.mkdir()
    failures = []
    for number, steps in enumerate(blocks, 1):
        script = tmp_path / f"block{number}.sh"
        script.write_text(script_of(steps))
        _code, lines = run_in_tmux(
            ["nsenter", "-t", str(private_bpffs), "-m", "--", "bash", str(script)],
            env,
            columns=80,
            cwd=home,
        )
        outputs = split_outputs(lines)
        assert len(outputs) == len(steps), f"block {number}: {lines}"
        pids = PidMap()
        for step, actual in zip(steps, outputs, strict=True):
            problem = check_step(step, actual, pids)
            if problem:
                failures.append(
                    f"block {number}, `{step.command}`: {problem}\n  printed:\n    "
                    + "\n    ".join(actual)
                )
    assert not failures, "\n".join(failures)


def split_outputs(lines: list[str]) -> list[list[str]]:
    outputs: list[list[str]] = []
    for line in lines:
        if line == MARK:
            outputs.append([])
        elif outputs:
            outputs[-1].append(line)
    return outputs


def test_the_comparison_can_fail():
    """The rules above, on made-up text: a pid may change, a word may not; one README
    pid stands for one number; trimmed blocks keep their order."""
    step = Step("procmon-ctl events", ["27404    27389    bash", "27405    27404    ls"])
    assert check_step(step, ["5123     5100     bash", "5124     5123     ls"], PidMap()) is None
    assert check_step(step, ["5123     5100     bash", "5124     5100     ls"], PidMap())
    assert check_step(step, ["5123     5100     bash", "5124     5123     ps"], PidMap())
    assert check_step(step, ["5123     5100     bash"], PidMap())
    small = Step("procmon-ctl stats", ["dropped 0"])
    assert check_step(small, ["dropped 3"], PidMap())
    counts = Step("procmon-ctl stats    # counts vary", ["processes 21"])
    assert check_step(counts, ["processes 35"], PidMap()) is None
    trimmed = Step("procmon-ctl events   # others trimmed", ["a 27404", "b 27405"])
    assert check_step(trimmed, ["x 1", "a 9000", "y", "b 9001"], PidMap()) is None
    assert check_step(trimmed, ["b 9001", "a 9000"], PidMap())
    times = Step("x   # times vary", ["22:15:01.123 ls exited 0 2.2ms"])
    assert check_step(times, ["23:00:00.000 ls exited 0 17.5ms"], PidMap()) is None
    assert check_step(times, ["23:00:00.000 ls exited 1 17.5ms"], PidMap())
    cut = Step("x   # times vary", ["sh -c 'ls /tmp; ps au…: exit code 1, in 5.0ms"])
    assert check_step(cut, ["sh -c 'ls /tmp; p…: exit code 1, in 125.0ms"], PidMap()) is None
    assert check_step(cut, ["sh -c 'ls /tmp; p…: exit code 2, in 125.0ms"], PidMap())
    assert check_step(cut, ["sh -c 'ls /var; p…: exit code 1, in 125.0ms"], PidMap())
    # A fresh machine's pids are shorter than the README's: the cut moves with them.
    wide = Step("x", ["failed: sh (pid 27418): exit 1: sh -c 'ls /tmp | head…"])
    ok = "failed: sh (pid 4432): exit 1: sh -c 'ls /tmp | head …"
    assert check_step(wide, [ok], PidMap()) is None
    assert check_step(wide, [ok.replace("/tmp", "/var")], PidMap())
    rank = Step(
        "x   # times vary", ["most cpu: ps (pid 27420) 7.4ms, sh (pid 27418) 1.5ms, … 3 more"]
    )
    ok = "most cpu: ps (pid 9000) 7.5ms, grep (pid 9003) 1.6ms, … 3 more"
    assert check_step(rank, [ok], PidMap()) is None
    assert check_step(rank, [ok.replace("ps", "sh")], PidMap())
    assert check_step(rank, [ok.replace("3 more", "4 more")], PidMap())
    row = Step("x   # times vary", ["27418   27417   sh   sh -c 'ls /tmp >/dev/null; head -3 >/d…"])
    ok = "4432    4431    sh   sh -c 'ls /tmp >/dev/null; head -3 >/d…"
    assert check_step(row, [ok], PidMap()) is None
    assert check_step(row, [ok.replace("4431", "4432")], PidMap())
    assert check_step(row, [ok.replace("head", "tail")], PidMap())


def test_tmux_and_nsenter_are_there():
    """The walkthrough needs both: without them it would not run at all."""
    assert shutil.which("tmux") and shutil.which("nsenter") and shutil.which("unshare")
