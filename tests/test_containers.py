"""A real podman container (issue 15): its processes carry its id, runtime and
cgroup, their pids inside it, and a lineage through conmon; `events --container`
(a unique prefix) keeps everything else out of the ring in the kernel, a fork
storm on the host included.  Host only: the kernel matrix's guests run no podman.
The image is built locally from busybox-static (tests/containers.py)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import lines_until, wait_reading
from containers import IMAGE, LABEL, RUN_FLAGS, podman, require_podman, running_container
from test_where_it_ran import storm_under_filter, wait_for

from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import READERS_MAX, ReaderSlots


@pytest.fixture(autouse=True)
def _podman() -> None:
    require_podman()


def marker_exec(tag: str) -> list[str]:
    """A command whose exec record holds `tag` (busybox sh runs `true` and `echo`
    itself, without an exec)."""
    return ["/bin/sh", "-c", ":", tag]


def test_a_containers_processes_carry_its_identity(attached):
    tag = uuid.uuid4().hex[:8]
    script = f"{' '.join(marker_exec(tag)[:3])} {tag}; exec sleep 600"
    with (
        attached.reading("events", "--json", "--lineage") as reading,
        running_container("sh", "-c", script) as c,
    ):
        # Once sh has exec'd sleep, its child with the tag has run.
        wait_for(lambda: Path(f"/proc/{c.pid}/comm").read_text() == "sleep\n", what="sleep")
    events = reading.json_lines()
    inside = [e for e in events if e.get("container_id") == c.id]
    assert inside, f"no record of container {c.id}"
    assert all(e["container_runtime"] == "podman" and e["cgroup"] == c.cgroup for e in inside)
    child = next(e for e in inside if e["type"] == "exec" and tag in e["argv"])
    init = next(e for e in inside if e["type"] == "exec" and e["argv"][:2] == ["sh", "-c"])
    # The container's sh is pid 1 inside, its parent outside; sh's child has a
    # small pid there (runc's own steps took the first few), and sh as parent.
    assert (init["ns_pid"], init["ns_ppid"]) == (1, 0)
    assert 1 < child["ns_pid"] < 20 and child["ns_ppid"] == 1
    assert child["ppid"] == init["pid"] == c.pid
    # Who started it: the container's sh, then conmon (podman's monitor) outside it.
    names = [a["comm"] for a in child["lineage"]]
    assert names[0] == "sh" and "conmon" in names and child["lineage"][-1]["pid"] == 1
    # Outside its cgroup nothing is taken for it, and podman's own processes on the
    # host have neither a container nor namespace pids.  (Other containers of the
    # host, another test's, may run meanwhile: theirs are theirs.)
    outside = [e for e in events if e.get("cgroup") != c.cgroup]
    assert not [e for e in outside if e.get("container_id") == c.id]
    host = [e for e in outside if e["comm"] in ("podman", "conmon")]
    assert host and not [e for e in host if "container_id" in e or "ns_pid" in e], host


def test_the_container_filter_keeps_a_host_fork_storm_out(attached, storm):
    """`events --container PREFIX`: the container's processes only, filtered in
    the kernel: a fork storm on the host is counted but never produced (nor are
    podman exec's own processes on the host; runc's inside the container are)."""
    tag = uuid.uuid4().hex[:8]
    with running_container() as c:
        seen = storm_under_filter(
            attached,
            storm,
            ["--container", c.id[:12]],
            lambda: podman("exec", c.name, *marker_exec(tag)),
            tag,
        )
    assert {e["container_id"] for e in seen.events} == {c.id}
    assert not [e for e in seen.events if seen.storm_pid in (e["pid"], e["ppid"])]


def test_the_container_filter_follows_a_podman_restart(attached):
    """`podman restart` removes the container's cgroup and makes it again: the
    filter takes the new one as it is made, so what runs in the container at once
    after the restart is in the stream, with no wait for the reader to look again."""
    tag = uuid.uuid4().hex[:8]
    with (
        running_container() as c,
        attached.reading("events", "--json", "--container", c.id[:12]) as reading,
    ):
        podman("restart", "--time", "0", c.name)
        podman("exec", c.name, *marker_exec(tag))
    execs = [e for e in reading.json_lines() if e["type"] == "exec" and tag in e["argv"]]
    assert [e["container_id"] for e in execs] == [c.id], reading.json_lines()


def test_a_container_by_its_name(attached):
    """--container takes the name podman ps shows, as well as an id; JSON lines
    carry the name and the image (from podman's own state, containers.json).  A
    name that runs no container (yet, or any more: a stopped one may start again)
    is waited for: one line on stderr says so, nothing else is taken meanwhile, and
    once the container starts its processes are in the table, under a CONTAINER
    column that names it."""
    tag = uuid.uuid4().hex[:8]
    with (
        running_container() as c,
        attached.reading("events", "--json", "--container", c.name) as reading,
    ):
        podman("exec", c.name, *marker_exec(tag))
    execs = [e for e in reading.json_lines() if e["type"] == "exec" and tag in e["argv"]]
    assert [(e["container_id"], e["container_name"]) for e in execs] == [(c.id, c.name)]
    assert execs[0]["container_image"] == IMAGE

    # The same name again, created, not started: the reader waits for it.
    podman("create", "--name", c.name, "--label", LABEL, *RUN_FLAGS, IMAGE, "sleep", "600")
    with tempfile.TemporaryFile() as err_file:
        try:
            reader = attached.popen(
                "events", "--wide", "--container", c.name, stdout=subprocess.PIPE, stderr=err_file
            )
            try:
                wait_for(lambda: os.pread(err_file.fileno(), 1, 0), what="the waiting line")
                # Waiting, it is out of the programs' sight: no record is made for it.
                assert ReaderSlots(PinnedInstance.at(attached.pin_dir)).slot_of(reader.pid) is None
                subprocess.run(marker_exec(f"host-{tag}"), check=True)
                podman("start", c.name)
                wait_reading(attached.pin_dir, reader)  # its filter has the container's cgroup
                # A child of podman exec's sh: its fork and exec are the container's
                # (podman exec's own process is forked outside, then moved in).
                podman("exec", c.name, "sh", "-c", f"{' '.join(marker_exec(tag))}; exit")
                lines, _ = lines_until(reader, lambda ls: any(tag in ln for ln in ls))
            finally:
                if reader.poll() is None:
                    reader.kill()
                    reader.wait()
        finally:
            podman("rm", "--force", "--ignore", "--time", "0", c.name, check=False)
        err = os.pread(err_file.fileno(), 1 << 16, 0).decode(errors="replace")
    assert reader.returncode == 0, err
    assert err.count("\n") == 1 and f"the container {c.name} (" in err
    assert "is not running: waiting for it to start" in err
    titles = lines[0].split()
    assert titles == ["TIME", "PID", "PPID", "USER", "EVENT", "CONTAINER", "COMMAND"], lines
    rows = lines[2:]
    assert rows and not [ln for ln in rows if f"host-{tag}" in ln], lines
    # Every row is the container's, named in its own column.
    at = lines[0].index("CONTAINER")
    assert {ln[at:].split()[0] for ln in rows} == {c.name}, lines
    assert [ln for ln in rows if tag in ln and ln.split()[4] == "exec"], lines


def test_the_tables_show_the_process_podman_exec_runs(attached):
    """podman exec's own process is forked outside the container and moved in, so a
    --container reader never gets its fork record: its row starts at its exec, in
    the container, in the table and in --wide, which then shows its exit."""
    tag = uuid.uuid4().hex[:8]
    with running_container() as c:
        for mode in ([], ["--wide"]):
            with attached.reading("events", *mode, "--container", c.name) as reading:
                podman("exec", c.name, *marker_exec(tag))
            lines = reading.lines()
            rows = [ln for ln in lines[2:] if tag in ln]
            if not mode:  # PID PPID COMM CONTAINER CMDLINE
                assert [ln.split()[2:] for ln in rows] == [["sh", c.name, *marker_exec(tag)]]
            else:  # TIME PID PPID USER EVENT CONTAINER COMMAND: the exec, then the exit
                assert [ln.split()[4] for ln in rows] == ["exec", "exit"], lines
                assert rows[0].split()[5:] == [c.name, *marker_exec(tag)], lines


def test_a_container_by_a_prefix_and_one_that_never_runs(attached):
    """A unique prefix of a running container's id is that container; one that no
    container has is waited for (one line on stderr), and gives no rows."""
    with running_container() as c:
        ok = attached("events", "--json", "--container", c.id[:6], "--duration", "0.1")
        never = attached(
            "events", "--container", "f" * 63 + "x", "--duration", "0.5", "--name", "never"
        )
    assert ok.returncode == 0 and not ok.stderr
    # A named reader that waited to its end leaves no place behind: nothing was kept.
    slots = ReaderSlots(PinnedInstance.at(attached.pin_dir))
    assert not [n for n in range(READERS_MAX) if slots._reader(n).name.rstrip(b"\0") == b"never"]
    assert never.stderr.count("\n") == 1 and "waiting for it to start" in never.stderr
    titles, _rule, *rows = never.stdout.splitlines()
    assert titles.split() == ["PID", "PPID", "COMM", "CONTAINER", "CMDLINE"] and not rows


def test_serve_counts_a_containers_processes_by_its_name(attached):
    """serve's series by container: the processes a container's shell forks are
    counted under the name `podman ps` shows (runc's own steps in its cgroup may add
    a few)."""
    from test_serve import exporter, scrape

    forks = 5
    script = f"for i in $(seq {forks}); do /bin/sh -c :; done; exec sleep 600"
    with exporter(attached) as (_, port), running_container("sh", "-c", script) as c:
        wait_for(lambda: Path(f"/proc/{c.pid}/comm").read_text() == "sleep\n", what="sleep")
        series = f'procmon_container_processes_created_total{{container="{c.name}"}}'
        wait_for(lambda: scrape(port).get(series, 0) >= forks, what=series)
        counted = scrape(port)[series]
    print(f"{series} {counted}")
    assert counted <= forks + 5
