"""The counters, read one way for every kind of instance (`stats`, `serve`, `run`'s
summary): the seed's `process_count` and the per-CPU `counters` map, dumped by
`bpftool -j map dump` (the seed's own step) into the pydantic models and summed over
the CPUs.  The maps are opened through Instance.open_map first, so a pinned map is
read only once checked to be the one procmon-ctl pinned, and by id, so that `run`'s
maps, which are pinned nowhere, are read the same way."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..kernel.abi import COUNTER_KEYS, COUNTER_NAMES, CounterKey


def read_counters(open_map: Callable[[str], int]) -> dict[str, int]:
    """COUNTER_NAMES, `unfollowed` and `process_count`, from the maps `open_map`
    opens (Instance.open_map); raises what bpftool.run and libbpf raise."""
    from ..kernel import bpftool, libbpf

    fds: list[int] = []
    try:
        for name in ("process_count", "counters"):
            fds.append(open_map(name))
        seed, counters = bpftool.map_dumps(*(libbpf.map_info(fd).id for fd in fds))
    finally:
        for fd in fds:
            os.close(fd)
    by_key = counters.by_key()
    named = {name: by_key.get(k, 0) for k, name in zip(COUNTER_KEYS, COUNTER_NAMES, strict=True)}
    named["unfollowed"] = by_key.get(CounterKey.UNFOLLOWED, 0)
    named["process_count"] = seed.by_key().get(0, 0)
    return named
