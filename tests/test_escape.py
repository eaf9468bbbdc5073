"""Names and arguments in tables cannot drive the terminal nor reorder the line
(issue 13.12, 14).

printable() shows every character str.isprintable() rejects as an escape:
\\xNN below U+0080 (control characters: \\x1b), \\uNNNN or \\UNNNNNNNN above
(C1 codes, the bidi controls and marks: \\u202e, other invisible format
characters).  Its input is decode.text()'s (a backslash already doubled, a byte
that is not UTF-8 as \\xNN), so what a table shows maps back to the exact bytes.
Unit tests of the escape, then a real process whose name and arguments hold bidi
and control characters, read through a real loaded instance in each
human-readable mode (and exact in JSON)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from procmon_ctl.process.decode import text
from procmon_ctl.views.render import cmdline, printable, quote_arg

BIDI_CONTROLS = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]  # embeddings, overrides, isolates
BIDI_MARKS = [0x200E, 0x200F, 0x061C]  # LRM, RLM, ALM: invisible, they move neutral characters

_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def unescape(shown: str) -> str:
    """printable()'s inverse on text without backslashes of its own."""
    return _ESCAPE.sub(lambda m: chr(int(m[1][1:], 16)), shown)


def table_bytes(shown: str) -> bytes:
    """The bytes a table's text stands for, as a reader of the table would read
    it: \\\\ a backslash, \\xNN the byte NN, \\u and \\U a character."""
    out, pos = bytearray(), 0
    for m in _ESCAPE.finditer(shown):
        out += shown[pos : m.start()].encode()
        esc = m[1]
        if esc == "\\":
            out += b"\\"
        elif esc[0] == "x":
            out.append(int(esc[1:], 16))
        else:
            out += chr(int(esc[1:], 16)).encode()
        pos = m.end()
    return bytes(out + shown[pos:].encode())


@pytest.mark.parametrize("code", BIDI_CONTROLS + BIDI_MARKS, ids=lambda c: f"U+{c:04X}")
def test_bidi_controls_are_escaped(code):
    assert printable(f"a{chr(code)}b") == f"a\\u{code:04x}b"


def test_control_characters_keep_their_escape():
    """Below U+0080 \\xNN (the same byte as text()'s escape), C1 codes as \\u:
    text()'s \\x9b is the byte 0x9b, printable()'s \\u009b the character."""
    assert printable("\x1b[2J\nname\x07\x9b\x7f") == "\\x1b[2J\\x0aname\\x07\\u009b\\x7f"


def test_a_backslash_is_not_doubled_again():
    """text() doubled it already: a name with one backslash shows two, not four."""
    assert printable(text(b"a\\b")) == "a\\\\b"
    assert printable(text(b"\\x1b\x1b")) == "\\\\x1b\\x1b"


def test_other_invisible_characters_are_escaped():
    # zero-width space and joiner, BOM, line separator, no-break space, a tag character
    shown = "s\u200bs\u200dh\ufeffd\u2028\xa0\U000e0041"
    assert printable(shown) == "s\\u200bs\\u200dh\\ufeffd\\u2028\\u00a0\\U000e0041"


@pytest.mark.parametrize("name", ["bash", "kworker/u4:2", "café", "日本語", "🐍 py", "a b"])
def test_ordinary_names_are_unchanged(name):
    assert printable(name) == name


def test_every_code_point_is_printable_after_and_reads_back():
    """Exhaustive: all of Unicode but the backslash (lone surrogates included) in one
    string."""
    every = "".join(chr(c) for c in range(0x110000) if c != ord("\\"))
    shown = printable(every)
    assert shown.isprintable()
    assert unescape(shown) == every
    for code in BIDI_CONTROLS + BIDI_MARKS:
        assert chr(code) not in shown


