"""`events --output FILE` opens only what root means to write (issue 25.6).

The attack as it was found: with fs.protected_symlinks=0, uid 65534 plants
`pub/procmon.jsonl -> root's script` in a 1777 directory, and root's `events
--output pub/procmon.jsonl` appends event lines (process names an attacker
chooses) to that script.  The files are planted for real by uid 65534 (setpriv),
in directories of the test's own; uid 65534 reaches them through a directory fd
handed down to it (/proc/self/fd/N), as the test's tmp_path lies below pytest's
root-only base directory.

The rule (README, "Nobody in"), that of logrotate and systemd for files root
writes: no final symlink is followed, anywhere; only a regular file is written
(no FIFO, device or directory); in a directory someone other than root can write,
an existing file must be root's own with a single link, and a new one is made
with O_EXCL; a new file is 0640 whatever the umask."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import AS_NOBODY, fork_processes, wait_reading

from procmon_ctl.instance.readers import name_for_output

NOBODY = 65534
NAME = "procmon.jsonl"
SCRIPT = b"#!/bin/sh\n# root runs this every night\necho backup done\n"


@contextlib.contextmanager
def sysctl(name: str, value: str):
    """fs.NAME set to `value` while the test runs, put back as found even when the
    test fails: every process of the machine shares it."""
    path = Path("/proc/sys/fs") / name
    before = path.read_text().strip()
    if before != value:
        path.write_text(value)
    try:
        yield
    finally:
        if before != value:
            path.write_text(before)


@pytest.fixture
def unprotected_symlinks():
    """The host's setting the attack needs (the fault was found with it)."""
    with sysctl("protected_symlinks", "0"):
        yield


def as_nobody(argv: list[str], paths: dict[str, Path]) -> None:
    """Run argv as uid 65534 with each of `paths` open (O_PATH); `{key}` in argv
    stands for that directory or file, reached through its fd."""
    fds = {key: os.open(path, os.O_PATH) for key, path in paths.items()}
    try:
        args = [a.format(**{k: f"/proc/self/fd/{fd}" for k, fd in fds.items()}) for a in argv]
        r = subprocess.run(
            [*AS_NOBODY, *args],
            pass_fds=list(fds.values()),
            capture_output=True,
            text=True,
            cwd="/",
        )
        assert r.returncode == 0, f"as uid {NOBODY}: {args}: {r.stderr}"
    finally:
        for fd in fds.values():
            os.close(fd)


@pytest.fixture
def victim_dir(tmp_path) -> Path:
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    return private


@pytest.fixture
def victim(victim_dir) -> Path:
    """Root's script, in a directory only root can enter."""
    script = victim_dir / "victim.sh"
    script.write_bytes(SCRIPT)
    script.chmod(0o755)
    return script


def shared_dir(tmp_path: Path, kind: str) -> Path:
    """A directory someone other than root can write: world-writable and sticky
    like /tmp, or uid 65534's own."""
    path = tmp_path / f"pub-{kind}"
    path.mkdir()
    if kind == "1777":
        path.chmod(0o1777)
    else:
        path.chmod(0o755)
        os.chown(path, NOBODY, NOBODY)
    return path


SHARED = ["1777", "nobody's"]


def tree(top: Path) -> dict[str, tuple]:
    """Every entry below top: type, owner, mode, links and content (a symlink's
    target), to show that nothing was written, made or changed anywhere."""
    seen = {}
    for path in sorted([top, *top.rglob("*")]):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            what = path.read_bytes()
        else:
            what = None
        seen[str(path)] = (stat.S_IFMT(st.st_mode), st.st_uid, st.st_mode, st.st_nlink, what)
    return seen


def refused(r: subprocess.CompletedProcess, path: Path, why: str, code: int = 2) -> None:
    """The documented exit code and exactly one line naming the file and why."""
    shown = f"exit {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"
    assert r.returncode == code, shown
    assert r.stdout == "", shown
    assert r.stderr.count("\n") == 1 and r.stderr.endswith("\n"), shown
    assert r.stderr.startswith(f"procmon-ctl: error: cannot open --output {path}: "), shown
    assert why in r.stderr, shown
    assert "Traceback" not in r.stderr, shown


def events_to(cli, path: Path, **kw) -> subprocess.CompletedProcess:
    """A real reader with records waiting in its ring (our own forks, made while the
    named reader --output makes was down): a reader that opened the file would
    write them."""
    cli("events", "--json", "--name", name_for_output(str(path)), "--duration", "0.1")
    fork_processes(3)
    return cli("events", "--output", str(path), "--duration", "0.5", check=False, **kw)


