"""What procmon-ctl needs from the host: root, and the bpffs and tracefs mounts."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import NamedTuple

from ..errors import MissingError, PermissionDenied

BPFFS_ROOT = Path("/sys/fs/bpf")
TRACEFS_ROOT = Path("/sys/kernel/tracing")


# The inode number of the host's PID namespace (PROC_PID_INIT_INO in the kernel's
# include/linux/proc_ns.h, the same since 3.8).
HOST_PID_NAMESPACE = 0xEFFFFFFC


def pid_namespace() -> int:
    """This process's PID namespace, by the inode number of /proc/self/ns/pid: one
    number for it whichever namespace looks (getpid() is this namespace's own)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError as err:
        raise MissingError(
            f"cannot read /proc/self/ns/pid ({err.strerror}): mount /proc "
            "(mount -t proc proc /proc)"
        ) from None


def proc_has_host_pids() -> bool:
    """Whether /proc/PID is the process the records call PID (their ids are the
    host's): this process and the /proc mounted here are the host PID namespace's."""
    try:
        host = os.stat("/proc/self/ns/pid").st_ino == HOST_PID_NAMESPACE
        return host and os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def require_root(what: str = "") -> None:
    if os.geteuid() != 0:
        raise PermissionDenied(what)


class Mount(NamedTuple):
    point: bytes
    root: bytes  # the directory of the file system that is mounted there
    fstype: bytes


_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def _unoctal(field: bytes) -> bytes:
    """mountinfo writes a space, tab, newline or backslash in a path as \\NNN."""
    return _OCTAL_ESCAPE.sub(lambda m: bytes((int(m[1], 8),)), field)


def parse_mountinfo(data: bytes) -> list[Mount]:
    """The mounts as seen from this process: where two are stacked on one mount
    point, only the upper one (the later line), since it hides the lower."""
    on_top: dict[bytes, Mount] = {}
    for line in data.split(b"\n"):  # not splitlines(): a \r in a path is not escaped
        fields = line.split(b" ")
        try:
            separator = fields.index(b"-", 6)  # after the optional fields
        except ValueError:
            continue
        if len(fields) > separator + 1:
            point = _unoctal(fields[4])
            on_top.pop(point, None)
            on_top[point] = Mount(point, _unoctal(fields[3]), fields[separator + 1])
    return list(on_top.values())


def read_mounts() -> list[Mount]:
    """This process's mounts, from /proc/self/mountinfo: the one place it is read."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            return parse_mountinfo(f.read())
    except OSError as e:
        raise MissingError(
            f"cannot read /proc/self/mountinfo ({e.strerror}): mount /proc"
            " (mount -t proc proc /proc)"
        ) from None


def mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount that is not hidden by another."""
    return [(os.fsdecode(m.point), os.fsdecode(m.fstype)) for m in read_mounts()]


def fs_type_of(path: Path) -> tuple[str, str]:
    """(mount point, fstype) of the mount that holds `path` (which need not exist)."""
    best = ("/", "")
    text = str(path)
    for mount_point, fstype in mounts():
        inside = text == mount_point or text.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[0]):
            best = (mount_point, fstype)
    return best


def is_mounted(point: Path, fstype: str) -> bool:
    return any(p == str(point) and t == fstype for p, t in mounts())


# bpffs's root is mode 1777 by default: anyone could plant a directory or a symlink
# where root's pin dirs go.  Root's alone, as systemd mounts it.
MOUNT_OPTIONS = {"bpf": ["-o", "mode=700"]}


def mount_command(fstype: str, point: Path) -> list[str]:
    return ["mount", "-t", fstype, *MOUNT_OPTIONS.get(fstype, []), fstype, str(point)]


def _mount(fstype: str, point: Path) -> None:
    point.mkdir(parents=True, exist_ok=True)
    argv = mount_command(fstype, point)
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"
        raise MissingError(
            f"cannot mount {fstype} at {point}: {reason}; mount it by hand: {' '.join(argv)}"
        )


def ensure_bpffs() -> bool:
    """Mount bpffs at /sys/fs/bpf when it is not; True when this call mounted it."""
    if is_mounted(BPFFS_ROOT, "bpf"):
        return False
    require_root("mounting bpffs")
    _mount("bpf", BPFFS_ROOT)
    return True


def ensure_tracefs() -> bool:
    if is_mounted(TRACEFS_ROOT, "tracefs"):
        return False
    require_root("mounting tracefs")
    _mount("tracefs", TRACEFS_ROOT)
    return True
