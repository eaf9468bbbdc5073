"""Cgroup ids, paths and container identity: the one module that knows them.

The BPF programs put in each record the id of the process's cgroup in the v2
(default) hierarchy, as bpf_get_current_cgroup_id() returns it: the kernfs node
id of the cgroup's directory.  They filter by "the ancestor of the task's cgroup
at level L has id I" (the v2 root is level 0, /a is 1, /a/b is 2).  Here

- ids become paths and back (cgroup_id, cgroup_path, CgroupNames for the reader),
- a path tells which container or pod it belongs to (container_of, pure),
- a user's --cgroup or --container becomes the (id, level) the kernel filters by
  (cgroup_target, container_target).

Paths are shown as the 0:: line of /proc/PID/cgroup shows them: relative to where
cgroup2 is mounted, starting with "/" ("/" for the root).  A path component is
bytes: one that is valid UTF-8 is shown as it is, so that systemd's escapes
(machine-a\\x2db.scope) read as in /proc and systemd-cgls; any other as
decode.text() shows it (a byte that is not UTF-8 as \\xNN)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import itertools
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from ..errors import Given, MissingError, ProcmonError, Setting, UsageError, Words
from ..kernel.system import Mount, read_mounts
from .decode import json_string, text, unescape
from .runtimes import ContainerCatalog

CACHE_LIMIT = 4096  # CgroupNames entries: a host may create cgroups without end

# include/linux/exportfs.h: since 5.5 a kernfs file handle is the node's 64-bit id,
# which is also what bpf_get_current_cgroup_id() returns.
FILEID_KERNFS = 0xFE
_AT_FDCWD = -100
# Where cgroup2 is mounted on a pure v2 system, then beside v1 (hybrid); anything
# else only if neither is there.
_PREFERRED_V2_MOUNTS = (b"/sys/fs/cgroup", b"/sys/fs/cgroup/unified")


class CgroupInfo(NamedTuple):
    id: int
    path: str | None  # None: the cgroup has been removed since the record was made
    runtime: str | None
    container_id: str | None
    pod_uid: str | None
    container_name: str | None = None  # as its runtime has it (runtimes.py)
    container_image: str | None = None


class CgroupTarget(NamedTuple):
    """What the kernel filters by: the ancestor of a task's cgroup at `level` has `id`;
    and how it knows the cgroup made anew at the same path: made in the cgroup
    `parent_id` (0 for the root, which has none), named `name`."""

    id: int
    level: int
    path: str
    parent_id: int = 0
    name: bytes = b""


def _target(root: bytes, rel: bytes, found: int) -> CgroupTarget:
    """The target of the cgroup `rel` below the v2 mount at `root`, whose id is found."""
    level = _level(rel)
    parent, name = posixpath.split(rel.rstrip(b"/"))
    parent_id = (_id_of(root + parent) or 0) if level else 0
    return CgroupTarget(found, level, _shown(rel), parent_id, name if level else b"")


class Container(NamedTuple):
    """What a cgroup path tells of the container it belongs to.  runtime and id are
    None only for a Kubernetes pod's own cgroup (pod_uid set, no container)."""

    runtime: str | None
    id: str | None
    pod_uid: str | None


# ---------------------------------------------------------------------------
# Where cgroup2 is mounted


def _v2_mount_point(mounts: list[Mount]) -> bytes | None:
    v2 = [m for m in mounts if m.fstype == b"cgroup2"]
    # A mount of a subtree (a bind mount, another cgroup namespace's view) would
    # show paths that are not those of /proc/PID/cgroup.
    whole = [m for m in v2 if m.root == b"/"] or v2
    points = [m.point for m in whole]
    for preferred in _PREFERRED_V2_MOUNTS:
        if preferred in points:
            return preferred
    return points[0] if points else None


