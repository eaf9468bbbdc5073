"""procmon_ctl.process.cgroups: ids <-> paths, containers from paths, --cgroup/--container.

The pure parts (container_of, the JSON fragment, the cache, mountinfo) run
anywhere; the rest makes real cgroups under the v2 mount (root) and a real podman
container (tests/containers.py), and removes them even when a test fails."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from containers import IMAGE, cgroup_v2_of, require_podman, run_container, running_container

from procmon_ctl.errors import EXIT_MISSING, EXIT_USAGE, MissingError, UsageError
from procmon_ctl.kernel import system
from procmon_ctl.process import cgroups
from procmon_ctl.process.cgroups import (
    CgroupInfo,
    CgroupNames,
    CgroupTarget,
    Container,
    cgroup_id,
    cgroup_json,
    cgroup_path,
    cgroup_target,
    container_of,
    container_target,
    v2_root,
)
from procmon_ctl.process.decode import text
from procmon_ctl.process.runtimes import ContainerCatalog, ContainerMeta

HEX_A = "3f1c0a9d5be94e3f8a0b6c7d2e1f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5"
HEX_B = "b2e4f6a8c0d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3b5c7d9e1f3"
HEX_C = "c" * 64
POD = "7f3e2d1c-0b9a-4876-a5b4-c3d2e1f0a9b8"
POD_ = POD.replace("-", "_")
STATIC_POD = "5d41402abc4b2a76b9719d911017c592"

PODMAN = ("podman", HEX_A, None)
DOCKER = ("docker", HEX_A, None)

# (cgroup path, (runtime, id, pod uid) or None)
CONTAINER_PATHS = [
    # docker: cgroupfs driver, systemd driver, rootless, docker in docker
    (f"/docker/{HEX_A}", DOCKER),
    (f"/docker/{HEX_A}/sub", DOCKER),
    (f"/system.slice/docker-{HEX_A}.scope", DOCKER),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{HEX_A}.scope", DOCKER),
    (f"/docker/{HEX_B}/docker/{HEX_A}", DOCKER),
    (f"/system.slice/docker-{HEX_B}.scope/docker/{HEX_A}", DOCKER),
    ("/system.slice/docker.service", None),
    ("/system.slice/docker.socket", None),
    (f"/system.slice/docker-{HEX_A[:12]}.scope", None),  # not a full id
    (f"/{HEX_A}", None),  # a bare id says nothing of its runtime without a parent
    (f"/system.slice/{HEX_A}", None),
    # podman: cgroupfs (as here), systemd, rootless, in a pod; conmon is not the container
    (f"/libpod_parent/libpod-{HEX_A}", PODMAN),
    (f"/libpod_parent/libpod-{HEX_A}/sub/deeper", PODMAN),
    (f"/machine.slice/libpod-{HEX_A}.scope", PODMAN),
    (f"/machine.slice/libpod-{HEX_A}.scope/container", PODMAN),
    (f"/machine.slice/libpod-{HEX_A}.scope/container/sub", PODMAN),
    (f"/machine.slice/machine-libpod_pod_{HEX_B}.slice/libpod-{HEX_A}.scope/container", PODMAN),
    (
        f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{HEX_A}.scope/container",
        PODMAN,
    ),
    (f"/machine.slice/libpod-conmon-{HEX_A}.scope", None),
    (f"/machine.slice/machine-libpod_pod_{HEX_B}.slice", None),
    ("/libpod_parent/conmon", None),
    ("/libpod_parent", None),
    # containerd (CRI) with the systemd driver, and kind (kubelet-kubepods-...)
    (
        "/kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod{POD_}.slice/cri-containerd-{HEX_A}.scope",
        ("containerd", HEX_A, POD),
    ),
    (
        f"/kubepods.slice/kubepods-pod{POD_}.slice/cri-containerd-{HEX_A}.scope",
        ("containerd", HEX_A, POD),
    ),
    (
        f"/system.slice/docker-{HEX_B}.scope/kubelet.slice/kubelet-kubepods.slice/"
        "kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod{POD_}.slice/cri-containerd-{HEX_A}.scope",
        ("containerd", HEX_A, POD),
    ),
    ("/system.slice/containerd.service", None),
    # the cgroupfs driver: the path does not name the runtime
    (f"/kubepods/burstable/pod{POD}/{HEX_A}", ("cri", HEX_A, POD)),
    (f"/kubepods/besteffort/pod{POD}/{HEX_A}", ("cri", HEX_A, POD)),
    (f"/kubepods/pod{POD}/{HEX_A}", ("cri", HEX_A, POD)),
    (f"/kubepods/burstable/pod{STATIC_POD}/{HEX_A}", ("cri", HEX_A, STATIC_POD)),
    (f"/docker/{HEX_B}/kubepods/burstable/pod{POD}/{HEX_A}", ("cri", HEX_A, POD)),
    # CRI-O: systemd and cgroupfs drivers; crio-conmon is the monitor
    (
        "/kubepods.slice/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{POD_}.slice/crio-{HEX_A}.scope",
        ("cri-o", HEX_A, POD),
    ),
    (
        "/kubepods.slice/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{POD_}.slice/crio-{HEX_A}.scope/container",
        ("cri-o", HEX_A, POD),
    ),
    (f"/kubepods/burstable/pod{POD}/crio-{HEX_A}", ("cri-o", HEX_A, POD)),
    (
        "/kubepods.slice/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{POD_}.slice/crio-conmon-{HEX_A}.scope",
        (None, None, POD),
    ),
    # pod-level cgroups: a pod, no container
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice",
        (None, None, POD),
    ),
    (f"/kubepods.slice/kubepods-pod{POD_}.slice", (None, None, POD)),
    (f"/kubepods/burstable/pod{POD}", (None, None, POD)),
    (f"/kubepods/pod{POD}", (None, None, POD)),
    ("/kubepods.slice/kubepods-burstable.slice", None),
    ("/kubepods/burstable", None),
    (f"/system.slice/pod{POD}", None),  # pod<uid> means a pod only below kubepods
    # systemd-nspawn: as a service (--keep-unit: payload and supervisor) and as a scope
    ("/machine.slice/systemd-nspawn@web.service", ("systemd-nspawn", "web", None)),
    ("/machine.slice/systemd-nspawn@web.service/payload", ("systemd-nspawn", "web", None)),
    (
        "/machine.slice/systemd-nspawn@my\\x2dbox.service/payload/system.slice/cron.service",
        ("systemd-nspawn", "my-box", None),
    ),
    ("/machine.slice/systemd-nspawn@web.service/supervisor", None),
    ("/machine.slice/machine-my\\x2dbox.scope", ("systemd-nspawn", "my-box", None)),
    ("/machine.slice/machine-my\\x2dbox.scope/payload", ("systemd-nspawn", "my-box", None)),
    (
        f"/machine.slice/machine-my\\x2dbox.scope/payload/system.slice/docker-{HEX_A}.scope",
        DOCKER,
    ),
    ("/machine.slice/machine-qemu\\x2d1\\x2ddebian.scope", None),  # a libvirt VM
    (
        "/machine.slice/machine-lxc\\x2d4242\\x2dweb.scope",
        ("libvirt-lxc", "lxc-4242-web", None),
    ),
    ("/system.slice/machine-foo.scope", None),  # machined puts machines in machine.slice
    ("/machine.slice", None),
    ("/system.slice/systemd-machined.service", None),
    # not containers at all
    ("/", None),
    ("", None),
    ("/user.slice/user-1000.slice/session-2.scope", None),
    ("/system.slice/cron.service", None),
    ("/init.scope", None),
]


@pytest.mark.parametrize(("path", "expected"), CONTAINER_PATHS)
def test_container_of(path, expected):
    assert container_of(path) == (None if expected is None else Container(*expected))


def test_container_of_takes_uppercase_hex_as_no_id():
    # Runtimes write ids in lower case; an upper-case look-alike is someone's name.
    assert container_of(f"/docker/{HEX_A.upper()}") is None


# ---------------------------------------------------------------------------
# The JSON fragment and the cache


def test_json_fragment_of_a_plain_cgroup():
    info = CgroupInfo(4242, "/system.slice/cron.service", None, None, None)
    assert cgroup_json(info) == '"cgroup_id":4242,"cgroup":"/system.slice/cron.service"'


def test_json_fragment_of_a_removed_cgroup():
    assert cgroup_json(CgroupInfo(7, None, None, None, None)) == '"cgroup_id":7'


def test_json_fragment_of_a_container_and_a_pod():
    path = f"/kubepods/burstable/pod{POD}/crio-{HEX_A}"
    info = CgroupInfo(99, path, "cri-o", HEX_A, POD)
    assert cgroup_json(info) == (
        f'"cgroup_id":99,"cgroup":"{path}","container_id":"{HEX_A}",'
        f'"container_runtime":"cri-o","pod_uid":"{POD}"'
    )
    pod_only = CgroupInfo(98, f"/kubepods/pod{POD}", None, None, POD)
    assert (
        cgroup_json(pod_only) == f'"cgroup_id":98,"cgroup":"/kubepods/pod{POD}","pod_uid":"{POD}"'
    )


@pytest.mark.parametrize(
    "path",
    [
        "/machine.slice/machine-a\\x2db.scope",  # systemd's escape, shown as /proc shows it
        '/odd "quoted" name',
        "/\\xff\\\\x2d",  # text() of b"\xff\\x2d"
        "/tab\there/ünïcödé/\u2028",
    ],
)
def test_json_fragment_is_json_for_any_path(path):
    info = CgroupInfo(1 << 40, path, None, None, None)
    assert json.loads("{" + cgroup_json(info) + "}") == {"cgroup_id": 1 << 40, "cgroup": path}


class FakeTree:
    def __init__(self, paths: dict[int, str]):
        self.paths = paths
        self.asked: list[int] = []

    def __call__(self, cgroup_id: int) -> str | None:
        self.asked.append(cgroup_id)
        return self.paths.get(cgroup_id)


def test_cgroup_names_resolves_each_id_once():
    tree = FakeTree({10: f"/libpod_parent/libpod-{HEX_A}", 11: "/init.scope"})
    names = CgroupNames(path_of=tree)
    first = names.lookup(10)
    assert first == CgroupInfo(10, f"/libpod_parent/libpod-{HEX_A}", "podman", HEX_A, None)
    assert names.lookup(10) is first
    assert names.lookup(11) == CgroupInfo(11, "/init.scope", None, None, None)
    fragment = names.json_fragment(10)
    assert fragment == (
        f'"cgroup_id":10,"cgroup":"/libpod_parent/libpod-{HEX_A}",'
        f'"container_id":"{HEX_A}","container_runtime":"podman"'
    )
    assert names.json_fragment(10) is fragment
    assert tree.asked == [10, 11]


def test_cgroup_names_remembers_a_removed_cgroup_as_removed():
    tree = FakeTree({})
    names = CgroupNames(path_of=tree)
    assert names.lookup(12345) == CgroupInfo(12345, None, None, None, None)
    # Made again under the same name, a cgroup gets a new id: 12345 stays gone.
    tree.paths[12345] = "/would-be-wrong"
    assert names.lookup(12345).path is None
    assert names.json_fragment(12345) == '"cgroup_id":12345'
    assert tree.asked == [12345]


def test_cgroup_names_is_bounded():
    tree = FakeTree({i: f"/c{i}" for i in range(100)})
    names = CgroupNames(capacity=8, path_of=tree)
    for i in range(100):
        assert names.lookup(i).path == f"/c{i}"
        names.json_fragment(i)
        assert len(names) <= 8
    assert len(names._fragments) <= 8
    # The newest are kept, the oldest went first.
    tree.asked.clear()
    names.lookup(99)
    names.lookup(0)
    assert tree.asked == [0]


# ---------------------------------------------------------------------------
# mountinfo

HYBRID = b"""\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
"""
UNIFIED = b"""\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
90 29 0:26 / /mnt/other\\040cg rw,relatime - cgroup2 cgroup2 rw
"""


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [
        (HYBRID, b"/sys/fs/cgroup/unified"),
        (UNIFIED, b"/sys/fs/cgroup"),
        (UNIFIED.splitlines()[1], b"/mnt/other cg"),  # mountinfo's \040 is a space
        # A subtree's mount shows other paths than /proc/PID/cgroup: the whole one wins.
        (
            b"50 1 0:26 /sub /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
            b"51 1 0:26 / /run/cg rw - cgroup2 cgroup2 rw\n",
            b"/run/cg",
        ),
        # What is mounted over a cgroup2 mount hides it.
        (UNIFIED.splitlines()[0] + b"\n60 1 0:99 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", None),
        (HYBRID.replace(b"cgroup2 cgroup2", b"tmpfs tmpfs"), None),
        (b"garbage\n\n", None),
    ],
)
def test_v2_mount_point(mountinfo, expected):
    assert cgroups._v2_mount_point(system.parse_mountinfo(mountinfo)) == expected


def test_no_cgroup2_mounted_is_one_missing_line(monkeypatch):
    monkeypatch.setattr(cgroups, "read_mounts", lambda: system.parse_mountinfo(HYBRID[:200]))
    for call in (v2_root, lambda: cgroup_target("/x"), lambda: container_target("ab")):
        with pytest.raises(MissingError) as caught:
            call()
        assert caught.value.exit_code == EXIT_MISSING
        assert "\n" not in caught.value.message
        assert "mount -t cgroup2" in caught.value.message


def test_container_target_needs_a_prefix():
    with pytest.raises(UsageError) as caught:
        container_target("")
    assert "podman ps" in caught.value.message


# ---------------------------------------------------------------------------
# Real cgroups


def _v2_or_skip() -> Path:
    if os.geteuid() != 0:
        pytest.skip("not root: cannot make cgroups")
    try:
        return v2_root()
    except MissingError as e:
        pytest.skip(e.message)


def _remove_cgroup_tree(path: Path) -> None:
    """rmdir from the leaves up; a cgroup whose last process was just reaped may be
    busy a moment longer."""
    if not path.exists():
        return
    dirs = [Path(top) for top, _, _ in os.walk(path)]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        deadline = time.monotonic() + 5
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.fixture
def made_cgroups():
    """make(*names) makes a cgroup (nested names: a/b/c) under a directory of this
    test's own below the v2 root; all of it is removed afterwards."""
    root = _v2_or_skip()
    top = root / f"procmon-test-{uuid.uuid4().hex[:10]}"

    def make(*names: str | bytes) -> Path:
        path = os.fsencode(top)
        for name in names:
            path += b"/" + os.fsencode(name)
        os.makedirs(path, exist_ok=True)
        return Path(os.fsdecode(path))

    try:
        top.mkdir()
        yield make
    finally:
        _remove_cgroup_tree(top)


