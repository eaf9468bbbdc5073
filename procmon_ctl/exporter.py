"""`procmon-ctl serve`: the counters as Prometheus metrics.

Nothing polls: every scrape opens the pinned `counters` map, sums its per-CPU
values with one bpf_map_lookup_elem per key, and closes it again (an fd kept
open would keep the map alive after `unload`).  Whether each program is
attached is read from its link pin.  With --attach the instance is serve's own
(a PrivateInstance, pinned nowhere): its counters are read through its fds, and
it is attached for as long as serve lives."""

from __future__ import annotations

import errno
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import libbpf
from .abi import COUNTER_NAMES
from .errors import BpfError, StateError, UsageError
from .pins import PROGRAMS, PinLayout
from .system import require_root

if TYPE_CHECKING:
    from .instance import PrivateInstance

DEFAULT_PORT = 9464

# counter key name -> (metric name without _total, help)
COUNTER_METRICS = {
    "processes": (
        "procmon_processes_created",
        "New processes seen by the fork program (threads excluded).",
    ),
    "threads": (
        "procmon_threads_created",
        "New threads seen by the fork program (clone with CLONE_THREAD).",
    ),
    "execs": ("procmon_execs", "Successful execs seen by the exec program."),
    "exits": ("procmon_exits", "Processes that ended (the last thread of the group exited)."),
    "produced": (
        "procmon_events_produced",
        "Events the programs tried to put in the ring buffer (dropped included).",
    ),
    "dropped": ("procmon_events_dropped", "Events lost because the ring buffer was full."),
}
_KEYS = range(len(COUNTER_NAMES))


def read_counters(layout: PinLayout) -> dict[str, int]:
    """The per-CPU counters summed, by name; raises libbpf.LibbpfError."""
    fd = libbpf.obj_get(layout.map("counters"))
    try:
        sums = libbpf.percpu_array_sums(fd, _KEYS)
    finally:
        os.close(fd)
    return dict(zip(COUNTER_NAMES, sums, strict=True))


class ProcmonCollector(Collector):
    """Reads the pin set (or serve's own instance) at scrape time.  While nothing
    is loaded, only procmon_loaded 0 and procmon_attached 0 are reported."""

    def __init__(self, layout: PinLayout, instance: PrivateInstance | None = None):
        self.layout = layout
        self.instance = instance

    def describe(self):
        # Registering must not read the maps; the metric set is fixed anyway.
        return []

    def _read(self) -> tuple[dict[str, int] | None, set[str]]:
        """The counters (None: nothing loaded) and the attached events."""
        if self.instance is not None:
            return self.instance.counters(), set(PROGRAMS)
        counters = None
        if self.layout.map("counters").exists():
            try:
                counters = read_counters(self.layout)
            except libbpf.LibbpfError:
                counters = None  # unloaded between the check and the read
        return counters, {e for e in PROGRAMS if self.layout.link(e).exists()}

    def collect(self):
        counters, attached_events = self._read()
        loaded = GaugeMetricFamily(
            "procmon_loaded", "Whether the BPF programs and maps are loaded (1) or not (0)."
        )
        loaded.add_metric([], 1 if counters is not None else 0)
        yield loaded
        attached = GaugeMetricFamily(
            "procmon_attached",
            "Whether the program for this tracepoint is attached (1) or not (0).",
            labels=["program"],
        )
        for event in PROGRAMS:
            attached.add_metric([event], 1 if event in attached_events else 0)
        yield attached
        if counters is None:
            return
        for key, (name, text) in COUNTER_METRICS.items():
            metric = CounterMetricFamily(name, text)
            metric.add_metric([], counters[key])
            yield metric


def make_registry(collector: ProcmonCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, _resident_memory_bytes...
    return registry


def check_loaded(layout: PinLayout) -> None:
    layout.require_loaded(
        "run `procmon-ctl load` (and `attach`) first, or use `procmon-ctl serve --attach`"
    )
    try:
        read_counters(layout)
    except libbpf.LibbpfError as err:
        raise BpfError(f"cannot read {layout.map('counters')}: {err}") from None


@contextmanager
def metrics_server(registry: CollectorRegistry, address: str, port: int) -> Iterator[str]:
    """Serve /metrics on address:port in a background thread; yields the URL."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port: use 1-65535, e.g. {DEFAULT_PORT}")
    try:
        httpd, thread = start_http_server(port, addr=address, registry=registry)
    except socket.gaierror as err:
        raise UsageError(
            f"--address {address!r} is not an address to listen on: {err.strerror}"
        ) from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise StateError(
                f"port {port} on {address} is already in use: stop what listens "
                "there or choose another --port"
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--address {address} is not an address of this host") from None
        raise StateError(f"cannot listen on {address}:{port}: {err.strerror}") from None
    host, bound = httpd.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{bound}/metrics"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def serve_forever(
    layout: PinLayout,
    address: str,
    port: int,
    attach_too: bool,
    object_path: str | None,
    announce: Callable[[str], None],
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM arrive as exceptions in this thread).
    With attach_too, serve an instance of its own that lives exactly as long as this
    process (pinned nowhere: however serve ends, nothing stays loaded or attached)."""
    from .load import find_object

    if object_path is not None and not attach_too:
        raise UsageError("--object only applies with --attach (serve loads nothing without it)")
    attach_obj = find_object(object_path) if attach_too else None
    require_root("reading BPF maps")
    collector = ProcmonCollector(layout)
    registry = make_registry(collector)
    if attach_obj is None:
        check_loaded(layout)
        with metrics_server(registry, address, port) as url:
            announce(f"serving {layout.root} at {url}")
            _wait()
        return
    from .instance import PrivateInstance

    # The server stops before the instance closes, so no scrape reads closed fds.
    with PrivateInstance(attach_obj, list(PROGRAMS), None) as instance:
        collector.instance = instance
        with metrics_server(registry, address, port) as url:
            announce(
                f"loaded and attached an instance of its own (pinned nowhere); serving at {url}"
            )
            _wait()


def _wait() -> None:
    # The HTTP server runs in its own thread; this one only waits for a signal, whose
    # handler (cli.main's) raises and so unwinds the context managers above.
    while True:
        signal.pause()
