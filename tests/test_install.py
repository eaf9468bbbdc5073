"""`make install` / `make uninstall`: a dedicated virtualenv and a link, to a
temporary PREFIX/BINDIR and to the real /opt/procmon-ctl and /usr/local/bin.

The real-path test moves anything already there aside and puts it back, and
removes what it installed, even when it fails."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

from procmon_ctl.instance.startup import check_object

REAL_PREFIX = Path("/opt/procmon-ctl")
REAL_LINK = Path("/usr/local/bin/procmon-ctl")
# Debian's sudoers secure_path: what `sudo procmon-ctl` searches.
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def make(*args: str, sudo: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    # -o: install the object the suite runs with, never rebuild it under other tests.
    cmd = [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        "-o",
        "procmon_ctl/data/process_monitor.bpf.o",
        *args,
    ]
    if sudo:
        cmd = ["sudo", "-n", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def clean_env(**extra: str) -> dict[str, str]:
    """What a fresh login shell of root would have: no venv, no PYTHONPATH."""
    return {"PATH": SECURE_PATH, "HOME": "/root", "LANG": "C.UTF-8", **extra}


def run_installed(binary: str | Path, *args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=60,
        **kw,
    )


def check_installation(prefix: Path, link: Path, pin_dir: Path, cwd: Path) -> None:
    assert link.is_symlink() and os.readlink(link) == str(prefix / "bin" / "procmon-ctl")
    assert (prefix / "pyvenv.cfg").is_file()
    version = run_installed(link, "--version", cwd=cwd)
    assert version.returncode == 0 and version.stdout.startswith("procmon-ctl "), version

    # Not editable: the package and its BPF object live inside the virtualenv.
    probe = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "import json, procmon_ctl, procmon_ctl.instance.startup as l; "
            "print(json.dumps([procmon_ctl.__file__, str(l.PACKAGED_OBJECT)]))",
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        check=True,
    )
    module, obj = json.loads(probe.stdout)
    assert module.startswith(str(prefix) + "/"), module
    assert obj.startswith(str(prefix) + "/")
    check_object(Path(obj))  # an eBPF ELF object (the tree's may be rebuilt meanwhile)
    assert not list(prefix.glob("lib/python*/site-packages/__editable__*"))

    # The installed tool runs the real workflow with its packaged object.
    pin = ["--pin-dir", str(pin_dir)]
    for step in (["load"], ["attach"], ["stats", "--json"], ["unload"]):
        r = run_installed(link, *pin, *step, cwd=cwd)
        assert r.returncode == 0, f"{step}: {r.stderr}"
        if step[0] == "stats":
            assert json.loads(r.stdout)["processes"] >= 0
    assert not pin_dir.exists()
    check_serve(link, pin_dir, cwd)


def check_serve(link: Path, pin_dir: Path, cwd: Path) -> None:
    """The service's command, from the installed tool: load, attach, serve, unload."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(link), "--pin-dir", str(pin_dir), "serve", "--attach", "--port", str(port)],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                if 'procmon_attached{program="exit"} 1.0' in text:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert "procmon_processes_created_total" in text, f"no metrics (exit {proc.poll()})"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 0, err
    assert not pin_dir.exists()


def test_install_to_temporary_prefix(pin_dir, tmp_path):
    prefix, bindir = tmp_path / "opt" / "procmon-ctl", tmp_path / "bin"
    paths = [f"PREFIX={prefix}", f"BINDIR={bindir}"]
    try:
        out = make("install", *paths).stdout
        assert "installed procmon-ctl " in out
        check_installation(prefix, bindir / "procmon-ctl", pin_dir, tmp_path)
        # Installing again replaces the virtualenv in place.
        make("install", *paths)
        assert (bindir / "procmon-ctl").is_symlink()
    finally:
        make("uninstall", *paths)
    assert not prefix.exists() and not (bindir / "procmon-ctl").is_symlink()
    assert make("uninstall", *paths).returncode == 0, "uninstall twice is harmless"


