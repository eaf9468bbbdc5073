"""Which paths may be a pin dir: checked before any command reads or changes
anything in one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import Given, Setting, UsageError
from ..kernel.system import BPFFS_ROOT, ensure_bpffs, fs_type_of
from .pins import DEFAULT_PIN_DIR, PinLayout

PIN_DIR_ENV = "PROCMON_PIN_DIR"
# The longest path the kernel takes (PATH_MAX, with its NUL), and the room a pin
# dir leaves in it for the pins below: the longest is progs/handle_execveat_enter,
# 28 bytes with its slash; the rest is for names a later object may bring.
PATH_MAX = 4096
MAX_PIN_DIR_BYTES = PATH_MAX - 1 - 64
PIN_DIR = Setting("pin_dir")


def resolve(pin_dir: str | os.PathLike | None = None) -> PinLayout:
    """The layout for --pin-dir / $PROCMON_PIN_DIR / the default: inside a bpffs
    mount, and every directory of it below the mount a real directory of root's
    (checked before any command reads or changes anything)."""
    if pin_dir is not None and not os.fspath(pin_dir):
        # `--pin-dir "$UNSET"`: acting on the default instance instead would be a
        # surprise (an unload of the wrong instance).
        raise UsageError(
            (
                PIN_DIR,
                " is empty: give a directory inside a bpffs mount, e.g. "
                f"{DEFAULT_PIN_DIR}, or leave the option out for that default",
            )
        )
    raw = pin_dir if pin_dir is not None else os.environ.get(PIN_DIR_ENV) or None
    text = os.fspath(raw) if raw else str(DEFAULT_PIN_DIR)
    try:
        text.encode()
    except UnicodeEncodeError:
        raise UsageError(
            (
                PIN_DIR,
                " ",
                Given(text),
                " is not valid UTF-8: use a name of letters, "
                f"digits, '-' and '_', e.g. {DEFAULT_PIN_DIR}",
            )
        ) from None
    if len(text.encode()) > MAX_PIN_DIR_BYTES:
        # Refused here rather than half loaded: bpftool would pin some of the
        # programs and fail on the rest, in lines of its own.
        raise UsageError(
            (
                PIN_DIR,
                f" is {len(text.encode())} bytes long: use at most "
                f"{MAX_PIN_DIR_BYTES} (the kernel's PATH_MAX, {PATH_MAX}, less room for "
                f"the pins below it), e.g. {DEFAULT_PIN_DIR}",
            )
        )
    if raw and not os.path.isabs(text):
        raise UsageError(
            (
                PIN_DIR,
                f" {text!r} is relative: give an absolute path inside a bpffs mount, "
                f"e.g. {DEFAULT_PIN_DIR}",
            )
        )
    if ".." in Path(text).parts:
        raise UsageError((PIN_DIR, f" {text} contains '..': give the directory's own path"))
    # Not resolved: a symlink on the way is refused below, never followed.
    path = Path(os.path.normpath(text))
    if path == BPFFS_ROOT or path.is_relative_to(BPFFS_ROOT):
        ensure_bpffs()
    mount_point, fstype = fs_type_of(path)
    if fstype != "bpf" or str(path) == mount_point:
        raise UsageError(
            (
                PIN_DIR,
                f" {path} is not inside a bpffs mount: use a directory below "
                f"{BPFFS_ROOT}, e.g. {DEFAULT_PIN_DIR}",
            )
        )
    if "." in mount_point:
        # libbpf writes every '.' of a map's pin path as '_' (meant for names
        # like .rodata), so the maps would be pinned to a directory that is not.
        raise UsageError(
            (
                PIN_DIR,
                f" {path} is in the bpffs mounted at {mount_point}, and libbpf "
                "cannot pin maps below a path with a '.': mount bpffs at a path without "
                f"one, or use a directory below {BPFFS_ROOT}, e.g. {DEFAULT_PIN_DIR}",
            )
        )
    below = path.relative_to(mount_point).parts
    if any("." in part for part in below):
        # bpffs answers EPERM to any name with a dot ("reserved for extensions").
        raise UsageError(
            (
                PIN_DIR,
                f" {path}: bpffs does not allow '.' in names: use e.g. "
                f"{path.parent / path.name.replace('.', '-')}",
            )
        )
    layout = PinLayout(path)
    check_owned(layout)
    return layout


def check_owned(layout: PinLayout) -> None:
    """Refuse a pin dir, or a directory on the way to it below the bpffs mount,
    that is a symlink, not a directory, or not root's: whoever owns a directory
    there can swap or remove what is in it, and a symlink planted in a
    world-writable bpffs root would redirect root's commands.  Components that do
    not exist yet pass (`load` makes them, then calls this again)."""
    mount_point = Path(fs_type_of(layout.root)[0])
    below = layout.root.relative_to(mount_point).parts
    path = mount_point
    for part in below:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            inside = fs_type_of(Path(os.path.realpath(path)))[1] == "bpf"
            where = (
                "to another place in bpffs"
                if inside
                else "to a place that is not inside a bpffs mount"
            )
            raise UsageError(
                f"{path} is a symbolic link {where}: procmon-ctl follows no symbolic "
                f"links below {mount_point} (anyone who could write there could have "
                f"planted it); give a real directory, e.g. {DEFAULT_PIN_DIR}"
            )
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(
                (
                    f"{path} is not a directory (a pin?): give ",
                    PIN_DIR,
                    f" a directory of its own, e.g. {DEFAULT_PIN_DIR}",
                )
            )
        if st.st_uid != 0:
            raise UsageError(
                (
                    f"{path} belongs to uid {st.st_uid}, not root: someone else made it; "
                    f"remove it (rm -r {path}) or choose another ",
                    PIN_DIR,
                )
            )