def _v2_root_bytes(mounts: list[Mount] | None = None) -> bytes:
    point = _v2_mount_point(read_mounts() if mounts is None else mounts)
    if point is None:
        raise MissingError(
            "no cgroup v2 file system is mounted (no cgroup2 in /proc/self/mountinfo): mount it,"
            " e.g. mount -t cgroup2 none /sys/fs/cgroup (or /sys/fs/cgroup/unified beside v1)"
        )
    return point


def v2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted (MissingError if nowhere)."""
    return Path(os.fsdecode(_v2_root_bytes()))


# ---------------------------------------------------------------------------
# Path text


def _component_text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return text(raw)


def _shown(rel: bytes) -> str:
    """A path below the v2 mount (b"" or b"/a/b") as shown: "/" or "/a/b"."""
    return "/" + "/".join(_component_text(p) for p in rel.split(b"/") if p)


def _level(rel: bytes) -> int:
    return sum(1 for p in rel.split(b"/") if p)


def _quoted(s: str) -> Given:
    """s for an error line: as it is if printable, else (the CLI names) its bytes
    quoted as a process's arguments are."""
    return Given(s, as_is_if_printable=True)


# ---------------------------------------------------------------------------
# Ids <-> paths


class _KernfsHandle(ctypes.Structure):
    # struct file_handle whose f_handle is a kernfs id (FILEID_KERNFS), native order
    _fields_ = (
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("id", ctypes.c_uint64),
    )


class _HandleCalls(NamedTuple):
    name_to_handle_at: Callable[..., int]
    open_by_handle_at: Callable[..., int]