def fork_pids(path: Path) -> set[int]:
    # Split at b"\n" only: str.splitlines() also splits at U+2028 or U+0085 inside
    # a string of another process's line.
    return {
        event["pid"]
        for line in path.read_bytes().split(b"\n")
        if line and (event := json.loads(line))["type"] == "fork"
    }


# --- what is refused ---------------------------------------------------------------


@pytest.mark.parametrize("kind", SHARED)
@pytest.mark.parametrize("target", ["existing", "missing"])
def test_a_symlink_planted_by_another_user_is_not_followed(
    attached, tmp_path, victim, unprotected_symlinks, kind, target
):
    """The fault as found: root's script gets no line, and a link to a file that
    does not exist yet makes none (a new /etc/cron.d/x would run too)."""
    pub = shared_dir(tmp_path, kind)
    aim = victim if target == "existing" else victim.with_name("cron-job")
    as_nobody(["ln", "-s", str(aim), f"{{pub}}/{NAME}"], {"pub": pub})
    before = tree(tmp_path)
    r = events_to(attached, pub / NAME)
    refused(r, pub / NAME, "symlink")
    assert victim.read_bytes() == SCRIPT
    assert tree(tmp_path) == before


def test_a_symlink_is_not_followed_even_in_roots_own_directory(attached, tmp_path, victim):
    """No final symlink is followed anywhere (O_NOFOLLOW, as logrotate does): give
    the file's own path."""
    link = victim.with_name(NAME)
    link.symlink_to(victim)
    before = tree(tmp_path)
    r = events_to(attached, link)
    refused(r, link, "symlink")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", SHARED)
def test_a_hard_link_planted_by_another_user_is_refused(attached, tmp_path, victim, kind):
    """With fs.protected_hardlinks=0 uid 65534 can link root's script into its
    directory: the name is then root's own regular file, and only its link count
    tells.  (With protected_hardlinks=1 the kernel refuses the link itself.)"""
    pub = shared_dir(tmp_path, kind)
    with sysctl("protected_hardlinks", "0"):
        # ln -L: linkat(AT_SYMLINK_FOLLOW) of the fd's magic link, as for O_TMPFILE.
        as_nobody(["ln", "-L", "{victim}", f"{{pub}}/{NAME}"], {"victim": victim, "pub": pub})
    assert (pub / NAME).stat().st_ino == victim.stat().st_ino
    before = tree(tmp_path)
    r = events_to(attached, pub / NAME)
    refused(r, pub / NAME, "hard link")
    assert victim.read_bytes() == SCRIPT
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", SHARED)
def test_a_file_of_another_user_is_refused(attached, tmp_path, kind):
    """uid 65534's own file where root's log would be: root's events would go to a
    file someone else owns and can read, truncate or swap."""
    pub = shared_dir(tmp_path, kind)
    as_nobody(["touch", f"{{pub}}/{NAME}"], {"pub": pub})
    before = tree(tmp_path)
    r = events_to(attached, pub / NAME)
    refused(r, pub / NAME, f"uid {NOBODY}")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("where", ["1777", "root-only"])
def test_a_fifo_is_refused(attached, tmp_path, victim_dir, where):
    """A FIFO (planted by uid 65534, or root's own) is not a log file: refused with
    one line, whether or not something reads it, and nothing goes into it.  Today a
    FIFO with a reader gets the events, and one without blocks the reader forever."""
    if where == "root-only":
        directory = victim_dir
        os.mkfifo(directory / NAME, 0o600)
    else:
        directory = shared_dir(tmp_path, where)
        as_nobody(["mkfifo", f"{{pub}}/{NAME}"], {"pub": directory})
    fifo = directory / NAME
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        before = tree(tmp_path)
        r = events_to(attached, fifo, timeout=30)
        refused(r, fifo, "FIFO")
        with contextlib.suppress(BlockingIOError):
            assert os.read(reader, 1 << 16) == b"", "lines went into the FIFO"
    finally:
        os.close(reader)
    assert tree(tmp_path) == before


def test_a_device_is_refused(attached, tmp_path):
    """/dev/null and the like: not a regular file either (nothing opens it)."""
    r = events_to(attached, Path("/dev/null"))
    refused(r, Path("/dev/null"), "character device")


# --- what keeps working --------------------------------------------------------------


