"""Names in tables cannot drive the terminal nor reorder the line (issue 13.12).

printable() shows every character str.isprintable() rejects as a Python escape and
a backslash as two: control characters (\\x1b), the bidi controls and marks
(\\u202e), other invisible format characters.  Unit tests of the escape, then a
real process whose name holds bidi controls, read through a real loaded instance
in each human-readable mode (and exact in JSON)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import lines_until

from procmon_ctl.render import printable

BIDI_CONTROLS = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]  # embeddings, overrides, isolates
BIDI_MARKS = [0x200E, 0x200F, 0x061C]  # LRM, RLM, ALM: invisible, they move neutral characters

_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def unescape(text: str) -> str:
    """printable()'s inverse, as a reader of the table would apply it."""
    return _ESCAPE.sub(lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), text)


@pytest.mark.parametrize("code", BIDI_CONTROLS + BIDI_MARKS, ids=lambda c: f"U+{c:04X}")
def test_bidi_controls_are_escaped(code):
    assert printable(f"a{chr(code)}b") == f"a\\u{code:04x}b"


def test_control_characters_keep_their_escape():
    assert printable("\x1b[2J\nname\x07\x9b\x7f\\") == "\\x1b[2J\\x0aname\\x07\\x9b\\x7f\\\\"


def test_other_invisible_characters_are_escaped():
    # zero-width space and joiner, BOM, line separator, no-break space, a tag character
    text = "s\u200bs\u200dh\ufeffd\u2028\xa0\U000e0041"
    assert printable(text) == "s\\u200bs\\u200dh\\ufeffd\\u2028\\xa0\\U000e0041"


@pytest.mark.parametrize("name", ["bash", "kworker/u4:2", "café", "日本語", "🐍 py", "a b"])
def test_ordinary_names_are_unchanged(name):
    assert printable(name) == name


def test_every_code_point_is_printable_after_and_reads_back():
    """Exhaustive: all of Unicode (lone surrogates included) in one string."""
    text = "".join(map(chr, range(0x110000)))
    shown = printable(text)
    assert shown.isprintable()
    assert unescape(shown) == text
    for code in BIDI_CONTROLS + BIDI_MARKS:
        assert chr(code) not in shown


@pytest.mark.parametrize(
    "text", ["\\x1b", "\\\\x1b", "\\u202e", "x\\", "\\\x1b", "\u202e\\u202e"], ids=repr
)
def test_backslashes_keep_it_reversible(text):
    """A name that already looks like an escape reads back as itself."""
    assert unescape(printable(text)) == text


# Sets its name (15 bytes of UTF-8, comm's limit) to one with bidi controls, then
# starts two children: one execs a file whose name holds U+202E (its row takes that
# name and file), one exits without exec (its row keeps the inherited name).
SPOOF = r"""
import ctypes, os, sys
name = sys.argv[1].encode()
if ctypes.CDLL(None, use_errno=True).prctl(15, name, 0, 0, 0) != 0:  # PR_SET_NAME
    raise OSError(ctypes.get_errno(), "prctl")
assert open("/proc/self/comm", "rb").read() == name + b"\n"
execer = os.fork()
if execer == 0:
    os.execv(sys.argv[2], [sys.argv[2]])
os.waitpid(execer, 0)
plain = os.fork()
if plain == 0:
    os._exit(0)
os.waitpid(plain, 0)
print(execer, plain)
"""
# Shown left to right by a terminal, "evil\u202egpj.sh" reads "evilhs.jpg".
EXEC_NAME = "evil\u202egpj.sh"
SET_NAME = "x\u2067cba\u2069\u200f\u061c"
BIDI = [chr(c) for c in BIDI_CONTROLS + BIDI_MARKS]


def run_spoof(tmp_path) -> tuple[int, int, str]:
    link = tmp_path / EXEC_NAME
    if not link.exists():
        link.symlink_to("/bin/true")
    assert len(SET_NAME.encode()) == 15 and len(EXEC_NAME.encode()) <= 15
    out = subprocess.run(
        [sys.executable, "-c", SPOOF, SET_NAME, str(link)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    return int(out[0]), int(out[1]), str(link)


@pytest.mark.parametrize("mode", ["table", "wide", "raw"])
def test_bidi_names_from_the_kernel_are_escaped(attached, tmp_path, mode):
    cli = attached
    execer, plain, link = run_spoof(tmp_path)
    if mode == "table":

        def done(lines):
            rows = {int(ln.split()[0]): ln for ln in lines if ln[:1].isdigit()}
            return rows.get(execer, "").endswith(" evil\\u202egpj.sh") and rows.get(
                plain, ""
            ).endswith(" x\\u2067cba\\u2069\\u200f\\u061c")
    else:

        def done(lines):
            text = "\n".join(lines)
            return (
                "evil\\u202egpj.sh" in text
                and printable(link) in text
                and "x\\u2067cba\\u2069\\u200f\\u061c" in text
            )

    flags = [] if mode == "table" else [f"--{mode}"]
    proc = cli.popen(
        "events", *flags, "--duration", "30", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    lines, err = lines_until(proc, done, timeout=30)
    text = "\n".join(lines)
    assert done(lines), f"escaped names missing from `events {mode}`:\n{text}\n{err}"
    assert not [ch for ch in BIDI if ch in text], "a bidi control reached the terminal raw"
    if mode == "wide":
        assert printable(link) in text and link not in text
    if mode == "raw":
        exits = [ln for ln in lines if ln.startswith("exit") and f" {plain} " in ln]
        assert exits and "x\\u2067cba\\u2069\\u200f\\u061c" in exits[0]
    # What is shown reads back to the exact name.
    assert unescape(printable(SET_NAME)) == SET_NAME


def test_json_keeps_bidi_names_exact(attached, tmp_path):
    cli = attached
    execer, plain, link = run_spoof(tmp_path)

    def done(lines):
        return any(f'"pid":{plain},' in ln and '"type":"exit"' in ln for ln in lines)

    proc = cli.popen("events", "--json", "--duration", "30", stdout=subprocess.PIPE)
    lines, _ = lines_until(proc, done, timeout=30)
    events = [json.loads(ln) for ln in lines if ln.startswith("{")]
    execs = [e for e in events if e["type"] == "exec" and e["pid"] == execer]
    assert execs and execs[0]["comm"] == EXEC_NAME and execs[0]["filename"] == link
    assert any(e["comm"] == SET_NAME for e in events if e["pid"] == plain)