@functools.cache
def _handle_calls() -> _HandleCalls | None:
    """libc's name_to_handle_at and open_by_handle_at, None if this libc lacks them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        to_handle, by_handle = libc.name_to_handle_at, libc.open_by_handle_at
    except (OSError, AttributeError):
        return None
    handle = ctypes.POINTER(_KernfsHandle)
    to_handle.argtypes = (
        ctypes.c_int,
        ctypes.c_char_p,
        handle,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    )
    to_handle.restype = ctypes.c_int
    by_handle.argtypes = (ctypes.c_int, handle, ctypes.c_int)
    by_handle.restype = ctypes.c_int
    return _HandleCalls(to_handle, by_handle)


# The kernel or libc cannot do file handles here (no CAP_DAC_READ_SEARCH, a kernel
# before FILEID_KERNFS, seccomp): the tree can still be read.
_NO_HANDLES = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM, errno.EINVAL})
_GONE = frozenset({errno.ESTALE, errno.ENOENT})


def _id_of(raw: bytes) -> int | None:
    """The kernfs id of the directory at raw; None if there is nothing there."""
    if b"\0" in raw:  # no file has such a name, and C would read it cut short
        return None
    calls = _handle_calls()
    if calls is not None:
        handle, mount_id = _KernfsHandle(handle_bytes=8), ctypes.c_int()
        if calls.name_to_handle_at(_AT_FDCWD, raw, handle, mount_id, 0) == 0:
            if handle.handle_type != FILEID_KERNFS or handle.handle_bytes != 8:
                raise UsageError((_quoted(os.fsdecode(raw)), " is not on a cgroup file system"))
            return handle.id
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return None
        if err == errno.EOVERFLOW:  # its handle is longer than a kernfs id's
            raise UsageError((_quoted(os.fsdecode(raw)), " is not on a cgroup file system"))
        if err not in _NO_HANDLES:
            raise ProcmonError(
                (
                    "cannot read the cgroup id of ",
                    _quoted(os.fsdecode(raw)),
                    f": {os.strerror(err)}",
                )
            )
    # On 64-bit kernels since 5.5 a kernfs inode number is the node's id.
    try:
        return os.stat(raw).st_ino
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ProcmonError(
            ("cannot read the cgroup id of ", _quoted(os.fsdecode(raw)), f": {e.strerror}")
        ) from None


def cgroup_id(path: str | bytes | os.PathLike) -> int:
    """The id of the cgroup directory `path` in the v2 hierarchy: what
    bpf_get_current_cgroup_id() returns for a task in it.  (On a v1 hierarchy the
    answer is an id of that hierarchy, meaningless to the programs: cgroup_target
    checks where a user's path is.)"""
    raw = os.fsencode(path)
    found = _id_of(raw)
    if found is None:
        raise UsageError(("no cgroup at ", _quoted(os.fsdecode(raw))))
    return found


class _HandlesUnavailable(Exception):
    pass


def _below(path: bytes, root: bytes) -> bytes | None:
    """path relative to root (b"" or b"/a/b"), None if it is not below it."""
    if path == root:
        return b""
    if root == b"/":
        return path
    return path[len(root) :] if path.startswith(root + b"/") else None


def _cgroup_dirs(root: bytes) -> Iterator[tuple[bytes, int]]:
    """(path relative to root, inode) of root and of every directory below it.
    What goes away while it is read is left out."""
    yield b"", os.stat(root).st_ino
    pending = [b""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(root + rel) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        below = rel + b"/" + entry.name
                        yield below, entry.inode()
                        pending.append(below)
        except OSError:
            continue


class _IdResolver:
    """Cgroup ids to paths: by file handle (one open, one readlink per id), or,
    where handles cannot be opened, by reading the whole tree again whenever an
    id is not in the last reading."""

    def __init__(self, root: bytes, use_handles: bool = True):
        self.root = root
        self.use_handles = use_handles and _handle_calls() is not None
        self._tree: dict[int, bytes] | None = None

    def path_of(self, cgroup_id: int) -> str | None:
        if self.use_handles:
            try:
                rel = self._by_handle(cgroup_id)
            except _HandlesUnavailable:
                self.use_handles = False
            else:
                return None if rel is None else _shown(rel)
        rel = self._by_walk(cgroup_id)
        return None if rel is None else _shown(rel)

    def _by_handle(self, cgroup_id: int) -> bytes | None:
        calls = _handle_calls()
        assert calls is not None
        if not 0 <= cgroup_id < 1 << 64:
            return None
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            mount_fd = os.open(self.root, flags)
        except OSError as e:
            raise MissingError(
                (
                    "cannot open the cgroup v2 mount ",
                    _quoted(os.fsdecode(self.root)),
                    f": {e.strerror}",
                )
            ) from None
        try:
            handle = _KernfsHandle(handle_bytes=8, handle_type=FILEID_KERNFS, id=cgroup_id)
            fd = calls.open_by_handle_at(mount_fd, handle, flags)
            if fd < 0:
                err = ctypes.get_errno()
                if err in _GONE:
                    return None
                if err in _NO_HANDLES:
                    raise _HandlesUnavailable
                raise ProcmonError(f"cannot open cgroup id {cgroup_id}: {os.strerror(err)}")
            try:
                try:
                    path = os.readlink(b"/proc/self/fd/%d" % fd)
                except OSError:  # no /proc: the tree can still be read
                    raise _HandlesUnavailable from None
                rel = _below(path, self.root)
                # Removed between the open and the readlink, the name reads
                # "... (deleted)"; removed and made again, it is another cgroup.
                if rel is None or not _same_file(path, os.fstat(fd)):
                    return None
                return rel
            finally:
                os.close(fd)
        finally:
            os.close(mount_fd)

    def _by_walk(self, cgroup_id: int) -> bytes | None:
        if self._tree is None or cgroup_id not in self._tree:
            try:
                self._tree = {ino: rel for rel, ino in _cgroup_dirs(self.root)}
            except OSError as e:
                raise MissingError(
                    (
                        "cannot read the cgroup v2 tree at ",
                        _quoted(os.fsdecode(self.root)),
                        f": {e.strerror}",
                    )
                ) from None
        return self._tree.get(cgroup_id)


def _same_file(path: bytes, st: os.stat_result) -> bool:
    try:
        there = os.stat(path)
    except OSError:
        return False
    return (there.st_dev, there.st_ino) == (st.st_dev, st.st_ino)


def cgroup_path(cgroup_id: int) -> str | None:
    """The path of a cgroup v2 id as /proc/PID/cgroup shows it; None once the
    cgroup has been removed (the kernel never gives its id to another)."""
    return _IdResolver(_v2_root_bytes()).path_of(cgroup_id)


# ---------------------------------------------------------------------------
# The reader's cache


def cgroup_json(info: CgroupInfo) -> str:
    """The JSON members a record gets for its cgroup, without braces or a leading
    comma: "cgroup_id":N,"cgroup":"/path" ("cgroup" absent once removed), then the container
    and pod members that are known."""
    # Absent rather than null once removed, as every JSON field that does not apply.
    fragment = f'"cgroup_id":{info.id}'
    if info.path is not None:
        fragment += f',"cgroup":{json_string(info.path)}'
    if info.container_id is not None:
        fragment += f',"container_id":{json_string(info.container_id)}'
    if info.runtime is not None:
        fragment += f',"container_runtime":{json_string(info.runtime)}'
    if info.container_name is not None:
        fragment += f',"container_name":{json_string(info.container_name)}'
    if info.container_image is not None:
        fragment += f',"container_image":{json_string(info.container_image)}'
    if info.pod_uid is not None:
        fragment += f',"pod_uid":{json_string(info.pod_uid)}'
    return fragment


def _remember(cache: dict, key, value, capacity: int) -> None:
    if len(cache) >= capacity:
        del cache[next(iter(cache))]  # the oldest: dicts keep insertion order
    cache[key] = value


class CgroupNames:
    """What the reader asks per record: one dict lookup once an id has been seen.
    A removed cgroup is remembered as removed: its id is never reused.

    path_of (an id to its path, None when gone) is for tests; by default ids are
    resolved on the cgroup v2 mount, which must exist (MissingError)."""

    def __init__(
        self,
        capacity: int = CACHE_LIMIT,
        path_of: Callable[[int], str | None] | None = None,
        catalog: ContainerCatalog | None = None,
    ):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._path_of = path_of or _IdResolver(_v2_root_bytes()).path_of
        self._catalog = catalog or ContainerCatalog()
        self._capacity = capacity
        self._infos: dict[int, CgroupInfo] = {}
        self._fragments: dict[int, str] = {}

    def lookup(self, cgroup_id: int) -> CgroupInfo:
        info = self._infos.get(cgroup_id)
        if info is None:
            info = self._resolve(cgroup_id)
        return info

    def json_fragment(self, cgroup_id: int) -> str:
        """cgroup_json() of the id, made once per id."""
        fragment = self._fragments.get(cgroup_id)
        if fragment is None:
            fragment = cgroup_json(self.lookup(cgroup_id))
            _remember(self._fragments, cgroup_id, fragment, self._capacity)
        return fragment

    def __len__(self) -> int:
        return len(self._infos)

    def _resolve(self, cgroup_id: int) -> CgroupInfo:
        path = self._path_of(cgroup_id)
        container = container_of(path) if path is not None else None
        if container is None:
            info = CgroupInfo(cgroup_id, path, None, None, None)
        else:
            meta = self._catalog.meta(container.id) if container.id else None
            info = CgroupInfo(
                cgroup_id,
                path,
                container.runtime,
                container.id,
                container.pod_uid,
                *(meta or ()),
            )
        _remember(self._infos, cgroup_id, info, self._capacity)
        return info


# ---------------------------------------------------------------------------
# Containers from paths

# <prefix>-<64 hex>[.scope]: the runtime's own cgroup for the container.  Its
# monitor's cgroup (libpod-conmon-<id>, crio-conmon-<id>) does not match: not hex.
_SCOPED_CONTAINER = re.compile(r"(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})(?:\.scope)?")
_RUNTIME_OF_PREFIX = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
}
_HEX64 = re.compile(r"[0-9a-f]{64}")
# A pod's uid is a UUID; a static pod's is 32 hex digits (a hash of its manifest).
# In systemd slice names the UUID's dashes are underscores.
_POD_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}"
# systemd driver: kubepods-burstable-pod<uid>.slice, kubepods-pod<uid>.slice
# (guaranteed), kubelet-kubepods-...-pod<uid>.slice (kind).
_POD_SLICE = re.compile(rf"(?:[\w.-]*-)?kubepods(?:-besteffort|-burstable)?-pod({_POD_UID})\.slice")
# cgroupfs driver: /kubepods/burstable/pod<uid>, /kubepods/pod<uid> (guaranteed).
_POD_DIR = re.compile(rf"pod({_POD_UID})")
_NSPAWN_SERVICE = re.compile(r"systemd-nspawn@(.+)\.service")
_MACHINE_SCOPE = re.compile(r"machine-(.+)\.scope")
# machined also registers libvirt's guests: a VM (qemu-N-name) is no container.
_LIBVIRT_MACHINE = re.compile(r"(qemu|lxc)-[0-9]+-.+")
_SYSTEMD_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
# nspawn --keep-unit (as systemd-nspawn@.service runs it) moves itself to this
# child of the unit's cgroup and the container to "payload".
_NSPAWN_SUPERVISOR = "supervisor"


