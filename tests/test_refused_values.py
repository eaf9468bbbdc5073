"""Hostile values on the command line (issue 25, points 7 and 8), through the real CLI.

No value a user types ends in a traceback: a bad one is one line on stderr,
`procmon-ctl: error: ...`, with its documented exit code (procmon_ctl/errors.py),
and leaves nothing in the test's pin dir.  A filter no process can pass (a pid of
-1, a uid of (uid_t)-1, an empty name) is refused rather than silently matching
nothing.  Bytes of the command line that are not UTF-8 are named as names and
arguments are everywhere (decode.text(): \\xNN, a backslash doubled), in errors
and in `run`'s summary, which is still printed with CMD's status."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import pin_tree

from procmon_ctl.errors import EXIT_MISSING, EXIT_USAGE
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import ReaderSlots


def fs(raw: bytes) -> str:
    """Bytes for an argument: subprocess hands the exact bytes to the program."""
    return os.fsdecode(raw)


def assert_refused(r: subprocess.CompletedProcess, code: int, text: str) -> None:
    """One line on stderr, starting `procmon-ctl: error: `, containing `text`; the
    exit code `code`; no traceback; no lone surrogate (a byte that is not UTF-8
    shown as Python decodes it rather than as \\xNN)."""
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("procmon-ctl: error: "), lines[0]
    assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert "\\udc" not in lines[0], lines[0]
    assert r.returncode == code, f"exit {r.returncode}, expected {code}: {lines[0]}"


def assert_pin_dir_untouched(pin_dir: Path, before: set[str] | None = None) -> None:
    assert pin_tree(pin_dir) == (before or set()), f"{pin_dir} changed"


# --- 7. run --json with arguments that are not UTF-8 --------------------------------


def test_run_json_keeps_status_and_summary_with_non_utf8_argument(cli, pin_dir):
    arg = fs(b"caf\xe9\\")  # a byte that is not UTF-8, and a backslash
    r = cli("run", "--json", "--", "sh", "-c", "exit 3", "sh", arg, check=False)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode == 3, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["exit_code"] == 3
    assert summary["processes"] == 1
    # Named as the exec record names the same argument (decode.text()).
    assert summary["command"] == ["sh", "-c", "exit 3", "sh", "caf\\xe9\\\\"]
    rows = [json.loads(line) for line in r.stderr.splitlines()]
    execs = [row for row in rows if row["type"] == "exec"]
    assert execs and execs[-1]["argv"] == summary["command"]
    assert summary["tree"]["argv"] == summary["command"]
    assert_pin_dir_untouched(pin_dir)


def test_run_summary_names_non_utf8_argument_as_rows_do(cli):
    r = cli("run", "--", "sh", "-c", "exit 3", "sh", fs(b"caf\xe9\\"), check=False)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 3, r.stderr
    assert "\\udc" not in r.stderr, r.stderr
    shown = "sh -c 'exit 3' sh 'caf\\xe9\\\\'"
    row = [line for line in r.stderr.splitlines() if line.endswith(shown)]
    assert row, r.stderr
    assert any(line.startswith(f"{shown}: exit code 3, ") for line in r.stderr.splitlines()), (
        r.stderr
    )


# A CMD that leaves a child running under a name that is not UTF-8, so that the
# summary's `running` list reads that name from /proc.
RENAMED_CHILD = """
import ctypes, os, time
r, w = os.pipe()
if os.fork() == 0:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # not the test's pipes: it reads them to their end
        os.dup2(null, fd)
    ctypes.CDLL(None).prctl(15, b"x\\xffy", 0, 0, 0)  # PR_SET_NAME
    os.write(w, b"1")
    time.sleep(60)
    os._exit(0)