@pytest.fixture
def umask():
    """os.umask for the test's readers, the test's own put back afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


@pytest.mark.parametrize("where", ["1777", "root-only"])
@pytest.mark.parametrize("mask", [0o000, 0o077], ids=["umask000", "umask077"])
def test_a_new_file_is_roots_and_0640_whatever_the_umask(
    attached, tmp_path, victim_dir, umask, where, mask
):
    directory = victim_dir if where == "root-only" else shared_dir(tmp_path, where)
    log = directory / NAME
    umask(mask)  # inherited by the reader
    with attached.reading("events", "--output", str(log)):
        pids = fork_processes(3)
    st = log.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_nlink == 1
    assert oct(stat.S_IMODE(st.st_mode)) == oct(0o640)
    assert set(pids) <= fork_pids(log)


def test_roots_own_file_in_a_1777_directory_is_appended_to(attached, tmp_path):
    """The everyday case of a shared directory: root's file, one link, appended to,
    its mode kept."""
    pub = shared_dir(tmp_path, "1777")
    log = pub / NAME
    log.write_text('{"type":"earlier"}\n')
    log.chmod(0o600)
    with attached.reading("events", "--output", str(log)):
        pids = fork_processes(3)
    assert log.read_text().splitlines()[0] == '{"type":"earlier"}'
    assert set(pids) <= fork_pids(log)
    assert oct(stat.S_IMODE(log.stat().st_mode)) == oct(0o600)


def test_a_file_in_a_root_only_directory_works_as_before(attached, victim_dir):
    """Where only root writes, root's choices stand: a file of another owner, with a
    second link, is appended to and keeps its mode."""
    log = victim_dir / NAME
    log.write_text('{"type":"earlier"}\n')
    os.chown(log, NOBODY, NOBODY)
    log.chmod(0o644)
    os.link(log, victim_dir / "second-name")
    with attached.reading("events", "--output", str(log)):
        pids = fork_processes(3)
    assert log.read_text().splitlines()[0] == '{"type":"earlier"}'
    assert set(pids) <= fork_pids(log)
    st = log.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o644)


# --- SIGHUP: the same rule on every reopen --------------------------------------------


def test_a_symlink_planted_after_rotation_is_not_followed_on_sighup(
    attached, tmp_path, victim, unprotected_symlinks
):
    """logrotate renames the log in the shared directory and sends SIGHUP; uid 65534
    plants the link in between.  The reader stops with one line (exit 3, as for any
    reopen that fails) and writes nothing through the link; the records stay in its
    ring for its next run."""
    cli = attached
    pub = shared_dir(tmp_path, "1777")
    log = pub / NAME
    reader = cli.popen(
        "events", "--output", str(log), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_reading(cli.pin_dir, reader)
        first = fork_processes(3)
        deadline = time.monotonic() + 30
        while not (log.exists() and set(first) <= fork_pids(log)):
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the reader wrote nothing"
            time.sleep(0.05)
        log.rename(pub / f"{NAME}.1")
        as_nobody(["ln", "-s", str(victim), f"{{pub}}/{NAME}"], {"pub": pub})
        reader.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while reader.poll() is None and time.monotonic() < deadline:
            fork_processes(2)  # a batch to write, so the reader reopens
            time.sleep(0.1)
    finally:
        if reader.poll() is None:
            reader.send_signal(signal.SIGTERM)
        out, err = reader.communicate(timeout=30)
    assert victim.read_bytes() == SCRIPT
    assert reader.returncode == 3, err
    assert out == "" and err.count("\n") == 1, err
    assert (
        err.startswith(f"procmon-ctl: error: cannot reopen --output {log}: ") and "symlink" in err
    )
    assert os.readlink(log) == str(victim)


def test_output_dash_is_stdout(attached, tmp_path, monkeypatch):
    """--output - writes the JSON lines to stdout, as most tools take -: no file
    named -, and no named reader left behind (a name comes with a file only)."""
    monkeypatch.chdir(tmp_path)
    with attached.reading("events", "--output", "-", "--ppid", str(os.getpid())) as reading:
        child = subprocess.run(["true"], check=True)
    lines = [json.loads(line) for line in reading.stdout.splitlines()]
    assert lines and all(e["ppid"] == os.getpid() for e in lines), lines
    assert {e["type"] for e in lines} == {"fork", "exec", "exit"}, lines
    assert child.returncode == 0 and list(tmp_path.iterdir()) == []
    assert attached("readers").stdout.strip() == "readers: none"


def test_a_second_reader_of_one_file_is_refused_naming_the_first(attached, tmp_path):
    """One reader writes a file at a time: a second one, under another name, is
    refused with one line naming the first (exit 3, the state of another), and
    writes nothing; the first's lines go on whole.  Once the first has stopped, the
    file is free for the next."""
    cli = attached
    log = tmp_path / NAME
    with cli.reading("events", "--output", str(log)) as first:
        second = cli(
            "events", "--name", "other", "--output", str(log), "--duration", "1", check=False
        )
        pids = fork_processes(3)
    refused(second, log, f"another reader is writing it (pid {first.proc.pid}): ", code=3)
    assert set(pids) <= fork_pids(log)
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
    r = cli("events", "--name", "other", "--output", str(log), "--duration", "0.2", check=False)
    assert r.returncode == 0, r.stderr
