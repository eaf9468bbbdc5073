"""bpftool JSON captured on this machine (tests/data), parsed into the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sh

from procmon_ctl.cli.hints import Hints
from procmon_ctl.errors import BpfError, Command, PermissionDenied, StateError
from procmon_ctl.kernel import bpftool
from procmon_ctl.kernel.bpftool_json import LinkInfo, MapDump, MapInfo, ProgInfo

DATA = Path(__file__).parent / "data"


def load(name):
    return json.loads((DATA / name).read_text())


def test_array_dump_seed_counter():
    dump = MapDump.model_validate(load("map_dump_process_count.json"))
    assert dump.by_key() == {0: 783}


def test_percpu_dump_sums_cpus():
    raw = load("map_dump_counters.json")
    dump = MapDump.model_validate(raw)
    expected = {
        e["formatted"]["key"]: sum(v["value"] for v in e["formatted"]["values"]) for e in raw
    }
    assert dump.by_key() == expected
    assert len(dump.root) == 7


def test_struct_value_is_not_a_number():
    dump = MapDump.model_validate(load("map_dump_settings.json"))
    assert dump.root[0].formatted.value == {"stream_threads": 0, "wakeup_bytes": 524288}
    with pytest.raises(ValueError):
        dump.root[0].total  # noqa: B018


def test_prog_map_link_info():
    prog = ProgInfo.model_validate(load("prog_show.json"))
    assert prog.type == "tracing" and prog.name == "handle_fork"
    ring = MapInfo.model_validate(load("map_show_events.json"))
    assert ring.type == "ringbuf" and ring.max_entries == 4 * 1024 * 1024
    link = LinkInfo.model_validate(load("link_show.json"))
    assert link.type == "raw_tracepoint" and link.tp_name == "sched_process_fork"
    links = [LinkInfo.model_validate(x) for x in load("link_show_all.json")]
    assert link.id in {x.id for x in links}


def _err(stdout: str, stderr: str = "") -> sh.ErrorReturnCode:
    return sh.ErrorReturnCode_255("bpftool", stdout.encode(), stderr.encode())


def test_error_translation(monkeypatch):
    missing = bpftool._translate(_err((DATA / "error.json").read_text()), "reading x")
    # The remedy is data; the CLI words it for the instance in use.
    assert isinstance(missing, StateError) and missing.remedies == (Command("load"),)
    assert "run `procmon-ctl load` first" in Hints().error(missing)
    eperm = '{"error":"bpf obj get (/sys/fs/bpf): Operation not permitted"}'
    as_root = bpftool._translate(_err(eperm), "reading x")
    assert str(as_root) == "reading x: bpf obj get (/sys/fs/bpf): Operation not permitted"
    monkeypatch.setattr(bpftool.os, "geteuid", lambda: 1000)
    perm = bpftool._translate(_err(eperm), "reading x")
    assert isinstance(perm, PermissionDenied) and "run as root" in str(perm)
    other = bpftool._translate(_err("", "Error: something odd\n"), "doing y")
    assert isinstance(other, BpfError) and str(other) == "doing y: something odd"
