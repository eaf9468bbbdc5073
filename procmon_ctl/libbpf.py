"""Every call into libbpf.so.1, as one table of signatures plus error checkers
(the pyudev _ctypeslib pattern).  Callers get LibbpfError, never a raw OSError
or a negative integer; the modules above translate it into user language."""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
from ctypes import POINTER, c_char, c_char_p, c_int, c_uint32, c_void_p
from functools import cache

from .errors import BpfError, MissingError


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


def _check_fd(result, func, args):
    """libbpf 1.x returns -errno for failure (and sets errno)."""
    if result < 0:
        raise LibbpfError(func.__name__, -result if result != -1 else ctypes.get_errno())
    return result


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
}


@cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError:
        raise MissingError(
            "libbpf.so.1 not found: install it with `apt-get install libbpf1` (or run `make`)"
        ) from None
    for name, (argtypes, restype, errcheck) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
        if errcheck is not None:
            fn.errcheck = errcheck
    return lib


def obj_get(path: os.PathLike | str) -> int:
    """An fd for a pinned program, map or link."""
    return _lib().bpf_obj_get(os.fsencode(path))


def obj_pin(fd: int, path: os.PathLike | str) -> None:
    _lib().bpf_obj_pin(fd, os.fsencode(path))


def raw_tracepoint_open(prog_fd: int) -> int:
    """Attach a tp_btf program to the tracepoint it was loaded for; returns the link fd."""
    return _lib().bpf_raw_tracepoint_open(None, prog_fd)


def map_info(fd: int) -> BpfMapInfo:
    info = BpfMapInfo()
    size = c_uint32(ctypes.sizeof(info))
    _lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
    return info


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
