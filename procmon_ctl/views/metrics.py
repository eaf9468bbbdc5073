"""`serve`'s metrics: the Prometheus families of one scrape, their names and help.

A help text names the options behind a counter as <<setting>>, which the CLI's
spelling of that setting replaces (views.words)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..instance.pins import PROGRAMS
from .words import with_options

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
    "dropped": (
        "procmon_events_dropped",
        "Events lost: no room in the ring buffer (or, for a failed exec, its caller's "
        "registers not found).",
    ),
    "filtered": (
        "procmon_events_filtered",
        "Events a reader's <<cgroup>> or <<container>> filter kept out of the ring buffer.",
    ),
}


def metric_families(
    counters: dict[str, int] | None, attached_events: set[str], option: Callable[[str], str]
) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """procmon_loaded, procmon_attached per program, and (when loaded: counters not
    None) one counter family per COUNTER_METRICS entry."""
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
        metric = CounterMetricFamily(name, with_options(text, option))
        metric.add_metric([], counters[key])
        yield metric
