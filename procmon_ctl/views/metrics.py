"""`serve`'s metrics: the Prometheus families of one scrape, their names and help.

A help text names the options behind a counter as <<setting>>, which the CLI's
spelling of that setting replaces (views.words)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from ..instance.pins import PROGRAMS
from ..process.decode import errno_name
from ..process.tally import LIFETIME_BUCKETS, OTHER, ROTATE_EVERY, STATUS_CLASSES, TallySnapshot
from .render import signal_text
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


def tally_families(
    tally: TallySnapshot, failed: bool, option: Callable[[str], str]
) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
    """The families of what serve's own reader counted (process/tally.py): by
    command, container and user (each at most tally.limit values and OTHER), exits
    by status class and signal, failed execs by errno (only when reading them:
    `failed`), process lifetimes, and the reader's own record and loss counts."""
    bounded = (
        f"At most {tally.limit} values have a series of their own (<<top>>); the others "
        f'are counted under "{OTHER}", and every {ROTATE_EVERY:.0f} s the busiest of them '
        "take the places of the least busy (a series counts from when it got its place)."
    )
    for name, text, label, counts, other in (
        (
            "procmon_command_execs",
            "Successful execs, by the command name the exec gave the process.",
            "command",
            tally.commands,
            tally.commands_other,
        ),
        (
            "procmon_container_processes_created",
            "New processes in containers, by container name (the id's first 12 "
            "characters where the runtime gives no name); host processes are not counted.",
            "container",
            tally.containers,
            tally.containers_other,
        ),
        (
            "procmon_user_processes_created",
            "New processes, by the user (real uid) that made them: the name in the "
            "user database, or the number.",
            "user",
            tally.users,
            tally.users_other,
        ),
    ):
        metric = CounterMetricFamily(
            name, with_options(f"{text} {bounded}", option), labels=[label]
        )
        for value, n in sorted(counts.items()):
            metric.add_metric([value], n)
        metric.add_metric([OTHER], other)
        yield metric
    exits = CounterMetricFamily(
        "procmon_process_exits",
        "Processes that ended, by how: success (exit code 0), failure (another exit "
        "code) or signal (killed by one).",
        labels=["status"],
    )
    for status in STATUS_CLASSES:
        exits.add_metric([status], tally.exits[status])
    yield exits
    killed = CounterMetricFamily(
        "procmon_process_signal_exits",
        "Processes killed by a signal, by signal (SIGKILL, SIGSEGV, ...).",
        labels=["signal"],
    )
    for number, n in sorted(tally.exit_signals.items()):
        killed.add_metric([signal_text(number)], n)
    yield killed
    if failed:
        failures = CounterMetricFamily(
            "procmon_failed_execs",
            "Execs that failed, by errno (ENOENT, EACCES, ...).",
            labels=["errno"],
        )
        for code, n in sorted(tally.failed_execs.items()):
            failures.add_metric([errno_name(code) or str(code)], n)
        yield failures
    lifetimes = HistogramMetricFamily(
        "procmon_process_lifetime_seconds",
        "How long processes lived, from fork to the exit of their last thread.",
    )
    cumulative, buckets = 0, []
    for bound, n in zip((*LIFETIME_BUCKETS, float("inf")), tally.lifetime_buckets, strict=True):
        cumulative += n
        buckets.append((floatToGoString(bound), cumulative))
    lifetimes.add_metric([], buckets, tally.lifetime_sum_ns / 1e9)
    yield lifetimes
    records = CounterMetricFamily(
        "procmon_serve_records",
        "Records serve's own reader counted (every series above comes from them).",
    )
    records.add_metric([], tally.records)
    yield records
    lost = CounterMetricFamily(
        "procmon_serve_records_lost",
        "Records serve's own reader lost (its ring was full): missing from every series "
        "serve counts itself.",
    )
    lost.add_metric([], tally.lost)
    yield lost
