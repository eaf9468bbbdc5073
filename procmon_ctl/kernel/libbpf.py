"""Every call into libbpf.so.1, as one table of signatures plus error checkers
(the pyudev _ctypeslib pattern).  Callers get LibbpfError, never a raw OSError
or a negative integer; the modules above translate it into user language."""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
from ctypes import POINTER, c_char, c_char_p, c_int, c_uint8, c_uint32, c_uint64, c_void_p
from functools import cache

from ..errors import BpfError, MissingError


class LibbpfError(BpfError):
    def __init__(self, func: str, err: int):
        self.func = func
        self.errno = err
        super().__init__(f"{func}: {os.strerror(err)}")


class BpfMapInfo(ctypes.Structure):
    # The leading fields of struct bpf_map_info; the kernel fills what fits.
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", c_char * 16),
    ]


class BpfProgInfo(ctypes.Structure):
    # The leading fields of struct bpf_prog_info, up to the ids of the maps it uses.
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * 8),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
    ]


class BpfLinkInfo(ctypes.Structure):
    # The leading fields of struct bpf_link_info (the per-type union left out).
    _fields_ = [("type", c_uint32), ("id", c_uint32), ("prog_id", c_uint32)]


class PerfEventAttr(ctypes.Structure):
    # The first 64 bytes of struct perf_event_attr (PERF_ATTR_SIZE_VER0, every
    # kernel accepts it): all a tracepoint event needs.  The bit fields after
    # read_format (disabled, inherit, ...) are one u64 here, left 0: enabled.
    _fields_ = [
        ("type", c_uint32),  # PERF_TYPE_TRACEPOINT
        ("size", c_uint32),  # sizeof(this)
        ("config", c_uint64),  # the tracepoint's id (tracefs events/<group>/<name>/id)
        ("sample_period", c_uint64),
        ("sample_type", c_uint64),
        ("read_format", c_uint64),
        ("flags", c_uint64),
        ("wakeup_events", c_uint32),
        ("bp_type", c_uint32),
        ("config1", c_uint64),
    ]


def _check_fd(result, func, args):
    """libbpf 1.x returns -errno for failure (and sets errno)."""
    if result < 0:
        raise LibbpfError(func.__name__, -result if result != -1 else ctypes.get_errno())
    return result


def _check_ptr(result, func, args):
    """Calls that return an object: NULL with errno set on failure (libbpf 1.x)."""
    if not result:
        raise LibbpfError(func.__name__, ctypes.get_errno() or errno_mod.EINVAL)
    return result


def _check_libc(result, func, args):
    """libc calls: -1 with errno set on failure."""
    if result == -1:
        raise LibbpfError(func.__name__, ctypes.get_errno())
    return result


# enum bpf_map_type (linux/bpf.h): the ring buffer's.
BPF_MAP_TYPE_RINGBUF = 27
# enum bpf_stats_type (linux/bpf.h).
BPF_STATS_RUN_TIME = 0

