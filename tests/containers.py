"""Real podman containers for the tests (helpers, not tests).

No registry is used: the one image is imported from a tarball holding the host's
static busybox (Debian's busybox-static) and a link per applet, once per test
session, and kept between sessions under the name IMAGE.

The flags are those this kind of machine needs (VERIFIED.md, "Containers and
cgroups here"): crun refuses hybrid cgroups, so runc; podman's default ulimits
are refused, so explicit ones; cgroupfs, since systemd may not be running.
Every container gets a unique name and a --timeout, and is removed when the
helper that made it is done, even when the test fails."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

IMAGE = "localhost/procmon-bb:1"
BUSYBOX = Path("/bin/busybox")
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
RUN_FLAGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1000:1000"]
LABEL = "procmon-test=1"  # podman ps -a --filter label=procmon-test=1: what a killed run left
# A container outlives a test process that is killed: podman stops it after this.
SAFETY_TIMEOUT = 600
# Serialises the import between test processes: two would leave an untagged copy.
_IMAGE_LOCK = Path("/run/lock/procmon-test-image.lock")
_image_ready = False


class RunningContainer(NamedTuple):
    id: str  # the full 64-hex id
    name: str
    pid: int  # the container's first process, as the host numbers it
    cgroup: str  # its cgroup v2 path, from the 0:: line of /proc/PID/cgroup


def _is_static_elf(path: Path) -> bool:
    """Whether path is an ELF executable without an interpreter (PT_INTERP): the
    image has no libc for a dynamic one."""
    try:
        with path.open("rb") as f:
            header = f.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
                return False  # only 64-bit ELF is expected here
            order = "<" if header[5] == 1 else ">"
            phoff, phentsize, phnum = (
                struct.unpack_from(order + "Q", header, 32)[0],
                *struct.unpack_from(order + "HH", header, 54),
            )
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    pt_interp = 3
    return all(
        struct.unpack_from(order + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def podman_problem() -> str | None:
    """Why a real container cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install podman runc busybox-static)"
    if not _is_static_elf(BUSYBOX):
        return f"{BUSYBOX} is not a static busybox (apt-get install busybox-static)"
    return None


def require_podman() -> None:
    """Skip without podman, but fail in CI: `make test` installs it (test-packages)."""
    problem = podman_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the container tests, but: {problem}")
        pytest.skip(f"no real container: {problem}")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def _rootfs_tar() -> bytes:
    """bin/busybox and a symbolic link for every applet where busybox puts it."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:

        def add(name: str, kind: bytes, mode: int, target: str = "", data: bytes = b"") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.size = kind, mode, target, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for directory in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "tmp", "proc", "sys"):
            add(directory, tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, 0o755, data=BUSYBOX.read_bytes())
        for applet in applets:
            if applet != "bin/busybox" and "/" in applet:
                add(applet, tarfile.SYMTYPE, 0o777, target="/bin/busybox")
    return out.getvalue()


def image() -> str:
    """IMAGE, imported on first use (skips the test if podman cannot run here)."""
    global _image_ready
    require_podman()
    if _image_ready:
        return IMAGE
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # no /run/lock (a read-only guest): no lock
            fcntl.flock(stack.enter_context(_IMAGE_LOCK.open("w")), fcntl.LOCK_EX)
        if podman("image", "exists", IMAGE, check=False).returncode != 0:
            with tempfile.TemporaryDirectory(prefix="procmon-rootfs-") as tmp:
                tar = Path(tmp) / "rootfs.tar"
                tar.write_bytes(_rootfs_tar())
                podman("import", str(tar), IMAGE)
    _image_ready = True
    return IMAGE


def remove_image() -> None:
    """For a session's end, if it wants to leave nothing behind."""
    global _image_ready
    if shutil.which("podman"):
        podman("rmi", "--ignore", IMAGE, check=False)
    _image_ready = False


def _unique_name() -> str:
    return f"procmon-test-{uuid.uuid4().hex[:12]}"


def run_container(
    args: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 120,
    input: str | None = None,
    podman_args: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """Run args in a new container of IMAGE and wait for it (podman run --rm):
    its stdout, stderr and status.  podman_args go before the image."""
    name = _unique_name()
    command = [
        *PODMAN,
        "run",
        "--rm",
        "--name",
        name,
        "--label",
        LABEL,
        "--timeout",
        str(SAFETY_TIMEOUT),
        *RUN_FLAGS,
        *(["-i"] if input is not None else []),
        *podman_args,
        image(),
        *args,
    ]
    finished = False
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        finished = True
    finally:
        if not finished:  # a timeout or an interrupt killed the client, not the container
            podman("rm", "--force", "--ignore", "--time", "0", name, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman run {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def cgroup_v2_of(pid: int) -> str:
    """The 0:: line of /proc/PID/cgroup: the process's cgroup v2 path."""
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        for line in f:
            if line.startswith(b"0::"):
                return os.fsdecode(line[3:].rstrip(b"\n"))
    raise AssertionError(f"no cgroup v2 line in /proc/{pid}/cgroup")


@contextlib.contextmanager
def running_container(*command: str, podman_args: Sequence[str] = ()) -> Iterator[RunningContainer]:
    """A detached container of IMAGE running command (default: sleep for the
    safety timeout), removed with everything in it when the block ends."""
    name = _unique_name()
    image_name = image()
    try:
        podman(
            "run",
            "-d",
            "--name",
            name,
            "--label",
            LABEL,
            "--timeout",
            str(SAFETY_TIMEOUT),
            *RUN_FLAGS,
            *podman_args,
            image_name,
            *(command or ("sleep", str(SAFETY_TIMEOUT))),
        )
        fields = podman("inspect", "--format", "{{.Id}} {{.State.Pid}}", name).stdout.split()
        container_id, pid = fields[0], int(fields[1])
        if pid <= 0:
            raise AssertionError(f"container {name} is not running: {command} exited at once")
        yield RunningContainer(container_id, name, pid, cgroup_v2_of(pid))
    finally:
        podman("rm", "--force", "--ignore", "--time", "0", name, check=False)
