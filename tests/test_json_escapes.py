"""JSON lines are safe to print and to split (issue 25.9), and the records of a
cgroup with a long path, up to PATH_MAX, are the C writer's (issue 25.10).

JSON lets DEL, the C1 controls (U+0085 is a line break to str.splitlines(),
U+009B a CSI to a terminal), the bidi controls (they reorder the rest of a
terminal's line) and U+2028/U+2029 (line breaks to str.splitlines()) stand raw
in a string.  Both writers of `events --json` (native/json_lines.c and
json_lines.py) write them as \\uNNNN: byte for byte the same lines, each one line
to str.splitlines(), that json.loads() and decode.unescape() turn back into the
exact bytes.  Unit tests on a ring laid out in memory, then real processes
named so, read from a real instance by each writer and by `run --json`.

A cgroup's fragment (its path, container and pod) is held in the C writer's
table when it fits PM_CGROUP_JSON_MAX, which takes a path of PATH_MAX bytes
escaped; records of a cgroup the table does not hold come back to Python one by
one (stop FOREIGN): past the old limit of 1,024 bytes that made every record of
the cgroup cost 10 times more.  The C writer needs the room of a line's own
fragment only, so a batch holds as many lines as fit.  No timing here: the
figures are scripts/reader_cost.py --cgroup-paths's."""

from __future__ import annotations

import ctypes
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from records import (
    EXEC,
    EXIT,
    FORK,
    NOW_NS,
    LossesInMemory,
    argv_area,
    fix_clock,
    record,
    ring_bytes,
)
from records import cgroup_json as base_cgroup_json
from test_json_native import PAGE, FakeRing, follow_native, python_lines

from procmon_ctl.kernel.abi import PmCgroupLimits, PmStop
from procmon_ctl.process import decode
from procmon_ctl.process.cgroups import CgroupNames, _shown
from procmon_ctl.process.decode import unescape
from procmon_ctl.process.lineage import Process
from procmon_ctl.stream import follow as stream
from procmon_ctl.stream.sink import sink_for
from procmon_ctl.views import events, json_lines, json_native
from procmon_ctl.views.lineage import with_lineage

# Every character the lines must not hold raw.
UNSAFE = [
    "\x7f",  # DEL
    *map(chr, range(0x80, 0xA0)),  # C1 controls
    "\u061c",  # ALM
    "\u200e",  # LRM
    "\u200f",  # RLM
    *map(chr, range(0x202A, 0x202F)),  # LRE, RLE, PDF, LRO, RLO
    *map(chr, range(0x2066, 0x206A)),  # LRI, RLI, FSI, PDI
    "\u2028",  # LINE SEPARATOR
    "\u2029",  # PARAGRAPH SEPARATOR
]
UNSAFE_SET = frozenset(UNSAFE)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    fix_clock(monkeypatch)


def escaped(ch: str) -> str:
    return f"\\u{ord(ch):04x}"


def split_safely(text: str) -> list[str]:
    """The lines of a writer's output, split at its newlines only; each must be
    one line to str.splitlines() too."""
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert text.splitlines() == lines
    assert all(line.splitlines() == [line] for line in lines)
    return lines


def assert_exact(line: dict, comm: bytes, filename: bytes | None, args: list[bytes] | None):
    """What the README documents gives the bytes back: json.loads, then unescape."""
    assert unescape(line["comm"]) == comm
    if filename is not None:
        assert unescape(line["filename"]) == filename
    if args is not None:
        assert [unescape(a) for a in line["argv"]] == args


def records_with(name: bytes, args: list[bytes]) -> list[bytes]:
    return [
        record(FORK, pid=5, comm=name),
        record(EXEC, pid=5, comm=name, filename=b"/tmp/" + name, argv=argv_area(*args)),
        record(EXIT, pid=5, comm=name, code=1),
    ]


def python_text(records: list[bytes], cgroup_json) -> str:
    """The Python writer's lines, with `cgroup_json` for the records' cgroups."""
    buf, offsets = ring_bytes(records)
    lines: list[str] = []
    json_lines.json_lines(buf, offsets, lines, 0, cgroup_json, NOW_NS, execs=json_lines.ExecTexts())
    return "".join(line + "\n" for line in lines)