def _systemd_unescape(name: str) -> str:
    if "\\" not in name:
        return name
    raw = name.encode("utf-8", "surrogateescape")
    return _component_text(_SYSTEMD_ESCAPE.sub(lambda m: bytes((int(m[1], 16),)), raw))


def _machine(parts: list[str], i: int) -> tuple[str, str] | None:
    """(runtime, id) if parts[i] is the cgroup of a machine registered with
    systemd-machined that is a container."""
    part = parts[i]
    m = _NSPAWN_SERVICE.fullmatch(part)
    if m:
        return "systemd-nspawn", _systemd_unescape(m[1])
    m = _MACHINE_SCOPE.fullmatch(part)
    if m and i > 0 and parts[i - 1] == "machine.slice":
        name = _systemd_unescape(m[1])
        libvirt = _LIBVIRT_MACHINE.fullmatch(name)
        if libvirt is None:
            return "systemd-nspawn", name
        if libvirt[1] == "lxc":
            return "libvirt-lxc", name
    return None


def container_of(path: str) -> Container | None:
    """The container (runtime, full id) and Kubernetes pod a cgroup path belongs
    to, from the path alone.  A cgroup below a container's belongs to it; of
    nested containers the innermost counts.  None: neither container nor pod."""
    parts = [p for p in path.split("/") if p]
    containers: list[tuple[int, str, str]] = []  # (index in parts, runtime, id)
    pod: tuple[int, str] | None = None
    in_kubepods = False
    for i, part in enumerate(parts):
        if part == "kubepods":
            in_kubepods = True
            continue
        m = _SCOPED_CONTAINER.fullmatch(part)
        if m:
            containers.append((i, _RUNTIME_OF_PREFIX[m[1]], m[2]))
            continue
        if _HEX64.fullmatch(part):
            if i > 0 and parts[i - 1] == "docker":
                containers.append((i, "docker", part))
            elif pod is not None and pod[0] == i - 1:
                # The path does not name the runtime: containerd, or cri-dockerd.
                containers.append((i, "cri", part))
            continue
        m = _POD_SLICE.fullmatch(part)
        if m is None and in_kubepods:
            m = _POD_DIR.fullmatch(part)
        if m:
            pod = (i, m[1].replace("_", "-"))
            continue
        if (
            part == _NSPAWN_SUPERVISOR
            and containers
            and containers[-1][0] == i - 1
            and containers[-1][1] == "systemd-nspawn"
        ):
            containers.pop()  # nspawn itself, like conmon: not the container
            continue
        machine = _machine(parts, i)
        if machine:
            containers.append((i, *machine))
    innermost = containers[-1] if containers else None
    if pod is not None and (innermost is None or pod[0] > innermost[0]):
        return Container(None, None, pod[1])
    if innermost is None:
        return None
    return Container(innermost[1], innermost[2], pod[1] if pod is not None else None)


