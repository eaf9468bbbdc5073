"""Atomic loads, stores and fences on memory shared with the kernel, through
libatomic.so.1 (GCC's __atomic builtins as functions), one table of signatures
as for libbpf.

Python has no memory model: a plain read of the mapped ring (struct.unpack_from,
a ctypes .value) is a plain load, which the CPU may reorder with its neighbours.
x86 (TSO) keeps loads in order with loads and stores in order with stores, so
plain accesses happen to be enough there; arm64 does not.  The BPF ring buffer
is published with release stores and must be read with acquire loads (see
ringbuf.py for which), and libatomic gives us those with the orders below: the
same instructions `__atomic_load_n(p, __ATOMIC_ACQUIRE)` compiles to in C (ldar
on arm64, a plain mov on x86), behind one ctypes call (~0.3 µs)."""

from __future__ import annotations

import ctypes
from ctypes import c_char_p, c_int, c_ssize_t, c_uint32, c_uint64, c_void_p
from functools import cache

from ..errors import MissingError

# The __ATOMIC_* memory orders of GCC and clang (what libatomic takes).
RELAXED = 0
ACQUIRE = 2
RELEASE = 3
SEQ_CST = 5

_SIGNATURES = {
    # name: (argtypes, restype)
    "__atomic_load_4": ([c_void_p, c_int], c_uint32),
    "__atomic_load_8": ([c_void_p, c_int], c_uint64),
    "__atomic_store_8": ([c_void_p, c_uint64, c_int], None),
    "atomic_thread_fence": ([c_int], None),  # C11's, exported since LIBATOMIC_1.2
}


@cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libatomic.so.1", use_errno=True)
    except OSError:
        raise MissingError(
            "libatomic.so.1 not found: install it with `apt-get install libatomic1` (or run `make`)"
        ) from None
    for name, (argtypes, restype) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
    return lib


def available() -> bool:
    """Whether libatomic.so.1 loads (for `doctor`)."""
    try:
        _lib()
    except MissingError:
        return False
    return True


def _checked(address: int) -> int:
    # ctypes passes None or 0 as NULL: a segfault instead of an exception.
    if not address:
        raise ValueError("atomic access at NULL (a closed ring buffer?)")
    return address


def load_u64(address: int, order: int = ACQUIRE) -> int:
    """The aligned 8-byte word at `address`, read in one load with `order`."""
    return _lib().__atomic_load_8(_checked(address), order)


def load_u32(address: int, order: int = ACQUIRE) -> int:
    """The aligned 4-byte word at `address`, read in one load with `order`."""
    return _lib().__atomic_load_4(_checked(address), order)


def store_u64(address: int, value: int, order: int = RELEASE) -> None:
    """Write `value` to the aligned 8-byte word at `address` in one store with `order`."""
    _lib().__atomic_store_8(_checked(address), value, order)


def fence(order: int = ACQUIRE) -> None:
    """atomic_thread_fence(order).  An acquire fence orders every load before it
    (whatever read them: Python, ctypes) before every load and store after it."""
    _lib().atomic_thread_fence(order)


class _PyBuffer(ctypes.Structure):
    # Py_buffer (Include/pybuffer.h, unchanged since Python 3.3).
    _fields_ = [
        ("buf", c_void_p),
        ("obj", c_void_p),
        ("len", c_ssize_t),
        ("itemsize", c_ssize_t),
        ("readonly", c_int),
        ("ndim", c_int),
        ("format", c_char_p),
        ("shape", c_void_p),
        ("strides", c_void_p),
        ("suboffsets", c_void_p),
        ("internal", c_void_p),
    ]


def buffer_address(obj) -> int:
    """Where the memory of a buffer (an mmap, a memoryview) starts: read-only ones
    too, which ctypes' from_buffer refuses.  The caller must keep the memory alive
    while it uses the address (a memoryview of an mmap does: mmap.close() fails
    while one is held)."""
    view = _PyBuffer()
    api = ctypes.pythonapi  # a PyDLL: a Python exception set by the call is raised
    api.PyObject_GetBuffer(ctypes.py_object(obj), ctypes.byref(view), 0)  # PyBUF_SIMPLE
    try:
        return view.buf
    finally:
        api.PyBuffer_Release(ctypes.byref(view))