@pytest.mark.parametrize("ch", UNSAFE, ids=lambda c: f"U+{ord(c):04X}")
def test_each_character_comes_out_escaped_and_the_same_from_both_writers(native_lib, ch):
    raw = ch.encode()
    name = b"n" + raw + b"x"
    args = [raw, b"a" + raw + b"b", raw * 2, b""]
    records = records_with(name, args)
    ring = FakeRing()
    for r in records:
        ring.add(r)
    c_text, n = follow_native(ring, native_lib)
    py_text = python_lines(records)
    assert (c_text, n) == (py_text, 3)
    assert ch not in py_text
    # comm three times, the filename and the four arguments' four twice (the exec
    # line, and the exit line that says what the process ran).
    assert py_text.count(escaped(ch)) == 3 + 2 * (1 + 4)
    lines = split_safely(py_text)
    assert len(lines) == 3
    for line in map(json.loads, lines):
        assert_exact(line, name, None, None)
    assert_exact(json.loads(lines[1]), name, b"/tmp/" + name, args)
    assert_exact(json.loads(lines[2]), name, b"/tmp/" + name, args)
    # DEL is ASCII: the C writer writes it itself; the others come back to Python.
    batch = ring.formatter(native_lib).format(0, 100, 0)
    assert batch.stop == (PmStop.CAUGHT_UP if ch.isascii() else PmStop.FOREIGN)
    if ch.isascii():
        assert (batch.records, batch.text) == (3, py_text)


def test_every_character_in_one_line(native_lib):
    """All of them in one command line, next to what must stay as it is: other
    non-ASCII text, a byte that is not UTF-8 (\\xNN), and escapes spelt out."""
    everything = "".join(UNSAFE).encode()
    args = [everything, "café 日本 🐍".encode(), b"\x85\x9b\xe2\x80", b"\\u202e \\x85", b"\\"]
    records = records_with("\u202e\u2028\x85".encode(), args)
    ring = FakeRing()
    for r in records:
        ring.add(r)
    text = python_lines(records)
    assert follow_native(ring, native_lib) == (text, 3)
    assert not UNSAFE_SET & set(text)
    assert "café 日本 🐍" in text  # printable text is not escaped
    line = json.loads(split_safely(text)[1])
    assert_exact(line, "\u202e\u2028\x85".encode(), b"/tmp/" + "\u202e\u2028\x85".encode(), args)
    # A byte that is not UTF-8 and the character of the same number differ.
    assert line["argv"][2] == "\\x85\\x9b\\xe2\\x80"
    assert line["argv"][0][:2] == "\x7f\x80"


SNIPPETS = st.one_of(
    st.sampled_from([c.encode() for c in UNSAFE]),
    st.binary(max_size=6),
    st.sampled_from([b"\\", b"\\u2028", b"\\x85", b'"', b"\n", "é".encode(), b"\xe2\x80"]),
)
TEXT = st.lists(SNIPPETS, max_size=6).map(b"".join)


@settings(
    database=None,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=TEXT.map(lambda b: b.replace(b"\0", b"")[:15]), args=st.lists(TEXT, max_size=4))
@example(name="\u2028".encode(), args=["\x85".encode(), b"\x85"])
def test_any_bytes_give_the_same_safe_and_exact_lines(native_lib, name, args):
    args = [a.replace(b"\0", b"") for a in args]
    records = records_with(name, args)
    ring = FakeRing(size=1 << 14)
    for r in records:
        ring.add(r)
    text = python_lines(records)
    assert follow_native(ring, native_lib) == (text, 3)
    assert not UNSAFE_SET & set(text)
    lines = split_safely(text)
    assert_exact(json.loads(lines[1]), name, b"/tmp/" + name, args)
    assert_exact(json.loads(lines[2]), name, b"/tmp/" + name, args)


