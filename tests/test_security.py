"""Pins are root's alone: modes, ownership, and directories planted by someone else.

bpffs's root directory is world-writable (mode 1777) unless mounted with mode=700
(as procmon-ctl, the Makefile and systemd mount it): any user may then create a
directory or a symlink there before root runs a command.  Such a pin dir, or one
below such a directory, is refused by every command before it reads or changes
anything (exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, in_private_mount_ns, remove_tree

from procmon_ctl.errors import EXIT_USAGE


def modes(root: Path) -> dict[str, tuple[str, int, int]]:
    """relative path -> (kind, permission bits, owner uid) for root and all below."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath) / name
            st = os.lstat(path)
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "pin"
            found[str(path.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), st.st_uid)
    return found


def test_pin_dir_and_pins_are_root_only(attached):
    found = modes(attached.pin_dir)
    dirs = {p: m for p, m in found.items() if m[0] == "dir"}
    pins = {p: m for p, m in found.items() if m[0] == "pin"}
    assert set(dirs) >= {".", "progs", "maps", "links"}
    assert len(pins) >= 3 + 4 + 3, pins  # programs, maps, links
    for path, (_, mode, uid) in dirs.items():
        assert mode == 0o700, f"{path}: directory mode {mode:o}"
        assert uid == 0
    for path, (_, mode, uid) in pins.items():
        assert mode == 0o600, f"{path}: pin mode {mode:o}"
        assert uid == 0


def test_modes_do_not_depend_on_umask(cli):
    r = subprocess.run(
        ["sh", "-c", 'umask 000 && exec "$@"', "sh", *CLI, "load"],
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    cli("attach")
    for path, (kind, mode, _) in modes(cli.pin_dir).items():
        assert mode == (0o700 if kind == "dir" else 0o600), f"{path}: {mode:o} under umask 000"


def _plant_as_nobody(path: Path) -> None:
    """A directory of uid 65534's, as one planted in a world-writable bpffs root
    would be (made by root and handed over: the root may be mode 700 here)."""
    path.mkdir(mode=0o755)
    os.chown(path, 65534, 65534)


def assert_refused(r: subprocess.CompletedProcess, text: str) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("procmon-ctl: error: "), lines
    assert text in lines[0], lines[0]
    assert r.returncode == EXIT_USAGE, f"exit {r.returncode}: {lines[0]}"


def test_directory_planted_by_another_user_is_refused(cli):
    _plant_as_nobody(cli.pin_dir)
    try:
        assert cli.pin_dir.stat().st_uid == 65534
        r = cli("load", check=False)
        assert_refused(r, "belongs to uid 65534, not root")
        assert list(cli.pin_dir.iterdir()) == [], "nothing pinned into a foreign directory"
        assert stat.S_IMODE(cli.pin_dir.stat().st_mode) == 0o755, "and its mode untouched"
    finally:
        remove_tree(cli.pin_dir)


def test_parent_planted_by_another_user_is_refused(cli):
    _plant_as_nobody(cli.pin_dir)
    try:
        r = cli("--pin-dir", str(cli.pin_dir / "inner"), "load", check=False)
        assert_refused(r, "belongs to uid 65534")
        assert not (cli.pin_dir / "inner").exists()
    finally:
        remove_tree(cli.pin_dir)


# Every command that takes a pin dir, the read-only ones too.
COMMANDS = [
    ("detach",),
    ("unload",),
    ("unload", "--force"),
    ("status",),
    ("readers",),
    ("readers", "rm", "journal"),
    ("stats",),
    ("events", "--count", "1", "--duration", "2"),
    ("attach",),
    ("load",),
]


def pin_snapshot(pin_dir: Path) -> dict[str, int]:
    """Each pin below pin_dir -> its inode: a pin removed and made again differs."""
    return {str(p.relative_to(pin_dir)): p.stat().st_ino for p in pin_dir.rglob("*")}


def test_a_planted_symlink_redirects_no_command(attached):
    """The issue's case: `ln -s /sys/fs/bpf/<someone's instance> /sys/fs/bpf/<name>`
    by another user; root's commands on <name> must not act on the target."""
    target = attached.pin_dir
    link = Path(f"{target}-link")
    link.symlink_to(target)
    os.lchown(link, 65534, 65534)
    before = pin_snapshot(target)
    try:
        for command in COMMANDS:
            r = attached("--pin-dir", str(link), *command, check=False)
            assert_refused(r, f"{link} is a symbolic link to another place in bpffs")
        assert pin_snapshot(target) == before
        assert link.is_symlink()
    finally:
        link.unlink()
    assert "(loaded)" in attached("status").stdout
    assert attached.json("status", "--json")["programs"][0]["attached"]


def test_a_symlink_on_the_way_is_refused(attached):
    """A link to a directory higher up, reached through a path below it."""
    link = Path(f"{attached.pin_dir}-up")
    link.symlink_to(attached.pin_dir.parent)
    before = pin_snapshot(attached.pin_dir)
    try:
        for command in [("status",), ("unload",), ("detach",)]:
            r = attached("--pin-dir", str(link / attached.pin_dir.name), *command, check=False)
            assert_refused(r, f"{link} is a symbolic link")
        assert pin_snapshot(attached.pin_dir) == before
    finally:
        link.unlink()


def test_an_instance_in_a_directory_someone_else_owns_is_not_used(attached):
    """Root's instance, then its directory handed to uid 65534 (who could now swap
    pins in it): no command reads or changes it until root owns it again."""
    before = pin_snapshot(attached.pin_dir)
    os.chown(attached.pin_dir, 65534, 65534)
    try:
        for command in COMMANDS:
            r = attached(*command, check=False)
            assert_refused(r, "belongs to uid 65534, not root")
        assert pin_snapshot(attached.pin_dir) == before
    finally:
        os.chown(attached.pin_dir, 0, 0)
    attached("unload")


def _in_private_mount_ns(script: str) -> subprocess.CompletedProcess:
    """in_private_mount_ns, where bpffs is unmounted first: what procmon-ctl (or make)
    mounts there vanishes with the namespace."""
    return in_private_mount_ns(
        "while mountpoint -q /sys/fs/bpf; do umount /sys/fs/bpf; done\n" + script
    )


def test_procmon_ctl_mounts_bpffs_root_only(cli):
    r = _in_private_mount_ns(f"""
        PROCMON_PIN_DIR={cli.pin_dir} $CLI status >/dev/null
        stat -c '%a %u' /sys/fs/bpf
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1700", "0"], r.stdout


def test_make_mounts_bpffs_root_only():
    if not shutil.which("make"):
        pytest.skip("make not installed")
    r = _in_private_mount_ns("""
        make -s mounts
        stat -c '%a %u' /sys/fs/bpf
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1700", "0"], r.stdout


def test_doctor_warns_of_a_world_writable_bpffs():
    r = _in_private_mount_ns("""
        mount -t bpf bpf /sys/fs/bpf
        $CLI doctor --json || true
        chmod 700 /sys/fs/bpf
        $CLI doctor --json || true
    """)
    assert r.returncode == 0, r.stderr
    before, after = (
        {c["name"]: c for c in json.loads(line)["checks"]}["bpffs"]
        for line in r.stdout.splitlines()
        if line.startswith("{")
    )
    assert before["status"] == "WARN" and "mode 1777" in before["detail"], before
    assert "chmod 700 /sys/fs/bpf" in before["fix"]
    assert after["status"] == "PASS" and "(mode 700)" in after["detail"], after
