"""`stats` and `status` as a person and a shipper see them: compact JSON lines with
their time, a warning when the counters cannot move, no option that silently does
nothing, and text that fits an 80-column terminal whatever the pin dir."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import CLI, Cli, lines_until
from records import utc_text
from tmux80 import run_in_tmux

from procmon_ctl.commands import stats
from procmon_ctl.instance.pins import MAPS, PROGRAMS
from procmon_ctl.process import clock
from procmon_ctl.views import stats as stats_lines
from procmon_ctl.views.render import CUT
from procmon_ctl.views.stats_schema import ProgramStatus, Stats, Status

STATS_KEYS = list(Stats.model_fields)
RATE_KEYS = [f"{f}_per_s" for f in stats_lines.RATE_FIELDS]
WATCH_KEYS = ["time", "interval_s", *RATE_KEYS, *STATS_KEYS]
LONG = "/sys/fs/bpf/" + "a-pin-dir-named-at-length-" + "x" * 34  # 72 characters


def compact(line: str) -> dict:
    """The object of a line written as `events --json` writes (no spaces)."""
    obj = json.loads(line)
    assert json.dumps(obj, separators=(",", ":")) == line
    return obj


def unix_ns(text: str) -> int:
    at = clock.parse_rfc3339(text)
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000


def a_status(pin_dir: str, attached: set[str]) -> Status:
    return Status(
        pin_dir=pin_dir,
        loaded=True,
        programs=[
            ProgramStatus(
                event=e,
                pin=f"{pin_dir}/progs/handle_{e}",
                id=100 + i,
                attached=e in attached,
                link_id=200 + i if e in attached else None,
                link_pin=f"{pin_dir}/links/{e}" if e in attached else None,
            )
            for i, e in enumerate(PROGRAMS)
        ],
        maps={name: 300 + i for i, name in enumerate(MAPS)},
        ring_size=1 << 22,
    )


def assert_aligned(lines: list[str], header: str) -> None:
    """Each column of the table under `header` starts where its heading does."""
    starts = [i for i in range(1, len(header)) if header[i] != " " and header[i - 1] == " "]
    assert lines, header
    for line in lines:
        for at in starts:
            assert line[at - 2 : at] == "  " and line[at] != " ", (header, line)


def status_tables(lines: list[str]) -> tuple[list[str], list[str]]:
    """(program rows, map rows) of `status` text, each with its heading."""
    programs_at = next(i for i, x in enumerate(lines) if x.startswith("EVENT "))
    maps_at = next(i for i, x in enumerate(lines) if x.startswith("MAP "))
    ring_at = next(i for i, x in enumerate(lines) if x.startswith("ring buffer: "))
    return lines[programs_at:maps_at], lines[maps_at:ring_at]


# --- the text and the lines, from models ---------------------------------------------


def test_status_text_names_the_pin_dir_once_and_aligns_its_tables():
    s = a_status("/sys/fs/bpf/procmon", {"fork", "exit"})
    text = stats_lines.status_text(s)
    lines = text.splitlines()
    assert lines[0] == "pin dir: /sys/fs/bpf/procmon (loaded)"
    assert text.count("/sys/fs/bpf/procmon") == 1, "pins are relative to it"
    assert not any(str(n) in text for n in (100, 201, 300)), "ids only in --json"
    programs, maps = status_tables(lines)
    assert programs == [
        "EVENT   STATE         PROGRAM              LINK",
        "fork    attached      progs/handle_fork    links/fork",
        "exec    not attached  progs/handle_exec    -",
        "exit    attached      progs/handle_exit    links/exit",
        "cgroup  not attached  progs/handle_cgroup  -",
    ]
    assert_aligned(maps[1:], maps[0])
    assert [x.split()[0] for x in maps[1:]] == list(MAPS)
    assert lines[-2:] == ["ring buffer: 4 MiB (4194304 bytes) for each reader", "readers: none"]


def test_a_long_pin_dir_is_cut_on_a_terminal_and_whole_when_piped():
    s = a_status(LONG + "/deeper/still", set(PROGRAMS))
    cut = stats_lines.status_text(s, 80).splitlines()
    assert max(map(len, cut)) <= 80
    assert cut[0].endswith(f"{CUT} (loaded)") and cut[0].startswith("pin dir: /sys/fs/bpf/a-pin")
    whole = stats_lines.status_text(s, None).splitlines()
    assert whole[0] == f"pin dir: {LONG}/deeper/still (loaded)"
    assert whole[1:] == cut[1:], "only the pin dir is cut: the pins are relative to it"


def test_stats_json_has_its_time_first():
    s = Stats(**{k: i for i, k in enumerate(STATS_KEYS)})
    obj = compact(stats_lines.stats_json(s, "2026-11-29T22:15:01.123456Z"))
    assert list(obj) == ["time", *STATS_KEYS]
    assert obj["time"] == "2026-11-29T22:15:01.123456Z" and obj["execs"] == 3
    with_readers = compact(stats_lines.stats_json(s, "2026-11-29T22:15:01.123456Z", []))
    assert list(with_readers) == ["time", *STATS_KEYS, "readers"]


def test_watch_gives_rates_over_the_interval_measured(monkeypatch):
    readings = iter([0, 10, 40])
    now = [100.0]

    def read(layout) -> Stats:
        n = next(readings)
        return Stats(**{k: n for k in STATS_KEYS})

    def sleep(seconds: float) -> None:
        now[0] += seconds * 2  # a slow machine: the interval is what was measured

    monkeypatch.setattr(stats, "read_stats", read)
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    samples = stats.watch(None, 0.5, sleep)
    first, second = next(samples), next(samples)
    assert first.seconds == second.seconds == 1.0
    assert first.rates == dict.fromkeys(stats_lines.RATE_FIELDS, 10.0)
    assert second.rates == dict.fromkeys(stats_lines.RATE_FIELDS, 30.0)
    obj = compact(stats_lines.rates_json(second))
    assert list(obj) == WATCH_KEYS
    assert obj["interval_s"] == 1.0 and obj["execs_per_s"] == 30.0 and obj["execs"] == 40
    assert obj["time"] == utc_text(second.unix_ns)
    header, row = stats_lines.rates_header(), stats_lines.rates_text(second)
    assert len(header) == len(row) <= 80
    assert row.startswith(time.strftime("%H:%M:%S", time.localtime(second.unix_ns // 10**9)))


# --- the commands, on the kernel -------------------------------------------------------


@pytest.mark.parametrize("argv", [["--interval", "0.5"], ["--json", "--interval", "2"]])
def test_interval_without_watch_is_refused(cli, argv):
    r = cli("stats", *argv, check=False)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "procmon-ctl: error: --interval applies only with --watch: add --watch\n"


def warnings(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    assert all(x.startswith("procmon-ctl: warning: ") for x in lines), stderr
    return lines


def test_stats_warns_when_nothing_is_attached(cli):
    cli("load")
    for argv in (["stats"], ["stats", "--json"]):
        r = cli(*argv)
        (warning,) = warnings(r.stderr)
        assert f"nothing attached at {cli.pin_dir}: the counters will not move" in warning
        assert "procmon-ctl attach`)" in warning
    assert compact(r.stdout.strip())["processes"] == 0
    watcher = cli.popen(
        "stats", "--watch", "--interval", "0.1", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    lines, err = lines_until(watcher, lambda ls: len(ls) >= 2)
    assert watcher.returncode == 0, err
    assert lines[0].split()[:2] == ["TIME", "processes/s"]
    (warning,) = warnings(err)
    assert "nothing attached" in warning


def test_stats_warns_of_the_programs_not_attached(cli):
    """Part attached (`attach --events fork,exit`): the counters of the others stay
    still, and the warning says which."""
    cli("load")
    cli("attach", "--events", "fork,exit")
    (warning,) = warnings(cli("stats").stderr)
    assert f"exec not attached at {cli.pin_dir}: execs will not be counted" in warning
    cli("attach")
    assert cli("stats", "--json").stderr == ""


def test_stats_watch_json_is_one_compact_line_per_interval_with_its_time(attached):
    before = time.time_ns()
    watcher = attached.popen(
        "stats", "--watch", "--json", "--interval", "0.2", stdout=subprocess.PIPE
    )
    lines, _ = lines_until(watcher, lambda ls: len(ls) >= 2)
    after = time.time_ns()
    assert watcher.returncode == 0
    objs = [compact(x) for x in lines]
    assert len(objs) >= 2
    for obj in objs:
        assert list(obj) == WATCH_KEYS
        assert before <= unix_ns(obj["time"]) <= after
        assert obj["interval_s"] >= 0.2
    assert unix_ns(objs[1]["time"]) - unix_ns(objs[0]["time"]) >= 150_000_000
    assert objs[1]["processes"] >= objs[0]["processes"]


# --- at 80 columns -----------------------------------------------------------------------


@pytest.fixture
def long_cli(pin_dir) -> Cli:
    """An instance whose pin dir is longer than a terminal line (below the test's
    own, so the pin_dir fixture removes it)."""
    cli = Cli(pin_dir / ("a-long-instance-name-" + "y" * 40))
    assert len(str(cli.pin_dir)) > 80
    cli("load")
    cli("attach")
    return cli


def test_status_and_stats_fit_80_columns(long_cli):
    code, lines = run_in_tmux([*CLI, "status"], long_cli.env)
    assert code == 0, lines
    assert max(map(len, lines)) <= 80, lines
    assert lines[0].startswith("pin dir: /sys/fs/bpf/procmon-test-")
    assert lines[0].endswith(f"{CUT} (loaded)")
    programs, maps = status_tables(lines)
    assert_aligned(programs[1:], programs[0])
    assert_aligned(maps[1:], maps[0])
    assert len(programs) == 1 + len(PROGRAMS) and len(maps) == 1 + len(MAPS)

    piped = long_cli("status").stdout.splitlines()
    assert piped[0] == f"pin dir: {long_cli.pin_dir} (loaded)"
    assert piped[1:] == lines[1:]

    code, lines = run_in_tmux([*CLI, "stats"], long_cli.env)
    assert code == 0, lines
    assert [x.split()[0] for x in lines] == STATS_KEYS
    assert max(map(len, lines)) <= 80
    assert_aligned(lines, lines[0])

    # --watch until interrupted (SIGINT: exit 0), long enough for a few lines.
    watch = ["timeout", "--preserve-status", "-s", "INT", "1.5", *CLI, "stats", "--watch"]
    code, lines = run_in_tmux([*watch, "--interval", "0.2"], long_cli.env)
    assert code == 0, lines
    assert len(lines) >= 2 and max(map(len, lines)) <= 80, lines
    header, rows = lines[0], lines[1:]
    for row in rows:  # TIME, then the figures right-aligned under their headings
        assert time.strptime(row[:8], "%H:%M:%S")
        assert word_ends(row)[1:] == word_ends(header)[1:], (header, row)


def word_ends(line: str) -> list[int]:
    return [i + 1 for i, ch in enumerate(line) if ch != " " and line[i + 1 : i + 2] in (" ", "")]