def test_cgroup_paths_are_escaped_and_stay_the_c_writers(native_lib):
    """A cgroup's name is anyone's with a delegated subtree: its path is escaped
    too, and its now plain-ASCII fragment is held by the C writer's table."""
    path = "/user.slice/d\u202egpj\u2028\x85.scope"
    fragment = CgroupNames(path_of=lambda _: path).json_fragment(55)
    assert fragment.isascii() and "\\u202e" in fragment and "\\u2028" in fragment
    assert json.loads("{" + fragment + "}")["cgroup"] == path

    def cgroup_json(cgroup_id: int) -> str:
        return "," + fragment if cgroup_id == 55 else base_cgroup_json(cgroup_id)

    records = [record(FORK, pid=p, cgroup=55) for p in range(1, 5)]
    ring = FakeRing()
    for r in records:
        ring.add(r)
    fmt = ring.formatter(native_lib, cgroups=())
    fmt.cgroups.add(55, cgroup_json(55))
    batch = fmt.format(0, 100, 0)
    assert (batch.stop, batch.records) == (PmStop.CAUGHT_UP, 4)
    expected = python_text(records, cgroup_json)
    assert batch.text == expected and not UNSAFE_SET & set(expected)


def test_lineage_names_are_escaped():
    parent = Process(1, "ini\u202et", ("/sbin/init", "\u2028"), None)
    child = Process(2, "sh\x85", ("sh",), parent)
    line = with_lineage('{"type":"fork"}', child, True)
    assert not UNSAFE_SET & set(line) and line.splitlines() == [line]
    lineage = json.loads(line)["lineage"]
    assert lineage[0]["comm"] == "ini\u202et" and lineage[0]["argv"][1] == "\u2028"


def test_json_string_is_json_and_plain_text_unchanged():
    for s in ["", "bash", "café", "a\\b", 'q"', "\x1b[2J\n", "日本語 🐍"]:
        assert decode.json_string(s) == json.dumps(s, ensure_ascii=False)
    every = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    out = decode.json_string(every)
    assert json.loads(out) == every and not UNSAFE_SET & set(out)
    assert out.splitlines() == [out]


# -- a long cgroup path (issue 25.10) ---------------------------------------------

POD = "0f8e6b3c_5a1d_4e2f_9c7b_1d2e3f4a5b6c"
CONTAINER = "4f" * 32


def long_path(size: int = 2000) -> str:
    """A Kubernetes pod's container under a systemd slice, nested below a deep
    delegated subtree, `size` bytes in all."""
    tail = (
        "/kubepods.slice/kubepods-burstable.slice"
        f"/kubepods-burstable-pod{POD}.slice/cri-containerd-{CONTAINER}.scope"
    )
    head, level = "", 0
    while len(head) + len(tail) < size:
        level += 1
        head += f"/tenant-{level:02d}-" + "d" * 100 + ".slice"
    return "/" + (head + tail)[-(size - 1) :]


def follow_counting(ring: FakeRing, native_lib, cgroup_json, monkeypatch) -> tuple[str, int, int]:
    """`events --json`'s loop over the ring with the C writer, starting with no
    cgroup known: (the text, lines, records the Python writer formatted)."""
    in_python = []
    real = events.json_lines

    def counting(buf, offsets, *a, **kw):
        in_python.extend(offsets)
        return real(buf, offsets, *a, **kw)

    monkeypatch.setattr(events, "json_lines", counting)
    out = io.StringIO()
    writer = stream.BatchWriter(sink_for(out), ring, LossesInMemory(), None)
    fmt = json_native.JsonLineFormatter(native_lib, ring.addr + PAGE, ring.mask, ring.addr)
    stream._follow_in_place(ring, events.NativeJson(fmt, ring, True, cgroup_json), 0, writer)
    return out.getvalue(), writer.emitted, len(in_python)


def fragment_of(path: str, cgroup_id: int) -> str:
    return "," + CgroupNames(path_of=lambda _: path).json_fragment(cgroup_id)


