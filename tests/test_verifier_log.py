"""When the kernel verifier refuses a program, `load` shows why: the tail of the
verifier log on stderr, then the one-line error; and nothing stays pinned."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

BROKEN_SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("tp_btf/sched_process_fork")
int handle_fork(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	*value += 1; /* no NULL check: the verifier must refuse this */
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def broken_object(tmp_path_factory):
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang not installed")
    d = tmp_path_factory.mktemp("broken-bpf")
    src, obj = d / "broken.bpf.c", d / "broken.bpf.o"
    src.write_text(BROKEN_SOURCE)
    arch_include = f"/usr/include/{os.uname().machine}-linux-gnu"
    subprocess.run(
        [clang, "-g", "-O2", "-target", "bpf", f"-I{arch_include}", "-c", str(src), "-o", str(obj)],
        check=True,
        capture_output=True,
    )
    return obj


def test_verifier_log_tail_then_one_line_error(cli, broken_object):
    r = cli("load", "--object", str(broken_object), check=False)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    # The last line is the error; the tail of the verifier log comes before it.
    assert lines[-1].startswith("procmon-ctl: error: the kernel verifier rejected handle_fork")
    assert "invalid mem access 'map_value_or_null'" in lines[-1]
    assert sum(ln.startswith("procmon-ctl: error:") for ln in lines) == 1
    log = lines[:-1]
    assert 1 <= len(log) <= 20
    assert any("R0 invalid mem access 'map_value_or_null'" in ln for ln in log)
    assert log[-1].startswith("processed "), "the log's own summary ends the tail"
    # libbpf's wrapping is not part of the verifier's log.
    assert not any("PROG LOAD LOG" in ln or ln.startswith("libbpf:") for ln in log)
    # Nothing of the failed load stays pinned.
    assert not cli.pin_dir.exists()


def test_good_object_prints_no_log(cli):
    r = cli("load")
    assert r.stderr == ""
    cli("unload")


def test_failed_load_removes_parents_it_made(cli, broken_object):
    inner = cli.pin_dir / "a" / "b"
    r = cli("--pin-dir", str(inner), "load", "--object", str(broken_object), check=False)
    assert r.returncode == 1
    assert not cli.pin_dir.exists(), "the directories made for the pin dir are gone too"