# ---------------------------------------------------------------------------
# --cgroup and --container


def _how_to_name(root: Given) -> Words:
    return ("give a directory below ", root, " or the path on the 0:: line of /proc/PID/cgroup")


def _mount_under(path: bytes, points: list[bytes]) -> tuple[bytes, bytes] | None:
    """(mount point, path relative to it) for the deepest of points that path is in."""
    best = None
    for point in points:
        rel = _below(path, point)
        if rel is not None and (best is None or len(point) > len(best[0])):
            best = (point, rel)
    return best


def _candidates(component: bytes) -> list[bytes]:
    """The names a shown path component can stand for: itself, and, if it has
    escapes, the bytes text() would have shown that way."""
    names = [component]
    if b"\\" in component:
        with contextlib.suppress(UnicodeEncodeError):  # not text() of anything
            names.append(unescape(component.decode("utf-8", "surrogateescape")))
    return names


def _find(root: bytes, rel: bytes) -> bytes | None:
    """rel (as shown) below root as a real path, or None if there is no such entry."""
    found = root
    for component in (p for p in rel.split(b"/") if p):
        for name in _candidates(component):
            there = found.rstrip(b"/") + b"/" + name
            if os.path.lexists(there):
                found = there
                break
        else:
            return None
    return found


def cgroup_target(arg: str) -> CgroupTarget:
    """--cgroup PATH: a directory below the cgroup v2 mount
    (/sys/fs/cgroup/unified/a/b here), or a path relative to it as /proc/PID/cgroup
    shows it (/a/b; "a/b" too)."""
    mounts = read_mounts()
    root = _v2_root_bytes(mounts)
    shown_root = _quoted(os.fsdecode(root))
    if not arg:
        raise UsageError(
            (Setting("cgroup"), " needs a cgroup v2 path: ", *_how_to_name(shown_root))
        )
    raw = os.fsencode(arg)
    normal = b"/" + posixpath.normpath(raw if raw.startswith(b"/") else b"/" + raw).lstrip(b"/")
    v2_points = [m.point for m in mounts if m.fstype == b"cgroup2"]
    in_v2 = _mount_under(normal, v2_points) if raw.startswith(b"/") else None
    if in_v2 is None:
        v1_points = [m.point for m in mounts if m.fstype == b"cgroup"]
        if raw.startswith(b"/") and _mount_under(normal, v1_points) is not None:
            raise UsageError(
                (
                    _quoted(arg),
                    " is in a cgroup v1 hierarchy: only cgroup v2 is supported (mounted at ",
                    shown_root,
                    "); ",
                    *_how_to_name(shown_root),
                )
            )
        rel = normal
    else:
        rel = in_v2[1]
    found = _find(root, rel)
    if found is None:
        if in_v2 is None and raw.startswith(b"/") and os.path.lexists(raw):
            raise UsageError(
                (
                    _quoted(arg),
                    " is not in the cgroup v2 hierarchy (mounted at ",
                    shown_root,
                    "): ",
                    *_how_to_name(shown_root),
                )
            )
        looked = () if in_v2 else (" (looked for ", _quoted(os.fsdecode(root + rel)), ")")
        raise UsageError(("no cgroup ", _quoted(arg), *looked, ": ", *_how_to_name(shown_root)))
    try:
        is_dir = stat.S_ISDIR(os.stat(found).st_mode)
    except OSError as e:
        raise UsageError(("cannot read cgroup ", _quoted(arg), f": {e.strerror}")) from None
    if not is_dir:
        raise UsageError(
            (
                _quoted(os.fsdecode(found)),
                " is a file of a cgroup, not a cgroup: give its directory (",
                _quoted(os.fsdecode(posixpath.dirname(found))),
                ")",
            )
        )
    real_rel = _below(found, root)
    assert real_rel is not None
    return _target(root, real_rel, cgroup_id(found))