def test_a_2000_byte_cgroup_path_is_formatted_in_c(native_lib, monkeypatch):
    path = long_path(2000)
    assert len(path) == 2000
    fragment = fragment_of(path, 77)
    assert len(fragment) > 1024  # the table's limit before issue 25.10
    assert f'"container_id":"{CONTAINER}"' in fragment and '"pod_uid":"' in fragment

    def cgroup_json(cgroup_id: int) -> str:
        return fragment if cgroup_id == 77 else base_cgroup_json(cgroup_id)

    types = (FORK, EXEC, EXIT)
    records = [
        record(types[p % 3], pid=p, cgroup=77, filename=b"/bin/true", argv=argv_area(b"true"))
        for p in range(1, 61)
    ]
    ring = FakeRing()
    for r in records:
        ring.add(r)
    expected = python_text(records, cgroup_json)
    # How the code decides: the table holds the cgroup's fragment, so the C writer
    # formats its records and hands none back.
    fmt = json_native.JsonLineFormatter(native_lib, ring.addr + PAGE, ring.mask, ring.addr)
    fmt.cgroups.add(77, cgroup_json(77))
    held = [s for s in fmt.cgroups._slots if s.id == 77]
    assert len(held) == 1 and ctypes.string_at(held[0].json, held[0].len) == fragment.encode()
    batch = fmt.format(0, 1000, 0)
    assert (batch.stop, batch.records, batch.text) == (PmStop.CAUGHT_UP, 60, expected)
    # The reading loop: the first record tells Python's side the cgroup; the other
    # 59 are C's.
    assert follow_counting(ring, native_lib, cgroup_json, monkeypatch) == (expected, 60, 1)


def test_the_longest_cgroup_path_is_formatted_in_c(native_lib, monkeypatch):
    """PATH_MAX bytes, none of them UTF-8 (5 bytes of JSON each): still the C
    writer's, and more of them than one output buffer holds end the C batches
    cleanly (stop FULL) with nothing lost or reordered."""
    raw = ((b"/" + b"\xff" * 255) * 16)[:4095]  # PATH_MAX with its NUL, NAME_MAX names
    fragment = fragment_of(_shown(raw), 78)
    assert len(fragment) > 5 * 4000

    def cgroup_json(cgroup_id: int) -> str:
        return fragment if cgroup_id == 78 else base_cgroup_json(cgroup_id)

    records = [record(FORK, pid=p, cgroup=78) for p in range(1, 121)]  # 2.5 MB of lines
    ring = FakeRing(size=1 << 16)
    for r in records:
        ring.add(r)
    expected = python_text(records, cgroup_json)
    fmt = json_native.JsonLineFormatter(native_lib, ring.addr + PAGE, ring.mask, ring.addr)
    fmt.cgroups.add(78, cgroup_json(78))
    batch = fmt.format(0, 1000, 0)
    assert batch.stop == PmStop.FULL and 0 < batch.records < 120
    assert batch.text == expected[: len(batch.text)]
    assert follow_counting(ring, native_lib, cgroup_json, monkeypatch) == (expected, 120, 1)


def test_a_fragment_longer_than_the_table_takes_is_still_written_whole(native_lib, monkeypatch):
    """Past PM_CGROUP_JSON_MAX the records are Python's, one by one: slower,
    never lost."""
    fragment = "," + '"cgroup":"' + "y" * PmCgroupLimits.PM_CGROUP_JSON_MAX + '"'

    def cgroup_json(cgroup_id: int) -> str:
        return fragment if cgroup_id == 79 else base_cgroup_json(cgroup_id)

    records = [record(FORK, pid=p, cgroup=79) for p in range(1, 6)]
    ring = FakeRing()
    for r in records:
        ring.add(r)
    expected = python_text(records, cgroup_json)
    assert follow_counting(ring, native_lib, cgroup_json, monkeypatch) == (expected, 5, 5)


# -- the real kernel ----------------------------------------------------------------