@contextlib.contextmanager
def sleeper_in(cgroup: Path):
    """A sleep process moved into cgroup, killed and reaped at the end."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        (cgroup / "cgroup.procs").write_text(str(proc.pid))
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _shown_0_line(pid: int) -> str:
    """The 0:: path of /proc/PID/cgroup the way cgroups shows paths: a component
    that is not UTF-8 as text(), the others as they are."""
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        raw = next(line for line in f if line.startswith(b"0::"))[3:].rstrip(b"\n")
    parts = []
    for p in raw.split(b"/"):
        try:
            parts.append(p.decode())
        except UnicodeDecodeError:
            parts.append(text(p))
    return "/".join(parts) or "/"


def test_id_and_path_both_ways(made_cgroups):
    root = v2_root()
    cgroup = made_cgroups("a", "b")
    rel = "/" + str(cgroup.relative_to(root))
    with sleeper_in(cgroup) as pid:
        assert cgroup_v2_of(pid) == rel
        found = cgroup_id(cgroup)
        # The file handle's 8 bytes and the inode number: the same kernfs id here.
        assert found == cgroup.stat().st_ino
        assert cgroup_path(found) == rel == _shown_0_line(pid)
        walked = cgroups._IdResolver(os.fsencode(root), use_handles=False)
        assert walked.path_of(found) == rel
        info = CgroupNames().lookup(found)
        assert info == CgroupInfo(found, rel, None, None, None)
    assert cgroup_path(cgroup_id(root)) == "/"
    assert cgroup_path(cgroup_id(cgroup.parent)) == rel.rsplit("/", 1)[0]


def test_handles_are_used_here():
    """open_by_handle_at must work as root on the v2 mount (the fallback reads the
    whole tree per new id)."""
    root = _v2_or_skip()
    resolver = cgroups._IdResolver(os.fsencode(root))
    assert resolver.use_handles
    assert resolver.path_of(cgroup_id(root)) == "/"
    assert resolver.use_handles


def test_without_the_capability_for_handles_the_tree_is_read(made_cgroups):
    """open_by_handle_at needs CAP_DAC_READ_SEARCH: without it (EPERM) ids are
    found by reading the tree, with the same answers."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv not installed")
    root = v2_root()
    cgroup = made_cgroups("no-cap")
    found = cgroup_id(cgroup)
    removed = made_cgroups("removed")
    gone = cgroup_id(removed)
    _remove_cgroup_tree(removed)
    script = (
        "import os, sys\n"
        "from procmon_ctl.process import cgroups\n"
        "r = cgroups._IdResolver(os.fsencode(cgroups.v2_root()))\n"
        "paths = [r.path_of(int(a)) for a in sys.argv[1:]]\n"
        "print(r.use_handles, *paths)\n"
    )
    result = subprocess.run(
        [
            "setpriv",
            "--bounding-set",
            "-dac_read_search",
            sys.executable,
            "-c",
            script,
            str(found),
            str(cgroup_id(root)),
            str(gone),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    rel = "/" + str(cgroup.relative_to(root))
    assert result.stdout.split() == ["False", rel, "/", "None"]


def test_a_removed_cgroup_has_no_path(made_cgroups):
    root = v2_root()
    cgroup = made_cgroups("gone")
    with sleeper_in(cgroup):
        gone_id = cgroup_id(cgroup)
    names = CgroupNames()
    assert names.lookup(gone_id).path == "/" + str(cgroup.relative_to(root))
    _remove_cgroup_tree(cgroup)
    assert cgroup_path(gone_id) is None
    assert cgroups._IdResolver(os.fsencode(root), use_handles=False).path_of(gone_id) is None
    assert CgroupNames().lookup(gone_id) == CgroupInfo(gone_id, None, None, None, None)
    # One made again under the same name is another cgroup.
    again = made_cgroups("gone")
    assert cgroup_id(again) != gone_id
    assert cgroup_path(gone_id) is None
    assert CgroupNames().json_fragment(gone_id) == f'"cgroup_id":{gone_id}'


def test_ids_that_never_were():
    _v2_or_skip()
    assert cgroup_path((1 << 64) - 1) is None
    assert cgroup_path(0) is None
    assert cgroup_path(-1) is None


def test_names_that_are_not_plain(made_cgroups):
    """A systemd-escaped name reads as in /proc; a byte that is not UTF-8 as text()
    shows it; --cgroup takes both back."""
    root = v2_root()
    top = "/" + str(made_cgroups().relative_to(root))
    systemd_like = made_cgroups("machine-a\\x2db.scope")
    not_utf8 = made_cgroups(b"caf\xe9 \\ x")
    for cgroup, shown in [
        (systemd_like, f"{top}/machine-a\\x2db.scope"),
        (not_utf8, f"{top}/caf\\xe9 \\\\ x"),
    ]:
        with sleeper_in(cgroup) as pid:
            assert _shown_0_line(pid) == shown
            found = cgroup_id(cgroup)
            assert cgroup_path(found) == shown
            assert cgroup_target(shown)[:3] == (found, 2, shown)


def test_cgroup_target_takes_both_forms(made_cgroups):
    root = v2_root()
    cgroup = made_cgroups("x", "y")
    rel = "/" + str(cgroup.relative_to(root))
    # The parent's id and the name: how the kernel knows the cgroup made anew.
    expected = CgroupTarget(cgroup_id(cgroup), 3, rel, cgroup_id(cgroup.parent), b"y")
    assert cgroup_target(str(cgroup)) == expected
    assert cgroup_target(rel) == expected
    assert cgroup_target(rel.lstrip("/")) == expected
    assert cgroup_target(rel + "/") == expected
    assert cgroup_target(rel + "/../y/.") == expected
    assert cgroup_target(str(cgroup.parent)) == CgroupTarget(
        cgroup_id(cgroup.parent), 2, rel.rsplit("/", 1)[0], cgroup_id(cgroup.parent.parent), b"x"
    )
    root_target = CgroupTarget(cgroup_id(root), 0, "/", 0, b"")
    assert cgroup_target("/") == root_target
    assert cgroup_target(str(root)) == root_target


def _usage_line(arg: str) -> str:
    with pytest.raises(UsageError) as caught:
        cgroup_target(arg)
    assert caught.value.exit_code == EXIT_USAGE
    message = caught.value.message
    assert "\n" not in message
    return message


def test_cgroup_target_refuses_what_is_not_a_v2_cgroup(made_cgroups, tmp_path):
    root = v2_root()
    cgroup = made_cgroups("here")
    missing = "/" + str(cgroup.relative_to(root)) + "-not"
    message = _usage_line(missing)
    assert message.startswith(f"no cgroup {missing} ")
    assert str(root) in message
    assert "/proc/PID/cgroup" in message
    message = _usage_line(str(root / "procmon-test-no" / "such"))
    assert message.startswith("no cgroup ")
    message = _usage_line(str(cgroup / "cgroup.procs"))
    assert "not a cgroup" in message and str(cgroup) in message
    message = _usage_line(str(tmp_path))
    assert "not in the cgroup v2 hierarchy" in message and str(root) in message
    message = _usage_line("")
    assert "needs a cgroup v2 path" in message
    assert "\n" not in _usage_line("/bad\nname")


def test_cgroup_target_refuses_v1():
    root = _v2_or_skip()
    v1 = [m.point for m in system.read_mounts() if m.fstype == b"cgroup"]
    if not v1:
        pytest.skip("no cgroup v1 hierarchy mounted here")
    for arg in (os.fsdecode(v1[0]), os.fsdecode(v1[0]) + "/some/child"):
        message = _usage_line(arg)
        assert "only cgroup v2 is supported" in message
        assert f"mounted at {root}" in message


def test_container_target_in_a_made_tree(made_cgroups):
    """The outermost cgroup of the container (libpod-<id>.scope, not its container
    child); a prefix that names two containers, or none, is refused."""
    root = v2_root()
    shared = uuid.uuid4().hex[:16]
    one = shared + uuid.uuid4().hex + uuid.uuid4().hex[:16]
    other = shared + uuid.uuid4().hex + uuid.uuid4().hex[:16]
    scope = made_cgroups(f"libpod-{one}.scope")
    made_cgroups(f"libpod-{one}.scope", "container", "sub")
    made_cgroups(f"docker-{other}.scope")
    rel = "/" + str(scope.relative_to(root))
    expected = CgroupTarget(
        cgroup_id(scope), 2, rel, cgroup_id(scope.parent), f"libpod-{one}.scope".encode()
    )
    assert container_target(one[:20]) == expected
    assert container_target(one[:20].upper()) == expected
    assert container_target(one) == expected

    with pytest.raises(UsageError) as caught:
        container_target(shared)
    message = caught.value.message
    assert message.startswith(f"{shared} is the start of 2 container ids: ")
    listed = dict(re.findall(r"([0-9a-f]{12,}) \(([\w-]+)\)", message))
    # Longer than 12 digits where 12 would not tell them apart.
    assert sorted(listed.values()) == ["docker", "podman"]
    for shown, runtime in listed.items():
        assert (one if runtime == "podman" else other).startswith(shown)
    assert "give more characters" in message and "\n" not in message

    absent = "f" * 20 + uuid.uuid4().hex
    with pytest.raises(UsageError) as caught:
        container_target(absent)
    assert absent in caught.value.message and "podman ps" in caught.value.message


def test_container_target_lists_at_most_five(made_cgroups):
    shared = uuid.uuid4().hex[:16]
    ids = sorted(shared + uuid.uuid4().hex + uuid.uuid4().hex[:16] for _ in range(7))
    for cid in ids:
        made_cgroups(f"docker-{cid}.scope")
    with pytest.raises(UsageError) as caught:
        container_target(shared)
    message = caught.value.message
    assert "7 container ids" in message and "and 2 more" in message
    listed = re.findall(r"([0-9a-f]{12,}) \(docker\)", message)
    assert [any(cid.startswith(shown) for cid in ids[:5]) for shown in listed] == [True] * 5
    assert not any(ids[5].startswith(shown) or ids[6].startswith(shown) for shown in listed)


# ---------------------------------------------------------------------------
# A real podman container


@pytest.fixture
def container():
    require_podman()
    _v2_or_skip()
    with running_container() as running:
        yield running


def test_a_podman_container(container):
    root = v2_root()
    assert container_of(container.cgroup) == Container("podman", container.id, None)
    target = container_target(container.id[:12])
    assert target.path == container.cgroup
    assert target.id == cgroup_id(os.fsencode(root) + os.fsencode(container.cgroup))
    assert target.level == container.cgroup.count("/")
    assert container_target(container.id.upper()[:8]) == target
    info = CgroupNames().lookup(target.id)
    assert info == CgroupInfo(
        target.id, container.cgroup, "podman", container.id, None, container.name, IMAGE
    )
    assert cgroup_target(container.cgroup) == target
    assert container_target(container.name) == target


def test_run_container_sees_its_own_cgroup():
    require_podman()
    result = run_container(["/bin/sh", "-c", "cat /proc/self/cgroup; echo pid=$$"])
    lines = result.stdout.splitlines()
    assert "pid=1" in lines
    v2 = next(line[3:] for line in lines if line.startswith("0::"))
    # A private cgroup namespace (the default on a pure v2 host) shows "/".
    found = container_of(v2)
    assert v2 == "/" or (found is not None and found.runtime == "podman")


# --- names and images from the runtimes' state files (runtimes.py) ---------------------


def catalog_in(tmp_path: Path) -> ContainerCatalog:
    """A catalog of state files written here in each runtime's format (podman and
    CRI-O's containers.json, docker's config.v2.json, a containerd task bundle)."""
    storage = tmp_path / "containers.json"
    metadata = json.dumps({"image-name": "localhost/web:2", "name": "ux-web"})
    storage.write_text(
        json.dumps([{"id": HEX_A, "names": ["ux-web"], "image": "b4e0", "metadata": metadata}])
    )
    docker = tmp_path / "docker"
    (docker / HEX_B).mkdir(parents=True)
    (docker / HEX_B / "config.v2.json").write_text(
        json.dumps({"ID": HEX_B, "Name": "/db", "Config": {"Image": "postgres:16"}})
    )
    tasks = tmp_path / "tasks"
    bundle = tasks / "k8s.io" / HEX_C
    bundle.mkdir(parents=True)
    notes = {
        "io.kubernetes.cri.sandbox-name": "web-7f9c",
        "io.kubernetes.cri.container-name": "nginx",
        "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.27",
    }
    (bundle / "config.json").write_text(json.dumps({"annotations": notes}))
    return ContainerCatalog(storage, docker, tasks)


def test_the_runtimes_name_their_containers(tmp_path):
    catalog = catalog_in(tmp_path)
    assert catalog.meta(HEX_A) == ContainerMeta("ux-web", "localhost/web:2")
    assert catalog.meta(HEX_B) == ContainerMeta("db", "postgres:16")
    assert catalog.meta(HEX_C) == ContainerMeta("web-7f9c/nginx", "docker.io/library/nginx:1.27")
    assert catalog.meta("f" * 64) is None
    assert catalog.ids_named("db") == [HEX_B] and catalog.ids_named("nope") == []
    # A container made since is found once asked for (the file changed).
    storage = tmp_path / "containers.json"
    entries = json.loads(storage.read_text())
    entries.append({"id": "e" * 64, "names": ["late"], "metadata": "{}"})
    storage.write_text(json.dumps(entries))
    os.utime(storage, ns=(1, 1))  # another mtime, however fast this runs
    assert catalog.ids_named("late") == ["e" * 64]


def test_unreadable_or_strange_state_files_give_no_names(tmp_path):
    (tmp_path / "containers.json").write_text("{not json")
    catalog = ContainerCatalog(tmp_path / "containers.json", tmp_path / "none", tmp_path / "no")
    assert catalog.meta(HEX_A) is None and catalog.ids_named("x") == []
    (tmp_path / "containers.json").write_text(json.dumps([{"names": ["x"]}, 7, {"id": 3}]))
    os.utime(tmp_path / "containers.json", ns=(2, 2))
    assert catalog.ids_named("x") == []


def test_json_lines_carry_the_container_s_name_and_image(tmp_path):
    tree = FakeTree({10: f"/libpod_parent/libpod-{HEX_A}"})
    names = CgroupNames(path_of=tree, catalog=catalog_in(tmp_path))
    assert names.json_fragment(10) == (
        f'"cgroup_id":10,"cgroup":"/libpod_parent/libpod-{HEX_A}",'
        f'"container_id":"{HEX_A}","container_runtime":"podman",'
        '"container_name":"ux-web","container_image":"localhost/web:2"'
    )