_SIGNATURES = {
    # name: (argtypes, restype, errcheck)
    "bpf_obj_get": ([c_char_p], c_int, _check_fd),
    "bpf_obj_pin": ([c_int, c_char_p], c_int, _check_fd),
    "bpf_raw_tracepoint_open": ([c_char_p, c_int], c_int, _check_fd),
    "bpf_obj_get_info_by_fd": ([c_int, c_void_p, POINTER(c_uint32)], c_int, _check_fd),
    "bpf_map_lookup_elem": ([c_int, c_void_p, c_void_p], c_int, _check_fd),
    "libbpf_num_possible_cpus": ([], c_int, _check_fd),
    "libbpf_probe_bpf_map_type": ([c_int, c_void_p], c_int, _check_fd),
    "libbpf_probe_bpf_helper": ([c_int, c_int, c_void_p], c_int, _check_fd),
    "libbpf_version_string": ([], c_char_p, None),
    "bpf_map_update_elem": ([c_int, c_void_p, c_void_p, ctypes.c_uint64], c_int, _check_fd),
    "bpf_map_get_next_key": ([c_int, c_void_p, c_void_p], c_int, None),
    "bpf_map_delete_elem": ([c_int, c_void_p], c_int, None),
    # A reader's own ring (instance/readers.py), and a ring another reader made.
    "bpf_map_create": ([c_int, c_char_p, c_uint32, c_uint32, c_uint32, c_void_p], c_int, _check_fd),
    "bpf_map_get_fd_by_id": ([c_uint32], c_int, _check_fd),
    # A private instance (`run`): a bpf_object loaded and kept by us, never pinned.
    "bpf_object__open_file": ([c_char_p, c_void_p], c_void_p, _check_ptr),
    "bpf_object__load": ([c_void_p], c_int, _check_fd),
    "bpf_object__close": ([c_void_p], None, None),
    "bpf_object__find_map_by_name": ([c_void_p, c_char_p], c_void_p, _check_ptr),
    "bpf_object__find_program_by_name": ([c_void_p, c_char_p], c_void_p, _check_ptr),
    "bpf_map__set_max_entries": ([c_void_p, c_uint32], c_int, _check_fd),
    "bpf_map__fd": ([c_void_p], c_int, _check_fd),
    "bpf_program__fd": ([c_void_p], c_int, _check_fd),
    "bpf_program__set_autoload": ([c_void_p, ctypes.c_bool], c_int, _check_fd),
    "libbpf_set_print": ([c_void_p], c_void_p, None),
    # The benches' bpf_stats (scripts/bench/user_read_cost.py).
    "bpf_enable_stats": ([c_int], c_int, _check_fd),
}


# The libc calls that attach a `tracepoint/...` program (perf_event_open has no libc
# wrapper: syscall(2), typed here for that one use).
_LIBC_SIGNATURES = {
    "syscall": (
        [ctypes.c_long, POINTER(PerfEventAttr), c_int, c_int, c_int, ctypes.c_ulong],
        ctypes.c_long,
        _check_libc,
    ),
    "ioctl": ([c_int, ctypes.c_ulong, c_int], c_int, _check_libc),
}

# perf_event_open's syscall number, by machine (asm/unistd.h).
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
# linux/perf_event.h: _IO('$', 0) and _IOW('$', 8, __u32).
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408


def _bind(lib: ctypes.CDLL, signatures: dict) -> ctypes.CDLL:
    for name, (argtypes, restype, errcheck) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
        if errcheck is not None:
            fn.errcheck = errcheck
    return lib


@cache
def _libc() -> ctypes.CDLL:
    # Our own handle: the argument types set here are not imposed on ctypes.CDLL(None)'s.
    return _bind(ctypes.CDLL("libc.so.6", use_errno=True), _LIBC_SIGNATURES)


@cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError:
        raise MissingError(
            "libbpf.so.1 not found: install it with `apt-get install libbpf1` (or run `make`)"
        ) from None
    return _bind(lib, _SIGNATURES)


def obj_get(path: os.PathLike | str) -> int:
    """An fd for a pinned program, map or link."""
    return _lib().bpf_obj_get(os.fsencode(path))


def obj_pin(fd: int, path: os.PathLike | str) -> None:
    _lib().bpf_obj_pin(fd, os.fsencode(path))


def enable_run_time_stats() -> int:
    """An fd that keeps every program's bpf_stats (run_time_ns, run_cnt) counting
    while it is open.  The kernel counts such holders beside the sysctl
    kernel.bpf_stats_enabled: closing it, or the end of the process however it ends,
    leaves the counting as it was before."""
    return _lib().bpf_enable_stats(BPF_STATS_RUN_TIME)


def raw_tracepoint_open(prog_fd: int) -> int:
    """Attach a tp_btf program to the tracepoint it was loaded for; returns the link fd."""
    return _lib().bpf_raw_tracepoint_open(None, prog_fd)


