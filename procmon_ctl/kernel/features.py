"""What the kernel must offer, probed rather than read from its version number
(distributions backport BPF features: RHEL 9's 5.14 has more than its number
says).  `load` refuses a kernel that lacks one, naming it in one line;
`doctor` reports each.

The oldest kernel with all of them is 5.8; the oldest `make test-kernels` runs the
whole kernel suite on is 5.10 (Debian 11)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import libbpf

BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")
MINIMUM_KERNEL = "5.8"

# uapi/linux/bpf.h: stable numbers, part of the kernel ABI.
BPF_MAP_TYPE_LRU_HASH = 9
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_FUNC_ringbuf_query = 134


@dataclass(frozen=True)
class Feature:
    name: str
    since: str  # the mainline release that brought it
    why: str
    present: Callable[[], bool]

    def missing(self) -> str:
        return (
            f"this kernel lacks {self.name} (Linux {self.since}+), which procmon-ctl "
            f"needs for {self.why}: use Linux {MINIMUM_KERNEL} or later with BTF "
            "(Debian 11+, Ubuntu 20.10+, RHEL 9+)"
        )


REQUIRED = (
    Feature(
        "kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)",
        "5.5",
        "its tp_btf programs and CO-RE",
        BTF_VMLINUX.is_file,
    ),
    Feature(
        "the BPF ring buffer (BPF_MAP_TYPE_RINGBUF)",
        "5.8",
        "its event stream",
        lambda: libbpf.kernel_has_map_type(libbpf.BPF_MAP_TYPE_RINGBUF),
    ),
    Feature(
        "the bpf_ringbuf_query() helper",
        "5.8",
        "batched reader wake-ups",
        lambda: libbpf.kernel_has_helper(BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_FUNC_ringbuf_query),
    ),
    Feature(
        "LRU hash maps (BPF_MAP_TYPE_LRU_HASH)",
        "4.10",
        "telling a process's exit from its threads'",
        lambda: libbpf.kernel_has_map_type(BPF_MAP_TYPE_LRU_HASH),
    ),
)


def missing() -> list[Feature]:
    """The required features this kernel lacks, in the order they are listed.  Probes
    create maps and load programs: call as root (as anyone else every probe fails)."""
    out = []
    for feature in REQUIRED:
        try:
            present = feature.present()
        except libbpf.LibbpfError:
            # libbpf could not tell (too old to know the probe): let the load itself
            # decide rather than refuse a kernel that may well work.
            present = True
        if not present:
            out.append(feature)
    return out