# Symlinks to /bin/true: what they are called is the comm of the process that execs
# them (15 bytes at most).  The first holds DEL only: the C writer's own.
DEL_NAME = "del\x7fname"
UNSAFE_NAME = "r\u202e\u2028\x85\x9b\u2066"
ARGS = ["".join(UNSAFE), "a\u2029b", "\x7f"]
# Forks and execs each link before "--" with the arguments after it; prints the pids.
SPAWN = r"""
import os, sys
cut = sys.argv.index("--")
pids = []
for link in sys.argv[1:cut]:
    pid = os.fork()
    if pid == 0:
        os.execv(link, [link, *sys.argv[cut + 1:]])
    os.waitpid(pid, 0)
    pids.append(pid)
print(*pids)
"""


def links(tmp_path: Path, *names: str) -> list[str]:
    made = []
    for name in names:
        assert len(name.encode()) <= 15
        link = tmp_path / name
        if not link.is_symlink():
            link.symlink_to("/bin/true")
        made.append(str(link))
    return made


def spawn_command(tmp_path: Path, *names: str) -> list[str]:
    return [sys.executable, "-c", SPAWN, *links(tmp_path, *names), "--", *ARGS]


def spawn(tmp_path: Path, *names: str) -> dict[int, str]:
    """Exec /bin/true through the links `names`, with ARGS: {pid: its link}."""
    command = spawn_command(tmp_path, *names)
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)
    return dict(zip(map(int, out.stdout.split()), links(tmp_path, *names), strict=True))


def check_exec_lines(lines: list[str], pids: dict[int, str]) -> None:
    """What a reader wrote: no character raw, each line one JSON object, and the
    exec through each link reads back to its exact bytes."""
    text = "\n".join(lines)
    assert not UNSAFE_SET & set(text), "a character reached the output raw"
    events = [json.loads(line) for line in lines if line.startswith("{")]
    execs = {e["pid"]: e for e in events if e["type"] == "exec" and e["pid"] in pids}
    assert execs.keys() == pids.keys(), f"execs missing:\n{text}"
    for pid, link in pids.items():
        args = [a.encode() for a in (link, *ARGS)]
        assert_exact(execs[pid], Path(link).name.encode(), link.encode(), args)
    for ch in ("\x7f", "\u202e", "\u2028", "\x85", "\x9b", "\u2029"):
        assert escaped(ch) in text


def test_names_from_the_kernel_come_out_escaped_by_the_c_writer(attached, tmp_path):
    """`events --json`: the C writer (DEL is its own; it hands the records with
    other characters to Python)."""
    assert json_native.library() is not None
    with attached.reading("events", "--json") as reading:
        pids = spawn(tmp_path, DEL_NAME, UNSAFE_NAME)
    check_exec_lines(reading.lines(), pids)


def test_names_from_the_kernel_come_out_escaped_by_the_python_writer(attached, tmp_path):
    """`events --json --uid 0`: a filter (one every process here passes), so the
    Python writer."""
    for name in (DEL_NAME, UNSAFE_NAME):
        with attached.reading("events", "--json", "--uid", "0") as reading:
            pids = spawn(tmp_path, name)
        check_exec_lines(reading.lines(), pids)


def test_run_json_rows_and_summary_come_out_escaped(cli, tmp_path):
    """`run --json`: its rows on stderr (the Python writer), and its summary, whose
    names and tree hold the same characters, the last line of stdout."""
    r = cli("run", "--json", "--", *spawn_command(tmp_path, DEL_NAME, UNSAFE_NAME))
    out = r.stdout.splitlines()
    pids = dict(zip(map(int, out[0].split()), links(tmp_path, DEL_NAME, UNSAFE_NAME), strict=True))
    check_exec_lines(r.stderr.splitlines(), pids)
    assert not UNSAFE_SET & set(r.stdout)
    assert len(out) == 2
    summary = json.loads(out[-1])
    assert summary["exit_code"] == 0
    names = {unescape(n) for n in summary["by_name"]}
    assert {DEL_NAME.encode(), UNSAFE_NAME.encode()} <= names
    children = {c["pid"]: c for c in summary["tree"]["children"]}
    for pid, link in pids.items():
        assert [unescape(a) for a in children[pid]["argv"]] == [a.encode() for a in (link, *ARGS)]
