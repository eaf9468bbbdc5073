"""/proc/self/mountinfo is read in one place (system.read_mounts): the pin dir's bpffs
and the cgroup v2 mount are found by the same parser, so a mount point with a tab, a
newline or a backslash in its name (written \\011, \\012, \\134 there), or a carriage
return (written as it is), is the same path to both."""

from __future__ import annotations

import pytest
from conftest import in_private_mount_ns

from procmon_ctl.kernel import system

ODD_NAMES = {
    "tab": r"bpf\tfs",
    "backslash": r"bpf\\fs",
    "newline": r"bpf\nfs",
    "carriage-return": r"bpf\rfs",  # not escaped in mountinfo at all
}


@pytest.mark.parametrize("name", ODD_NAMES.values(), ids=ODD_NAMES.keys())
def test_a_bpffs_mounted_at_an_odd_path_holds_an_instance(bpf, name):
    """load, status and unload with --pin-dir below a bpffs mounted there, in a mount
    namespace of the test's own (its bpffs and its programs go with it)."""
    r = in_private_mount_ns(f"""
        mount -t tmpfs -o mode=700 tmpfs /run/procmon-ctl
        top=$(mktemp -d /tmp/procmon-XXXXXX)  # no '.': see the next test
        mount -t tmpfs tmpfs "$top"
        point="$top/$(printf '{name}')"
        mkdir "$point"
        mount -t bpf -o mode=700 bpf "$point"
        $CLI --pin-dir "$point/pm" load
        $CLI --pin-dir "$point/pm" status --json | grep -q '"loaded": *true'
        $CLI --pin-dir "$point/pm" unload
        test ! -e "$point/pm"
    """)
    assert r.returncode == 0, r.stderr


def test_a_bpffs_mounted_at_a_path_with_a_dot_is_refused(bpf):
    """libbpf pins maps at the path with every '.' made '_': refused before anything
    is made (bpftool said only "failed to pin all maps")."""
    r = in_private_mount_ns("""
        mount -t tmpfs -o mode=700 tmpfs /run/procmon-ctl
        top=$(mktemp -d /tmp/procmon-XXXXXX)
        mount -t tmpfs tmpfs "$top"
        mkdir "$top/bpf.fs"
        mount -t bpf -o mode=700 bpf "$top/bpf.fs"
        $CLI --pin-dir "$top/bpf.fs/pm" load && exit 9
        test ! -e "$top/bpf.fs/pm"
    """)
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("procmon-ctl: error: --pin-dir /tmp/procmon-"), line
    assert "cannot pin maps below a path with a '.'" in line, line


def test_escapes_and_stacked_mounts():
    mountinfo = (
        rb"30 1 0:27 / /a\011b rw - tmpfs tmpfs rw" + b"\n"
        rb"31 1 0:28 /sub\134dir /c\012d\040e rw shared:5 - bpf bpf rw" + b"\n"
        rb"32 30 0:29 / /a\011b rw - cgroup2 cgroup2 rw" + b"\n"
        b"33 1 0:30 / /f\rg rw - tmpfs tmpfs rw\n"
    )
    assert system.parse_mountinfo(mountinfo) == [
        system.Mount(b"/c\nd e", b"/sub\\dir", b"bpf"),
        system.Mount(b"/a\tb", b"/", b"cgroup2"),  # mounted over the tmpfs: hides it
        system.Mount(b"/f\rg", b"/", b"tmpfs"),
    ]