class ContainerNotRunning(UsageError):
    """--container names no running container: none of that name or id prefix has
    a cgroup now.  `stopped_id`: the id of the one its runtime knows by that name
    (created or stopped, not running), None when none is known."""

    def __init__(self, words: Words, name: str, stopped_id: str | None):
        super().__init__(words)
        self.name, self.stopped_id = name, stopped_id


def any_container_running() -> bool:
    """Whether a container has a cgroup in the cgroup v2 tree now (False without
    cgroup v2)."""
    try:
        root = _v2_root_bytes()
        for rel, _inode in _cgroup_dirs(root):
            found = container_of(_shown(rel)) if rel else None
            if found is not None and found.id is not None:
                return True
    except (OSError, MissingError):
        pass
    return False


def container_target(prefix: str, catalog: ContainerCatalog | None = None) -> CgroupTarget:
    """--container NAME or ID: the outermost cgroup of the one container whose id
    starts with prefix (hex ids in either case), found in the cgroup v2 tree; when
    no id does, of the container that its runtime calls so (runtimes.py).
    ContainerNotRunning when none runs (a reader may wait for it)."""
    if not prefix:
        raise UsageError(
            (
                Setting("container"),
                " needs a container id or its first characters (podman ps or docker ps shows them)",
            )
        )
    root = _v2_root_bytes()
    lowered = prefix.lower()
    outermost: dict[str, tuple[bytes, Container]] = {}
    try:
        tree = list(_cgroup_dirs(root))
    except OSError as e:
        raise MissingError(
            ("cannot read the cgroup v2 tree at ", _quoted(os.fsdecode(root)), f": {e.strerror}")
        ) from None
    containers: list[tuple[bytes, Container]] = []
    for rel, _inode in tree:
        container = container_of(_shown(rel))
        if container is not None and container.id is not None:
            containers.append((rel, container))

    def outermost_of(wanted: Callable[[str], bool]) -> dict[str, tuple[bytes, Container]]:
        found: dict[str, tuple[bytes, Container]] = {}
        for rel, container in containers:
            if wanted(container.id):
                known = found.get(container.id)
                if known is None or _level(rel) < _level(known[0]):
                    found[container.id] = (rel, container)
        return found

    outermost = outermost_of(
        lambda cid: cid.startswith(prefix) or (_HEX64.fullmatch(cid) and cid.startswith(lowered))
    )
    if not outermost:
        named = set((catalog or ContainerCatalog()).ids_named(prefix))
        outermost = outermost_of(lambda cid: cid in named)
        if named and not outermost:
            raise ContainerNotRunning(
                (
                    "the container ",
                    _quoted(prefix),
                    f" ({min(named)[:12]}) is not running: no cgroup of it below ",
                    _quoted(os.fsdecode(root)),
                    "; start it first",
                ),
                prefix,
                min(named),
            )
    if not outermost:
        raise ContainerNotRunning(
            (
                "no container named ",
                _quoted(prefix),
                " or with an id starting so has a cgroup below ",
                _quoted(os.fsdecode(root)),
                ": see the running ones with podman ps or docker ps",
            ),
            prefix,
            None,
        )
    if len(outermost) > 1:
        ids = sorted(outermost)
        # 12 hex digits as podman ps and docker ps show ids, more if those are alike.
        common = max(len(posixpath.commonprefix(pair)) for pair in itertools.pairwise(ids))
        width = max(12, common + 1)
        listed: list = []
        for cid in ids[:5]:
            if listed:
                listed.append(", ")
            listed.append(cid[:width] if _HEX64.fullmatch(cid) else _quoted(cid))
            listed.append(f" ({outermost[cid][1].runtime})")
        more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
        raise UsageError(
            (
                _quoted(prefix),
                f" is the start of {len(ids)} container ids: ",
                *listed,
                f"{more}; give more characters of the one you mean",
            )
        )
    ((cid, (rel, _container)),) = outermost.items()
    found = _id_of(root + rel)
    if found is None:
        raise UsageError(f"container {cid[:12]} stopped while its cgroup was looked up")
    return _target(root, rel, found)
