"""/run/procmon-ctl: procmon-ctl's own files about each pin dir (its locks and the
record of what it pinned), named by the SHA-256 of the pin dir's path.  Root's alone
(0700), and empty at boot, as bpffs is."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from ..errors import StateError

LOCK_DIR = Path("/run/procmon-ctl")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def state_file(pin_dir: Path, suffix: str) -> Path:
    """The file of `pin_dir` ending in `suffix` (".pins.json", ".admin.lock", ...)."""
    # Fixed length whatever the path (a 4096-byte path still names a short
    # file), and distinct for distinct paths, unlike an escaped path.
    return LOCK_DIR / f"{hashlib.sha256(os.fsencode(pin_dir)).hexdigest()}{suffix}"


def own_state_dir() -> Path:
    """/run/procmon-ctl, root's alone (0700): what is in it decides what procmon-ctl
    trusts.  Whoever made it (the CLI, the service, `make bench`), a directory of
    root's that others may only read is put back to 0700; one that others could
    write, or that is not root's, may hold planted files and is refused."""
    with contextlib.suppress(FileExistsError):  # checked below, a symlink or a file included
        LOCK_DIR.mkdir(mode=0o700, parents=True)
    try:
        fd = os.open(LOCK_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        fd = None  # a symlink, or something else that is not a directory
    try:
        st = os.fstat(fd) if fd is not None else None
        if st is None or st.st_uid != 0 or st.st_mode & 0o022:
            raise StateError(
                f"{LOCK_DIR} is not a directory of root's that only root may write: "
                f"remove it (rm -r {LOCK_DIR}); procmon-ctl makes it again"
            )
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        if fd is not None:
            os.close(fd)
    return LOCK_DIR


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""