@pytest.mark.parametrize(
    "raw",
    [
        b"\\x1b",
        b"\\\\x1b",
        b"\\u202e",
        b"x\\",
        b"\\\x1b",
        "\u202e\\u202e".encode(),
        b"\x9b",  # not UTF-8: text()'s \\x9b
        "\x9b".encode(),  # U+009B, a C1 control: printable()'s \\u009b
        b"caf\xe9 \\xe9 \xc3\xa9",
        b"\xff\\xff\\\\xff",
    ],
    ids=repr,
)
def test_backslashes_and_bytes_keep_it_reversible(raw):
    """A name that already looks like an escape, or holds bytes that are not UTF-8,
    reads back as its exact bytes, and no two byte strings show the same."""
    assert table_bytes(printable(text(raw))) == raw


def test_a_byte_and_a_character_show_differently():
    assert printable(text(b"\x9b")) == "\\x9b" != printable(text("\x9b".encode())) == "\\u009b"


@settings(database=None, max_examples=500)
@given(raw=st.binary(max_size=64))
@example(raw=b"\\\x1b\x80\\xe2\x80\xae")
def test_any_bytes_read_back_from_the_table(raw):
    shown = printable(text(raw))
    assert shown.isprintable() and table_bytes(shown) == raw
    # As a word of a command line: one word, that shlex.split() gives back.
    assert [table_bytes(w) for w in shlex.split(quote_arg(text(raw)))] == [raw]


def test_arguments_are_escaped_like_names():
    args = ["sh", "-c", "\x1b]0;title\x07", "evil\u202egpj.sh", "", "a b"]
    assert cmdline(args) == "sh -c '\\x1b]0;title\\x07' 'evil\\u202egpj.sh' '' 'a b'"
    assert cmdline(args).isprintable() and cmdline(args, True).endswith(" ...")


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
    os.execv(sys.argv[2], [sys.argv[2], *ARGS])
os.waitpid(execer, 0)
plain = os.fork()
if plain == 0:
    os._exit(0)
os.waitpid(plain, 0)
print(execer, plain)
"""
# The arguments the execer passes: a terminal title and a reordering, an empty one.
ARGS = ["\x1b]0;owned\x07", "a\u202eb c", ""]
SPOOF = f"ARGS = {ARGS!r}" + SPOOF
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
    flags = [] if mode == "table" else [f"--{mode}"]
    with cli.reading("events", *flags) as reading:
        execer, plain, link = run_spoof(tmp_path)
    if mode == "table":

        def done(lines):
            rows = {int(ln.split()[0]): ln for ln in lines if ln[:1].isdigit()}
            return rows.get(execer, "").endswith(
                f" evil\\u202egpj.sh {quote_arg(link)} '\\x1b]0;owned\\x07' 'a\\u202eb c' ''"
            ) and rows.get(plain, "").endswith(" x\\u2067cba\\u2069\\u200f\\u061c")
    else:

        def done(lines):
            text = "\n".join(lines)
            return (
                "evil\\u202egpj.sh" in text
                and printable(link) in text
                and " '\\x1b]0;owned\\x07' 'a\\u202eb c' ''" in text
                and "x\\u2067cba\\u2069\\u200f\\u061c" in text
            )

    lines = reading.lines()
    shown = "\n".join(lines)
    assert done(lines), f"escaped names missing from `events {mode}`:\n{shown}\n{reading.stderr}"
    assert not [ch for ch in BIDI if ch in shown], "a bidi control reached the terminal raw"
    assert "\x1b" not in shown and "\x07" not in shown
    if mode == "wide":
        assert printable(link) in shown and link not in shown
    if mode == "raw":
        exits = [ln for ln in lines if ln.startswith("exit") and f" {plain} " in ln]
        assert exits and "x\\u2067cba\\u2069\\u200f\\u061c" in exits[0]
    # What is shown reads back to the exact name.
    assert unescape(printable(SET_NAME)) == SET_NAME


def test_json_keeps_bidi_names_exact(attached, tmp_path):
    with attached.reading("events", "--json") as reading:
        execer, plain, link = run_spoof(tmp_path)
    events = reading.json_lines()
    execs = [e for e in events if e["type"] == "exec" and e["pid"] == execer]
    assert execs and execs[0]["comm"] == EXEC_NAME and execs[0]["filename"] == link
    assert execs[0]["argv"] == [link, *ARGS] and execs[0]["argc"] == 4
    assert any(e["comm"] == SET_NAME for e in events if e["pid"] == plain)