def test_install_refuses_to_clobber(tmp_path):
    """A PREFIX that is not a virtualenv, or a BINDIR/procmon-ctl that is not our
    link, is left alone."""
    prefix, bindir = tmp_path / "data", tmp_path / "bin"
    prefix.mkdir()
    (prefix / "precious").write_text("keep me")
    r = make("install", f"PREFIX={prefix}", f"BINDIR={bindir}", check=False)
    assert r.returncode != 0 and "not a virtualenv" in r.stderr
    assert (prefix / "precious").read_text() == "keep me"

    bindir.mkdir()
    (bindir / "procmon-ctl").write_text("#!/bin/sh\n")
    r = make("install", f"PREFIX={tmp_path / 'venv'}", f"BINDIR={bindir}", check=False)
    assert r.returncode != 0 and "not our link" in r.stderr
    assert not (tmp_path / "venv").exists()
    make("uninstall", f"PREFIX={tmp_path / 'venv'}", f"BINDIR={bindir}")
    assert (bindir / "procmon-ctl").read_text() == "#!/bin/sh\n"

    r = make("install", "PREFIX=relative/dir", f"BINDIR={bindir}", check=False)
    assert r.returncode != 0 and "absolute" in r.stderr


@pytest.fixture
def real_paths(tmp_path):
    """/opt/procmon-ctl and /usr/local/bin/procmon-ctl free for the test, and as they
    were afterwards.  A lock keeps two suites on this machine from interleaving."""
    # The lock is on the link's directory itself, so no lock file is left behind.
    lock = os.open(REAL_LINK.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(lock, fcntl.LOCK_EX)
    saved: list[tuple[Path, Path]] = []
    try:
        for path in (REAL_PREFIX, REAL_LINK):
            if path.exists() or path.is_symlink():
                aside = path.with_name(f".{path.name}.test-saved-{os.getpid()}")
                os.rename(path, aside)  # same directory: same filesystem
                saved.append((path, aside))
        yield
    finally:
        try:
            make("uninstall", check=False)
            for path in (REAL_LINK, REAL_PREFIX):
                if path.is_symlink() or path.is_file():
                    path.unlink()
                elif path.exists():
                    shutil.rmtree(path)
        finally:
            for path, aside in saved:
                os.rename(aside, path)
            os.close(lock)


def test_install_real_paths(real_paths, pin_dir, tmp_path):
    """`sudo make install` then `sudo procmon-ctl …` exactly as written, and
    `sudo make uninstall` removes both."""
    sudo = shutil.which("sudo") is not None
    make("install", sudo=sudo)
    check_installation(REAL_PREFIX, REAL_LINK, pin_dir, tmp_path)
    if sudo:
        # sudo resets the environment and searches its secure_path.
        r = subprocess.run(
            ["sudo", "-n", "procmon-ctl", "--version"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_env(PATH="/usr/bin:/bin"),
        )
        assert r.returncode == 0 and r.stdout.startswith("procmon-ctl "), r.stderr
        r = subprocess.run(
            ["sudo", "-n", "procmon-ctl", "--pin-dir", str(pin_dir), "status", "--json"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_env(PATH="/usr/bin:/bin"),
        )
        assert r.returncode == 0 and json.loads(r.stdout)["loaded"] is False, r.stderr
    assert shutil.which("procmon-ctl", path=SECURE_PATH) == str(REAL_LINK)
    analyze = shutil.which("systemd-analyze")
    if analyze:
        # The units as shipped, unmodified, now that their commands exist.
        for unit in ("procmon-ctl.service", "procmon-ctl-log.service"):
            r = subprocess.run(
                [analyze, "verify", str(ROOT / "scripts" / unit)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0 and unit not in r.stderr, r.stderr
    out = make("uninstall", sudo=sudo).stdout
    assert "removed /usr/local/bin/procmon-ctl" in out and "removed /opt/procmon-ctl" in out
    assert not REAL_LINK.is_symlink() and not REAL_PREFIX.exists()