os.read(r, 1)
"""


def test_run_json_summary_names_still_running_process_with_non_utf8_name(cli):
    r = cli("run", "--json", "--", sys.executable, "-c", RENAMED_CHILD, check=False)
    try:
        assert "Traceback" not in r.stdout + r.stderr, r.stderr
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout.splitlines()[-1])
        assert {p["comm"] for p in summary["running"]} == {"x\\xffy"}, summary["running"]
    finally:
        for line in r.stdout.splitlines()[-1:]:
            for p in json.loads(line).get("running", []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p["pid"], signal.SIGKILL)


def test_run_empty_command_is_not_found(cli, pin_dir):
    r = cli("run", "--", "", check=False)
    assert_refused(r, 127, "cannot run '': No such file or directory")
    assert_pin_dir_untouched(pin_dir)


def test_run_json_empty_command_is_not_found(cli, pin_dir):
    r = cli("run", "--json", "--", "", "x", check=False)
    assert_refused(r, 127, "cannot run '': No such file or directory")
    assert r.stdout == ""
    assert_pin_dir_untouched(pin_dir)


def test_run_non_utf8_command_named_as_names_are(cli, pin_dir):
    r = cli("run", "--", fs(b"\xff"), check=False)
    assert_refused(r, 127, "cannot run '\\xff': No such file or directory")
    assert_pin_dir_untouched(pin_dir)


# --- 7. serve --address --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("attach", [True, False], ids=["attach", "pinned"])
@pytest.mark.parametrize(
    "address, shown",
    [
        ("a" * 64, "a" * 64),  # one DNS label longer than 63 characters
        (fs(b"\xff"), "'\\xff'"),
        (fs(b"host\xe9.example"), "'host\\xe9.example'"),
        ("a..b", "a..b"),  # an empty label
    ],
    ids=["label-64", "not-utf8", "not-utf8-in-name", "empty-label"],
)
def test_serve_refuses_address_in_one_line(cli, pin_dir, attach, address, shown):
    extra = ["--attach"] if attach else []
    r = cli("serve", *extra, "--address", address, "--port", str(free_port()), check=False)
    assert_refused(r, EXIT_USAGE, f"--address {shown} is not an address to listen on")
    assert_pin_dir_untouched(pin_dir)


# --- 8. HEAD /metrics ----------------------------------------------------------------


def raw_http(port: int, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send a request, read until the server closes: (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("serve did not listen")


def test_serve_answers_head_as_get_without_body(attached):
    port = free_port()
    proc = attached.popen(
        "serve", "--port", str(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_listening(port, proc)
        status, _, got = raw_http(port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert status.split()[1] == b"200", status
        assert b"procmon_loaded 1.0" in got
        status, headers, body = raw_http(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert status.split()[1] == b"200", status
        assert headers["content-type"].startswith("text/plain"), headers
        assert body == b"", body[:200]
        # The length a GET has: the same series, their values a few digits apart.
        assert abs(int(headers["content-length"]) - len(got)) < 64, (headers, len(got))
        # prometheus-client's answer to OPTIONS and to other methods lists HEAD too.
        status, headers, _ = raw_http(port, b"OPTIONS /metrics HTTP/1.0\r\n\r\n")
        assert status.split()[1] == b"200" and "HEAD" in headers["allow"].split(","), headers
        status, headers, _ = raw_http(port, b"POST /metrics HTTP/1.0\r\n\r\n")
        assert status.split()[1] == b"405" and "HEAD" in headers["allow"].split(","), headers
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


# --- 7. --pin-dir 1,500 levels deep ----------------------------------------------------


def remove_chain(top: Path, deepest: Path) -> None:
    """rmdir from `deepest` up to `top`, one level at a time (os.walk and
    shutil.rmtree recurse once per level in Python 3.11)."""
    path = deepest
    while True:
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()
        if path == top:
            return
        path = path.parent


def test_pin_dir_1500_levels_deep_loads_and_unloads(cli, pin_dir):
    top = pin_dir / "deep"
    deep = top.joinpath(*["d"] * 1500)
    env = {"PROCMON_PIN_DIR": str(deep)}
    try:
        r = cli("load", check=False, env=env)
        assert "Traceback" not in r.stderr, r.stderr[-2000:]
        assert r.returncode == 0, r.stderr[-2000:]
        assert (deep / "maps" / "counters").exists()
        r = cli("unload", check=False, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stderr == ""
        assert not deep.exists()
    finally:
        if deep.exists():
            cli("unload", "--force", check=False, env=env)
        remove_chain(pin_dir, deep)
        for f in PinnedInstance.at(deep).state_paths():
            f.unlink(missing_ok=True)


@pytest.mark.parametrize("command", ["load", "status", "stats", "unload"])
def test_pin_dir_longer_than_path_max_allows_is_refused(cli, pin_dir, command):
    # Within PATH_MAX itself, but with no room left for the pins below it.
    deep = pin_dir.joinpath(*["d"] * ((4090 - len(str(pin_dir))) // 2))
    assert 4031 < len(str(deep)) < 4096
    r = cli(command, check=False, env={"PROCMON_PIN_DIR": str(deep)})
    assert_refused(r, EXIT_USAGE, "--pin-dir is ")
    assert "bytes long: use at most 4031" in r.stderr
    assert_pin_dir_untouched(pin_dir)


# --- 8. filters that can match nothing -----------------------------------------------

# Every pid is below the kernel's PID_MAX_LIMIT (4 * 1024 * 1024 on 64-bit);
# (uid_t)-1 is no user's.
PID_MAX = 4194303
UID_MAX = 4294967294
PID_RANGE = f"is not a process id: use 1 to {PID_MAX}"
UID_RANGE = f"is not a user id: use 0 to {UID_MAX}"
COMM_RANGE = "--comm is empty: give a process name, 1 to 15 bytes"

# (option, value, text in the error)
FILTERS = [
    ("--pid", "-1", f"--pid -1 {PID_RANGE}"),
    ("--pid", "0", f"--pid 0 {PID_RANGE}"),
    ("--pid", "4194304", f"--pid 4194304 {PID_RANGE}"),
    ("--pid", "4294967296", f"--pid 4294967296 {PID_RANGE}"),
    ("--ppid", "-1", f"--ppid -1 {PID_RANGE}"),
    ("--ppid", "0", f"--ppid 0 {PID_RANGE}"),
    ("--uid", "-1", f"--uid -1 {UID_RANGE}"),
    ("--uid", "4294967295", f"--uid 4294967295 {UID_RANGE}"),
    ("--uid", "4294967296", f"--uid 4294967296 {UID_RANGE}"),
    ("--comm", "", COMM_RANGE),
    ("--comm", "/bin/ls", "--comm /bin/ls is a path: a process's name is its file's base name"),
    ("--uid", "no-such-user-here", "--uid no-such-user-here: no user of that name"),
]


@pytest.mark.parametrize(
    "option, value, text",
    [
        *FILTERS,
        ("--tree-of", "-1", f"--tree-of -1 {PID_RANGE}"),
        ("--tree-of", "0", f"--tree-of 0 {PID_RANGE}"),
    ],
)
def test_events_refuses_filter_that_matches_nothing(attached, option, value, text):
    before = pin_tree(attached.pin_dir)
    r = attached("events", option, value, "--duration", "1", check=False)
    assert_refused(r, EXIT_USAGE, text)
    assert pin_tree(attached.pin_dir) == before


@pytest.mark.parametrize(
    "option, value, text",
    [*FILTERS, ("--tree-of", "-1", f"--tree-of -1 {PID_RANGE}")],
)
def test_run_refuses_filter_that_matches_nothing(cli, pin_dir, option, value, text):
    r = cli("run", option, value, "--", "true", check=False)
    assert_refused(r, EXIT_USAGE, text)
    assert_pin_dir_untouched(pin_dir)


@pytest.mark.parametrize(
    "name",
    ["", "a/b", ".hidden", "x" * 32, "caf\u00e9"],
    ids=["empty", "slash", "dot", "long", "utf8"],
)
def test_events_refuses_a_reader_name_it_cannot_keep(attached, name):
    """--name: one line saying what a name may be; no slot taken, nothing pinned."""
    before = pin_tree(attached.pin_dir)
    r = attached("events", "--name", name, "--duration", "1", check=False)
    assert_refused(r, EXIT_USAGE, "is not a reader name: use 1 to 31 letters")
    assert pin_tree(attached.pin_dir) == before
    assert ReaderSlots(PinnedInstance.at(attached.pin_dir)).states() == []


@pytest.mark.parametrize("value", ["-1", "16385"])
def test_events_refuses_argv_bytes_out_of_range(attached, value):
    """--argv-bytes per reader: the allowed range in one line; no slot taken."""
    before = pin_tree(attached.pin_dir)
    r = attached("events", "--argv-bytes", value, "--duration", "1", check=False)
    assert_refused(
        r, EXIT_USAGE, f"--argv-bytes {value} is not allowed: use 0 (no arguments) to 16384"
    )
    assert pin_tree(attached.pin_dir) == before
    assert ReaderSlots(PinnedInstance.at(attached.pin_dir)).states() == []


def test_events_tree_is_still_taken_with_a_warning(attached):
    """The filter is --tree-of in events as in run (run's --tree prints CMD's tree);
    the old spelling still works, and says so."""
    r = attached("events", "--tree", "1", "--duration", "0.2")
    assert r.stderr == (
        "procmon-ctl: warning: events --tree PID is now --tree-of PID; "
        "--tree will go in a later version\n"
    )


def test_events_refuses_a_cgroup_filter_given_twice(attached):
    before = pin_tree(attached.pin_dir)
    r = attached("events", "--cgroup", "/", "--cgroup", "/", "--duration", "1", check=False)
    assert_refused(r, EXIT_USAGE, "--cgroup is given more than once: a reader follows one")
    assert pin_tree(attached.pin_dir) == before


def test_filters_at_the_ends_of_their_ranges_are_taken(attached):
    r = attached(
        "events",
        *("--pid", str(PID_MAX), "--ppid", "1", "--uid", str(UID_MAX), "--comm", "x" * 15),
        *("--duration", "0.5"),
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


# --- --object "" and names in errors -----------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["load"], ["run", "--", "true"], ["serve", "--attach"]],
    ids=["load", "run", "serve"],
)
def test_empty_object_is_refused(cli, pin_dir, argv):
    r = cli(argv[0], "--object", "", *argv[1:], check=False)
    assert_refused(r, EXIT_USAGE, "--object is empty: give the path of a .bpf.o file")
    assert_pin_dir_untouched(pin_dir)


def test_non_utf8_path_in_an_error_is_named_as_names_are(cli, pin_dir):
    r = cli("load", "--object", fs(b"/nonexistent/caf\xe9.bpf.o"), check=False)
    assert_refused(r, EXIT_MISSING, "BPF object /nonexistent/caf\\xe9.bpf.o not found")
    assert_pin_dir_untouched(pin_dir)


def test_non_utf8_cgroup_in_an_error_is_named_as_names_are(attached):
    r = attached("events", "--cgroup", fs(b"caf\xe9"), "--duration", "1", check=False)
    assert_refused(r, EXIT_USAGE, "no cgroup 'caf\\xe9' (looked for ")


def test_non_utf8_pin_dir_in_an_error_is_named_as_names_are(cli, pin_dir):
    bad = fs(os.fsencode(pin_dir) + b"\xe9")
    r = cli("status", check=False, env={"PROCMON_PIN_DIR": bad})
    assert_refused(r, EXIT_USAGE, f"--pin-dir '{pin_dir}\\xe9' is not valid UTF-8")
    assert_pin_dir_untouched(pin_dir)
