"""What both kinds of instance check before they load anything: the BPF object,
root, the kernel's features, the ring's size and the argv bound.  `load` and
PrivateInstance call check_start(), so they refuse the same things in the same
order with the same words."""

from __future__ import annotations

import os
from pathlib import Path

from .. import DATA_DIR
from ..errors import MissingError, PermissionDenied, Setting, UsageError
from ..kernel import features
from ..kernel.system import require_root
from .settings import check_argv_bytes

OBJECT_ENV = "PROCMON_OBJECT"
PACKAGED_OBJECT = DATA_DIR / "process_monitor.bpf.o"
DEFAULT_RING_SIZE = 4 * 1024 * 1024
EM_BPF = 247


def find_object(explicit: str | os.PathLike | None = None) -> Path:
    if explicit is not None and not os.fspath(explicit):
        # `--object "$UNSET"`: loading the default object instead would hide it.
        raise UsageError(
            (
                Setting("object"),
                " is empty: give the path of a .bpf.o file, or leave the option out "
                "for the one `make` builds",
            )
        )
    path = Path(explicit or os.environ.get(OBJECT_ENV) or PACKAGED_OBJECT)
    check_object(path)
    return path


def check_object(path: Path) -> None:
    """Refuse what is not an eBPF ELF object before bpftool sees it."""
    if path.is_dir():
        raise UsageError(f"BPF object {path} is a directory: give the .bpf.o file")
    if not path.exists():
        hint = "run `make` to build it" if path == PACKAGED_OBJECT else "check the path"
        raise MissingError(f"BPF object {path} not found: {hint}")
    if not path.is_file():
        raise UsageError(
            f"BPF object {path} is not a regular file (a device or pipe?): give the .bpf.o file"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except PermissionError:
        if os.geteuid() != 0:
            raise PermissionDenied(f"reading {path}") from None
        raise MissingError(f"cannot read BPF object {path}: permission denied") from None
    except OSError as err:
        raise MissingError(f"cannot read BPF object {path}: {err.strerror}") from None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise UsageError(f"{path} is not an ELF file: give the .bpf.o that `make` builds")
    byteorder = "little" if head[5] == 1 else "big"
    if int.from_bytes(head[18:20], byteorder) != EM_BPF:
        raise UsageError(f"{path} is an ELF file but not an eBPF object (e_machine is not BPF)")


def check_ring_size(size: int) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    if size < page or size & (size - 1) or size % page or size > 1 << 30:
        raise UsageError(
            (
                Setting("ring_size"),
                f" {size} is not allowed: use a power of two from {page} "
                f"(one page) to {1 << 30} bytes, e.g. {DEFAULT_RING_SIZE}",
            )
        )


def require_kernel_features() -> None:
    lacking = features.missing()
    if lacking:
        raise MissingError(lacking[0].missing())


def check_start(ring_size: int | None, argv_bytes: int | None) -> None:
    """Before loading: root, a ring size and an argv bound (None: the default) that
    are allowed, and a kernel with every feature the programs use."""
    require_root("loading BPF programs")
    if ring_size is not None:
        check_ring_size(ring_size)
    if argv_bytes is not None:
        check_argv_bytes(argv_bytes)
    require_kernel_features()
