"""`procmon-ctl run`: a private instance (load, attach, read) that removes itself on exit.

With a command, it follows exactly that command's process tree and summarises it."""

from __future__ import annotations

import errno
import shlex
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from . import render
from .errors import ProcmonError
from .instance import require_unused, temporary_instance
from .models import RunExit, RunLifetime, RunSummary
from .pins import PinLayout
from .rows import Filters, ProcessRows
from .stream import BatchWriter, StreamOptions, event_batches, follow, open_reader


def run_monitor(
    layout: PinLayout,
    obj: Path,
    events: list[str],
    ring_size: int | None,
    opts: StreamOptions,
    out: TextIO,
) -> int:
    with temporary_instance(layout, obj, events, ring_size):
        return follow(layout, opts, out)


def run_command(
    layout: PinLayout,
    obj: Path,
    argv: list[str],
    ring_size: int | None,
    filters: Filters,
    live: TextIO | None,
) -> RunSummary:
    """Run argv under a private instance; return what its process tree did."""
    rows = ProcessRows()
    names: Counter[str] = Counter()
    started = 0
    failed: list[RunExit] = []
    lifetimes: list[RunLifetime] = []
    shown_names: dict[int, str] = {}
    t0 = time.monotonic()
    with (
        temporary_instance(layout, obj, ["fork", "exec", "exit"], ring_size),
        open_reader(layout, threads=False, from_now=True) as reader,
    ):
        try:
            child = subprocess.Popen(argv)
        except OSError as err:
            # As a shell reports it: 127 when there is no such command, 126 when it
            # is there but cannot be executed.
            code = 127 if err.errno == errno.ENOENT else 126
            raise ProcmonError(f"cannot run {argv[0]!r}: {err.strerror}", code) from None
        tree = Filters(tree={child.pid})
        writer = BatchWriter(live, reader, None)
        writer.write(render.header("table"), 0)
        finished = False
        for events in event_batches(reader, None):
            lines = []
            for e in events:
                tree.track(e)
                if e.tgid not in tree.tree:
                    continue
                if e.type == "exit":
                    name = shown_names.get(e.tgid, e.comm)
                    lifetimes.append(RunLifetime(pid=e.tgid, comm=name, duration_ns=e.duration_ns))
                    if e.exit_code or e.exit_signal:
                        failed.append(
                            RunExit(
                                pid=e.tgid, comm=name, exit_code=e.exit_code, signal=e.exit_signal
                            )
                        )
                for r in rows.feed(e):
                    started += 1
                    names[r.comm] += 1
                    shown_names[r.tgid] = r.comm
                    if filters.match(r.tgid, r.ppid, r.uid, r.comm):
                        lines.append(render.row_line(r))
            writer.write("\n".join(lines) + "\n" if lines else "", len(lines), len(events))
            if finished and not events:
                break
            if not finished and child.poll() is not None:
                # Its exit record is already in the ring: read until the ring is dry.
                finished = True
        for r in rows.flush():
            started += 1
            names[r.comm] += 1
    code = child.returncode
    lifetimes.sort(key=lambda x: x.duration_ns or 0, reverse=True)
    return RunSummary(
        command=argv,
        exit_code=code if code >= 0 else 128 - code,
        processes=started,
        by_name=dict(names.most_common()),
        failed=failed,
        longest=lifetimes[:5],
        wall_ns=int((time.monotonic() - t0) * 1e9),
    )


def summary_text(s: RunSummary) -> str:
    lines = [
        f"{shlex.join(s.command)}: exit code {s.exit_code}, {s.processes} process(es) "
        f"started in {render.duration_text(s.wall_ns)}"
    ]
    if s.by_name:
        lines.append(
            "  by name: " + ", ".join(f"{render.printable(n)} x{c}" for n, c in s.by_name.items())
        )
    for f in s.failed:
        how = f"signal {f.signal}" if f.signal else f"exit code {f.exit_code}"
        lines.append(f"  failed: {render.printable(f.comm)} (pid {f.pid}): {how}")
    if s.longest:
        top = s.longest[0]
        lines.append(
            f"  longest-lived: {render.printable(top.comm)} (pid {top.pid}) "
            f"{render.duration_text(top.duration_ns)}"
        )
    return "\n".join(lines)


def check_not_shared(layout: PinLayout) -> None:
    require_unused(
        layout,
        f"{layout.root} is already loaded: `run` makes its own instance; give another "
        "--pin-dir or leave it out",
    )
