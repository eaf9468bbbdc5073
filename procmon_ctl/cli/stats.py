"""`stats` and `status`."""

from __future__ import annotations

import gc
from typing import Annotated

import typer

from ._common import command, layout, print_json

JsonObjectOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@command(quick=True)
def stats(
    json_out: JsonObjectOpt = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Print rates per second until interrupted.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between --watch lines.")
    ] = 1.0,
) -> None:
    """Counters: processes (process_count), threads, execs, exits, dropped."""
    from .. import stats as counters
    from ..errors import require_interval

    require_interval("--interval", interval)
    pins = layout()
    if not watch:
        s = counters.read_stats(pins)
        print(s.model_dump_json() if json_out else counters.stats_text(s))
        return
    gc.enable()  # runs until interrupted: collect as usual
    rates_every_interval = counters.watch_rates(pins, interval)
    if not json_out:
        print(counters.rates_header())
    for rates in rates_every_interval:
        line = counters.rates_json(rates) if json_out else counters.rates_text(rates)
        print(line, flush=True)


@command(quick=True)
def status(json_out: JsonObjectOpt = False) -> None:
    """What is loaded and attached: program, map and link ids and pin paths."""
    from ..stats import read_status, status_text

    s = read_status(layout())
    if json_out:
        print_json(s)
    else:
        print(status_text(s))
