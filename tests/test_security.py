"""Pins are root's alone: modes, ownership, and directories planted by someone else.

bpffs's root directory is world-writable (mode 1777): any user may create a
directory or a symlink there before root runs `load`."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from conftest import CLI, remove_tree

from procmon_ctl.errors import EXIT_STATE


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
    subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "mkdir", str(path)],
        check=True,
    )


def test_directory_planted_by_another_user_is_refused(cli):
    _plant_as_nobody(cli.pin_dir)
    try:
        assert cli.pin_dir.stat().st_uid == 65534
        r = cli("load", check=False)
        assert r.returncode == EXIT_STATE
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and "belongs to uid 65534, not root" in lines[0]
        assert list(cli.pin_dir.iterdir()) == [], "nothing pinned into a foreign directory"
        assert stat.S_IMODE(cli.pin_dir.stat().st_mode) == 0o755, "and its mode untouched"
    finally:
        remove_tree(cli.pin_dir)


def test_parent_planted_by_another_user_is_refused(cli):
    _plant_as_nobody(cli.pin_dir)
    try:
        r = cli("--pin-dir", str(cli.pin_dir / "inner"), "load", check=False)
        assert r.returncode == EXIT_STATE
        assert "belongs to uid 65534" in r.stderr
        assert not (cli.pin_dir / "inner").exists()
    finally:
        remove_tree(cli.pin_dir)