def perf_tracepoint_attach(prog_fd: int, tracepoint_id: int) -> int:
    """Attach a `tracepoint/...` program by fd, the way every kernel since 4.x takes
    it (bpf_link_create on a perf event needs 5.15): a perf event on the tracepoint
    (pid -1, cpu 0: the program then runs wherever the tracepoint fires), the
    program set on it, the event enabled.  Returns the perf event's fd, which alone
    holds the attachment: closing it, or the end of the process however it ends,
    detaches the program.  Nothing is pinned."""
    nr = _NR_PERF_EVENT_OPEN.get(os.uname().machine)
    if nr is None:
        raise LibbpfError("perf_event_open", errno_mod.ENOSYS)
    attr = PerfEventAttr(
        type=PERF_TYPE_TRACEPOINT,
        size=ctypes.sizeof(PerfEventAttr),
        config=tracepoint_id,
        sample_period=1,  # as libbpf sets them for tracepoints
        wakeup_events=1,
    )
    libc = _libc()
    try:
        perf_fd = libc.syscall(nr, ctypes.byref(attr), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    except LibbpfError as err:
        raise LibbpfError("perf_event_open", err.errno) from None
    try:
        libc.ioctl(perf_fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        libc.ioctl(perf_fd, PERF_EVENT_IOC_ENABLE, 0)
    except BaseException:
        os.close(perf_fd)
        raise
    return perf_fd


def map_info(fd: int) -> BpfMapInfo:
    info = BpfMapInfo()
    size = c_uint32(ctypes.sizeof(info))
    _lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
    return info


def prog_info(fd: int) -> tuple[int, list[int]]:
    """(program id, ids of the maps the program uses)."""
    slots = 16
    while True:
        ids = (c_uint32 * slots)()
        info = BpfProgInfo(nr_map_ids=slots, map_ids=ctypes.addressof(ids))
        size = c_uint32(ctypes.sizeof(info))
        _lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
        if info.nr_map_ids <= slots:
            return info.id, list(ids[: info.nr_map_ids])
        slots = info.nr_map_ids


def link_info(fd: int) -> BpfLinkInfo:
    info = BpfLinkInfo()
    size = c_uint32(ctypes.sizeof(info))
    _lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
    return info


# What /proc/self/fd/N links to for each kind of BPF object: an id alone does not
# say whether it is a program's, a map's or a link's (each kind counts its own).
# A link's is named bpf_link or bpf-link, depending on the kernel.
_FD_KINDS = {
    "anon_inode:bpf-prog": "prog",
    "anon_inode:bpf-map": "map",
    "anon_inode:bpf_link": "link",
    "anon_inode:bpf-link": "link",
}


def fd_kind(fd: int) -> str | None:
    """The kind of BPF object behind fd ("prog", "map", "link"); None for no BPF fd."""
    return _FD_KINDS.get(os.readlink(f"/proc/self/fd/{fd}"))


def object_id(fd: int) -> tuple[str, int] | None:
    """(kind, kernel id) of the BPF object behind fd; None when fd is no BPF object."""
    kind = fd_kind(fd)
    if kind == "prog":
        return kind, prog_info(fd)[0]
    if kind == "map":
        return kind, map_info(fd).id
    if kind == "link":
        return kind, link_info(fd).id
    return None


def map_create(map_type: int, name: str, key_size: int, value_size: int, entries: int) -> int:
    """An fd of a new map (no options)."""
    return _lib().bpf_map_create(map_type, name.encode(), key_size, value_size, entries, None)


def map_fd_by_id(map_id: int) -> int:
    """An fd of the map with kernel id `map_id`."""
    return _lib().bpf_map_get_fd_by_id(map_id)


def map_update(fd: int, key: bytes, value: bytes) -> None:
    _lib().bpf_map_update_elem(fd, key, value, 0)  # BPF_ANY


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes:
    """The value at `key` (of an array map: always there)."""
    value = ctypes.create_string_buffer(value_size)
    _lib().bpf_map_lookup_elem(fd, key, value)
    return value.raw


def map_delete(fd: int, key: bytes) -> None:
    """Remove a key; one that is not there is not an error."""
    _lib().bpf_map_delete_elem(fd, key)


def map_keys(fd: int, key_size: int) -> list[bytes]:
    """Every key of a hash map, as bytes (the kernel's order)."""
    lib = _lib()
    keys: list[bytes] = []
    cur = None
    nxt = ctypes.create_string_buffer(key_size)
    while lib.bpf_map_get_next_key(fd, cur, nxt) == 0:
        keys.append(nxt.raw)
        cur = ctypes.create_string_buffer(nxt.raw, key_size)
    return keys


class BpfObject:
    """A BPF object opened and loaded by libbpf in this process.  Its programs and
    maps are fds of ours alone: nothing is pinned, so when the process ends, even
    by SIGKILL, the kernel frees them.  close() (or the with block) frees them
    sooner."""

    def __init__(self, path: os.PathLike | str):
        lib = _lib()
        # libbpf would print its own (multi-line) diagnostics on stderr; the
        # caller reports one line, and `doctor` explains a failed load.
        lib.libbpf_set_print(None)
        self._obj = lib.bpf_object__open_file(os.fsencode(path), None)

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._obj:
            _lib().bpf_object__close(self._obj)
            self._obj = None

    def _map(self, name: str) -> int:
        return _lib().bpf_object__find_map_by_name(self._obj, name.encode())

    def set_max_entries(self, map_name: str, entries: int) -> None:
        """Before load(): the size of a map."""
        _lib().bpf_map__set_max_entries(self._map(map_name), entries)

    def skip_program(self, name: str) -> None:
        """Before load(): leave program `name` out (not loaded, not verified)."""
        lib = _lib()
        lib.bpf_program__set_autoload(
            lib.bpf_object__find_program_by_name(self._obj, name.encode()), False
        )

    def load(self) -> None:
        _lib().bpf_object__load(self._obj)

    def map_fd(self, name: str) -> int:
        """After load(): the fd of a map (owned by the object: do not close it)."""
        return _lib().bpf_map__fd(self._map(name))

    def program_fd(self, name: str) -> int:
        lib = _lib()
        return lib.bpf_program__fd(lib.bpf_object__find_program_by_name(self._obj, name.encode()))


def version() -> str:
    """libbpf's own version, e.g. "v1.1"."""
    return _lib().libbpf_version_string().decode()


def possible_cpus() -> int:
    return _lib().libbpf_num_possible_cpus()


def percpu_array_sums(fd: int, keys: range) -> list[int]:
    """Sum of every CPU's u64 for each key of a per-CPU array: one syscall per key."""
    ncpu = possible_cpus()
    values = (ctypes.c_uint64 * ncpu)()
    key = c_uint32()
    sums = []
    for k in keys:
        key.value = k
        _lib().bpf_map_lookup_elem(fd, ctypes.byref(key), values)
        sums.append(sum(values))
    return sums


def kernel_has_map_type(map_type: int) -> bool:
    """Whether this kernel can create maps of map_type (libbpf makes a tiny one)."""
    return _lib().libbpf_probe_bpf_map_type(map_type, None) == 1


def kernel_has_helper(prog_type: int, helper: int) -> bool:
    """Whether programs of prog_type may call the helper on this kernel."""
    return _lib().libbpf_probe_bpf_helper(prog_type, helper, None) == 1


def is_not_found(err: LibbpfError) -> bool:
    return err.errno == errno_mod.ENOENT


def is_permission(err: LibbpfError) -> bool:
    return err.errno in (errno_mod.EPERM, errno_mod.EACCES)
