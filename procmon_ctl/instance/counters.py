"""The counters, read one way for every kind of instance (`stats`, `serve`, `run`'s
summary): the per-CPU `counters` map summed over the CPUs, and the seed's
`process_count`, each by one bpf_map_lookup_elem per key through libbpf.  No
bpftool: `stats` starts in the time Python takes to import what it needs."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from ..kernel.abi import COUNTER_KEYS, COUNTER_NAMES, CounterKey

_U32 = struct.Struct("I")
_U64 = struct.Struct("Q")


def read_counters(open_map: Callable[[str], int]) -> dict[str, int]:
    """COUNTER_NAMES, `unfollowed` and `process_count`, from the maps `open_map`
    opens (Instance.open_map); raises libbpf.LibbpfError."""
    from ..kernel import libbpf

    fd = open_map("counters")
    try:
        sums = libbpf.percpu_array_sums(fd, range(CounterKey.MAX))
    finally:
        os.close(fd)
    named = {name: sums[k] for k, name in zip(COUNTER_KEYS, COUNTER_NAMES, strict=True)}
    named["unfollowed"] = sums[CounterKey.UNFOLLOWED]
    fd = open_map("process_count")
    try:
        value = libbpf.map_lookup(fd, _U32.pack(0), _U64.size)
    finally:
        os.close(fd)
    named["process_count"] = _U64.unpack(value)[0]
    return named
