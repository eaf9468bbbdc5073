"""`procmon-ctl serve` on the real kernel, scraped by a real Prometheus server.

Every process started here (exporter, prometheus) is stopped in a finally block,
and the pin directory is the `pin_dir` fixture's, so nothing outlives a test."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import bpf_held_by, bpf_ids_alive, bpftool_json, fork_processes, programs_left

from procmon_ctl.commands.exporter import ANSWERING_THREADS, MAX_CONNECTIONS, REQUEST_TIMEOUT
from procmon_ctl.instance.attach import attach as attach_events
from procmon_ctl.instance.attach import detach as detach_events
from procmon_ctl.instance.pinned import PinnedInstance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(what: str, check, timeout: float = 30, proc: subprocess.Popen | None = None):
    """Poll check() until it returns something truthy; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_err = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process exited with {proc.returncode}")
        try:
            result = check()
            if result:
                return result
        except OSError as err:
            last_err = err
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what} (last error: {last_err})")


def stop(proc: subprocess.Popen, timeout: float = 15, sig: int = signal.SIGTERM) -> int:
    """SIGTERM (or `sig`) and wait; SIGKILL only if it does not go.  Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def scrape(port: int) -> dict[str, float]:
    """The exporter's samples, by name with labels."""
    samples = {}
    for line in http_get(f"http://127.0.0.1:{port}/metrics").splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@contextmanager
def exporter(cli, *args: str, stop_signal: int = signal.SIGTERM):
    port = free_port()
    proc = cli.popen(
        "serve", "--port", str(port), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # With --attach it listens first, then loads and attaches.
        wait_for(
            "the exporter to answer",
            lambda: (
                scrape(port).get("procmon_loaded") == 1
                and scrape(port).get('procmon_attached{program="exit"}') == 1
            ),
            proc=proc,
        )
        yield proc, port
    finally:
        code = stop(proc, sig=stop_signal)
        proc.stdout.close()
        proc.stderr.close()
        # Ctrl-C and SIGTERM are how it is stopped: exit 0 (cleanup is checked by callers).
        assert code == 0, f"exporter exited {code} on signal {stop_signal}"


@pytest.fixture
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus not installed: `make test` installs it (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Prometheus:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[dict]:
        q = urllib.parse.urlencode({"query": expr})
        reply = json.loads(http_get(f"{self.url}/api/v1/query?{q}"))
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def sample_after(self, metric: str, t: float) -> float:
        """The value of the first scrape of `metric` that started after wall time t."""

        def fresh():
            ts = self.value(f"timestamp({metric})")
            if ts is None or ts <= t:
                return None
            return (self.value(metric),)

        return wait_for(f"a scrape of {metric} after {t}", fresh)[0]


@contextmanager
def prometheus_server(binary: str, tmp: Path, target_port: int, names: list[str] | None = None):
    """A Prometheus scraping the exporter every second; with `names`, it asks for
    those series only (`params: {name[]: [...]}`)."""
    port = free_port()
    config = tmp / "prometheus.yml"
    params = f"    params: {{'name[]': {json.dumps(names)}}}\n" if names else ""
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: procmon\n"
        f"{params}"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    try:
        prom = Prometheus(port)
        wait_for("prometheus to be ready", lambda: http_get(f"{prom.url}/-/ready"), proc=proc)
        wait_for(
            "prometheus's first scrape of the exporter",
            lambda: prom.value('up{job="procmon"}') == 1,
            proc=proc,
        )
        yield prom
    finally:
        code = stop(proc, timeout=30)
        assert code == 0, f"prometheus exited {code}: {(tmp / 'prometheus.log').read_text()}"


def test_prometheus_sees_exact_forks(attached, prometheus_bin, tmp_path):
    """Fork N processes while only the fork program's window is open, and see
    Prometheus's scraped counter grow by exactly the processes the kernel created
    in that window: N plus whatever else the machine forked then (counted from a
    reader's fork events), so exactly N on a quiet machine."""
    cli = attached
    layout = PinnedInstance.at(cli.pin_dir)
    n = 40
    with (
        exporter(cli) as (_, exporter_port),
        prometheus_server(prometheus_bin, tmp_path, exporter_port) as prom,
    ):
        # Freeze the process counter: outside the window nothing counts, so the
        # moment of each scrape does not matter.
        detach_events(layout, ["fork"])
        t_frozen = time.time()
        before = prom.sample_after("procmon_processes_created_total", t_frozen)
        assert prom.value('procmon_attached{program="fork"}') == 0
        assert prom.value('procmon_attached{program="exec"}') == 1
        dropped_before = prom.value("procmon_events_dropped_total")

        # The window: attached, n forks, detached, all in this process (no fork of ours
        # besides the n children).
        # A reader from before it opens to after it closes sees each fork of it.
        with cli.reading("events", "--json") as reader:
            attach_events(layout, ["fork"])
            try:
                pids = fork_processes(n)
            finally:
                detach_events(layout, ["fork"])
        t_closed = time.time()

        lines = reader.json_lines()
        forks = {e["tgid"] for e in lines if e["type"] == "fork" and not e["thread"]}
        after = prom.sample_after("procmon_processes_created_total", t_closed)
        assert prom.value("procmon_events_dropped_total") == dropped_before, "ring overflowed"
        assert not [e for e in lines if e["type"] == "gap"]

        grown = after - before
        print(
            f"prometheus: procmon_processes_created_total {before:.0f} -> {after:.0f} "
            f"(+{grown:.0f}) for {n} forks; kernel fork events in the window: {len(forks)}"
        )
        assert set(pids) <= forks, "a fork of ours is missing from the ring"
        assert grown >= n
        assert grown == len(forks), "the counter and the ring disagree on the window"
        # Process metrics of the exporter itself come along.
        assert prom.value('process_resident_memory_bytes{job="procmon"}') > 0
        assert prom.value('procmon_exits_total{job="procmon"}') > 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_serve_attach_loads_and_unloads(cli, stop_signal):
    """`serve --attach` serves an instance of its own, pinned nowhere, that is gone
    once serve stops (SIGTERM or Ctrl-C here; SIGKILL in the next test)."""
    with exporter(cli, "--attach", stop_signal=stop_signal) as (proc, port):
        held = bpf_held_by(proc.pid)
        prog_ids = held["prog"]
        assert len(prog_ids) == 4 and len(held["link"]) == 4  # fork, exec, exit, cgroup
        assert not pinned(held), "serve --attach pinned something"
        first = scrape(port)
        assert first["procmon_loaded"] == 1
        for event in ("fork", "exec", "exit"):
            assert first[f'procmon_attached{{program="{event}"}}'] == 1
        fork_processes(10)
        second = scrape(port)
        assert (
            second["procmon_processes_created_total"] - first["procmon_processes_created_total"]
        ) >= 10
        assert "process_cpu_seconds_total" in second
    assert not cli.pin_dir.exists(), "serve --attach left its pins behind"
    assert not programs_left(prog_ids)


def test_serve_attach_killed_leaves_nothing(cli):
    port = free_port()
    proc = cli.popen("serve", "--attach", "--port", str(port), stderr=subprocess.PIPE)
    try:
        wait_for(
            "the exporter to answer",
            lambda: scrape(port).get('procmon_attached{program="exit"}') == 1,
            proc=proc,
        )
        held = bpf_held_by(proc.pid)
        assert len(held["link"]) == 4
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    for kind in ("link", "prog", "map"):
        assert not bpf_ids_alive(kind, held[kind]), kind


def test_serve_reports_unload_while_running(attached):
    """Unloading under a running exporter (a reader: --force): scrapes go on, saying
    nothing is loaded, with what serve counted so far; loaded again, it counts on."""
    cli = attached
    with exporter(cli) as (proc, port):
        assert scrape(port)["procmon_loaded"] == 1
        assert cli("unload", check=False).returncode == 3, "serve is a reader"
        fork_processes(3)
        wait_for("serve to count the forks", lambda: scrape(port).get(ROOT_FORKS, 0) >= 3)
        cli("unload", "--force")
        samples = scrape(port)
        assert samples["procmon_loaded"] == 0
        assert samples['procmon_attached{program="fork"}'] == 0
        assert "procmon_processes_created_total" not in samples
        counted = samples[ROOT_FORKS]
        assert counted >= 3
        said = []
        wait_for("serve to say so", lambda: said_unloaded(proc, said))
        cli("load")
        cli("attach")
        wait_for("serve to read the new instance", lambda: reader_pids(cli) == {proc.pid})
        fork_processes(2)
        wait_for("serve to count on", lambda: scrape(port).get(ROOT_FORKS, 0) >= counted + 2)


def test_metric_help_and_types(attached):
    cli = attached
    with exporter(cli) as (_, port):
        text = http_get(f"http://127.0.0.1:{port}/metrics")
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for name in (
        "procmon_processes_created",
        "procmon_threads_created",
        "procmon_execs",
        "procmon_exits",
        "procmon_events_produced",
        "procmon_events_dropped",
    ):
        # The classic text format names the family with its _total suffix.
        assert f"# TYPE {name}_total counter" in text
        assert f"# HELP {name}_total " in text
        assert f"\n{name}_total " in text
    assert "# TYPE procmon_attached gauge" in text


ROOT_FORKS = 'procmon_user_processes_created_total{user="root"}'


def said_unloaded(proc: subprocess.Popen, said: list[bytes]) -> bool:
    """Whether serve's stdout has said the instance was unloaded (read as it comes)."""
    fd = proc.stdout.fileno()
    if select.select([fd], [], [], 0.1)[0]:
        said.append(os.read(fd, 1 << 16))
    return b"was unloaded" in b"".join(said)


def reader_pids(cli) -> set[int]:
    return {r["pid"] for r in cli.json("readers", "--json")}


def copy_named(source: str, directory: Path, name: str) -> Path:
    path = directory / name
    shutil.copy(source, path)
    path.chmod(0o755)
    return path


def run_workload(uid: int, shell: Path, garbage: Path, scripts: list[str], failed: int) -> None:
    """As user `uid` (a child that forks the rest): one process per script, each
    running `shell -c script`, then `failed` execs of a file that is no program
    (ENOEXEC), each in a process of its own."""
    leader = os.fork()
    if leader == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            children = []
            for script in scripts:
                pid = os.fork()
                if pid == 0:
                    os.execv(shell, [shell.name, "-c", script])
                children.append(pid)
            for _ in range(failed):
                pid = os.fork()
                if pid == 0:
                    try:
                        os.execv(garbage, [garbage.name])
                    except OSError:
                        os._exit(0)
                children.append(pid)
            for pid in children:
                os.waitpid(pid, 0)
        finally:
            os._exit(0)
    os.waitpid(leader, 0)


@pytest.fixture
def shared_dir() -> Path:
    """A directory any user can run programs from (tmp_path's parents are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="procmon-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_prometheus_counts_a_known_workload(attached, prometheus_bin, tmp_path, shared_dir):
    """serve's own reader, scraped by a real Prometheus: a workload run as a user no
    one else is, through a shell of a name no one else has, is counted exactly by
    user and by command, and its exits, signals, failed execs and lifetimes show in
    their series (those are the whole machine's: at least the workload's)."""
    cli = attached
    uid = 40000 + os.getpid() % 20000
    shell = copy_named("/bin/sh", shared_dir, f"pmw{os.getpid()}")
    garbage = shared_dir / "not-a-program"
    garbage.write_bytes(b"\x01\x02 not a program\n")
    garbage.chmod(0o755)
    scripts = ["exit 0"] * 3 + ["exit 7"] * 2 + ["kill -USR2 $$"] * 2 + ["exec sleep 1.2"]
    with (
        exporter(cli, "--failed") as (_, port),
        prometheus_server(prometheus_bin, tmp_path, port) as prom,
    ):
        t0 = time.time()
        before = {
            m: prom.sample_after(m, t0)
            for m in (
                'procmon_process_exits_total{status="success"}',
                'procmon_process_exits_total{status="failure"}',
                'procmon_process_exits_total{status="signal"}',
                'procmon_process_lifetime_seconds_bucket{le="5.0"}',
                'procmon_process_lifetime_seconds_bucket{le="1.0"}',
            )
        }
        signalled = prom.value('procmon_process_signal_exits_total{signal="SIGUSR2"}') or 0
        noexec = prom.value('procmon_failed_execs_total{errno="ENOEXEC"}') or 0
        run_workload(uid, shell, garbage, scripts, failed=2)
        by_user = f'procmon_user_processes_created_total{{user="{uid}"}}'
        by_command = f'procmon_command_execs_total{{command="{shell.name}"}}'
        wait_for(
            "serve to count the workload",
            lambda: scrape(port).get(by_command, 0) >= len(scripts),
        )
        t1 = time.time()
        assert prom.sample_after(by_user, t1) == len(scripts) + 2
        assert prom.value(by_command) == len(scripts)
        after = {m: prom.sample_after(m, t1) for m in before}
        grown = {m: after[m] - before[m] for m in before}
        print(f"grown: {grown}")
        assert grown['procmon_process_exits_total{status="success"}'] >= 3 + 2
        assert grown['procmon_process_exits_total{status="failure"}'] >= 2
        assert grown['procmon_process_exits_total{status="signal"}'] >= 2
        slow = (
            grown['procmon_process_lifetime_seconds_bucket{le="5.0"}']
            - grown['procmon_process_lifetime_seconds_bucket{le="1.0"}']
        )
        assert slow >= 1, "the 1.2 s process is in the (1, 5] bucket"
        sig = prom.value('procmon_process_signal_exits_total{signal="SIGUSR2"}')
        assert sig - signalled >= 2
        assert prom.value('procmon_failed_execs_total{errno="ENOEXEC"}') - noexec >= 2
        assert prom.value("procmon_serve_records_lost_total") == 0


def test_top_bounds_the_series_and_counters_only_reads_nothing(attached, shared_dir):
    """--top 1: one command has a series, every other is "(other)"; --counters-only:
    no reader of its own, so none of the counted series."""
    cli = attached
    with exporter(cli, "--top", "1") as (proc, port):
        wait_for("serve's reader", lambda: proc.pid in reader_pids(cli))
        names = [f"pmt{os.getpid()}{c}" for c in "ab"]
        for name in names:
            subprocess.run([copy_named("/bin/true", shared_dir, name)], check=True)
        wait_for(
            "both execs counted",
            lambda: (
                sum(
                    v
                    for k, v in scrape(port).items()
                    if k.startswith("procmon_command_execs_total")
                )
                >= 2
            ),
        )
        series = [k for k in scrape(port) if k.startswith("procmon_command_execs_total")]
        assert len(series) == 2, series  # one value and (other)
        assert 'procmon_command_execs_total{command="(other)"}' in series
    with exporter(cli, "--counters-only") as (proc, port):
        samples = scrape(port)
        assert proc.pid not in reader_pids(cli)
        assert samples["procmon_processes_created_total"] >= 0
        assert not [k for k in samples if k.startswith(("procmon_command", "procmon_serve"))]


def test_serve_not_loaded_is_one_line(cli):
    r = cli("serve", "--port", str(free_port()), check=False, timeout=20)
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "procmon-ctl load" in r.stderr and "serve --attach" in r.stderr


def test_serve_port_in_use_is_one_line(attached):
    cli = attached
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("serve", "--port", str(port), check=False, timeout=20)
        r_attach = cli("serve", "--attach", "--port", str(port), check=False, timeout=20)
    assert r.returncode != 0 and r.stderr.count("\n") == 1
    assert f"port {port}" in r.stderr and "in use" in r.stderr
    # --attach serves an instance of its own beside the loaded one: only the port fails.
    assert r_attach.returncode == 3 and r_attach.stderr == r.stderr
    assert cli.json("status", "--json")["loaded"]


def pinned(held: dict[str, set[int]]) -> dict[int, list[str]]:
    """Where in bpffs any of these objects is pinned (bpftool -f walks every mount)."""
    return {
        o["id"]: o["pinned"]
        for kind, ids in held.items()
        for o in bpftool_json("-f", kind, "show")
        if o["id"] in ids and o.get("pinned")
    }


def _pin_dir_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    except OSError:
        return None
    return env.get(b"PROCMON_PIN_DIR", b"").decode(errors="replace")


def _program_holders() -> dict[int, set[int]]:
    """Program id -> the processes holding it through an fd (this bpftool cannot
    say: its `pids` field needs a build with BPF skeletons)."""
    holders: dict[int, set[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for prog_id in bpf_held_by(int(entry))["prog"]:
                holders.setdefault(prog_id, set()).add(int(entry))
    return holders


def _our_programs_anywhere(pin_dir: Path) -> set[int]:
    """Programs of ours nothing should keep: unpinned ones held by no process (the
    kernel frees them after an RCU grace period) or by a process of this test (its
    PROCMON_PIN_DIR, which serve's children would inherit).  Other tests' instances
    on the host, pinned in their dirs or held by their processes, do not count."""
    holders = _program_holders()
    return {
        p["id"]
        for p in bpftool_json("-f", "prog", "show")
        if p.get("name", "").startswith("handle_")
        and not p.get("pinned")
        and (
            not holders.get(p["id"])
            or any(_pin_dir_of(pid) == str(pin_dir) for pid in holders[p["id"]])
        )
    }


def test_serve_attach_busy_port_leaves_nothing(cli):
    before = _our_programs_anywhere(cli.pin_dir)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("serve", "--attach", "--port", str(port), check=False, timeout=20)
    assert r.returncode != 0 and "in use" in r.stderr and r.stderr.count("\n") == 1
    assert not cli.pin_dir.exists()
    deadline = time.monotonic() + 5
    while _our_programs_anywhere(cli.pin_dir) - before and time.monotonic() < deadline:
        time.sleep(0.05)  # the kernel frees a closed instance after an RCU grace period
    assert not _our_programs_anywhere(cli.pin_dir) - before, "serve's programs outlived it"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--port", "70000"], "--port 70000"),
        (["--port", "0"], "--port 0 is not a TCP port: use 1-65535"),
        (["--port", "-1"], "--port -1 is not a TCP port: use 1-65535"),
        (["--port", "65536"], "--port 65536 is not a TCP port: use 1-65535"),
        (["--address", "no.such.host.invalid"], "--address"),
        (["--port", "abc"], "--port"),
        (["--object", "/nonexistent.o"], "--object only applies with --attach"),
        (["--top", "0"], "--top 0 is out of range: give 1-1000"),
        (["--top", "1001"], "--top 1001 is out of range: give 1-1000"),
        (["--counters-only", "--failed"], "--failed is counted by serve's own reader"),
        (["--attach", "--failed"], "--failed needs the pinned instance"),
    ],
)
def test_serve_bad_input_is_one_line(attached, args, expected):
    r = attached("serve", *args, check=False, timeout=20)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and expected in r.stderr and "Traceback" not in r.stderr


def test_serve_attach_port_0_loads_nothing(cli):
    """The port is checked before anything is loaded: nothing to undo."""
    before = _our_programs_anywhere(cli.pin_dir)
    r = cli("serve", "--attach", "--port", "0", check=False, timeout=20)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "use 1-65535" in r.stderr and "Traceback" not in r.stderr
    assert not cli.pin_dir.exists()
    assert not _our_programs_anywhere(cli.pin_dir) - before


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed this (non-blocking) socket: EOF or a reset."""
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_idle_connections_are_bounded_and_time_out(attached):
    """600 connections that never finish a request (most send nothing, some half a
    request head) cost serve no thread each: its thread count stays bounded, a real
    scrape is answered at once meanwhile, and the server closes every one of them:
    the surplus at once, the last MAX_CONNECTIONS after REQUEST_TIMEOUT."""
    cli = attached
    bound = 2 + ANSWERING_THREADS  # the main thread, the accepting one, the answering ones
    with exporter(cli) as (proc, port):
        socks: list[tuple[socket.socket, float]] = []
        most_threads = 0
        try:
            for i in range(600):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if i % 12 == 0:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
                s.setblocking(False)
                socks.append((s, time.monotonic()))
                if i % 50 == 0:
                    most_threads = max(most_threads, thread_count(proc.pid))
            most_threads = max(most_threads, thread_count(proc.pid))

            started = time.monotonic()
            body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            scrape_seconds = time.monotonic() - started
            assert "\nprocmon_loaded 1.0\n" in body
            most_threads = max(most_threads, thread_count(proc.pid))

            # The server accepted all 600 (or the scrape could not have got in) and
            # holds at most MAX_CONNECTIONS of them: the rest are closed already.
            def open_ones():
                left = [(s, t) for s, t in socks if not closed_by_peer(s)]
                return left if len(left) <= MAX_CONNECTIONS else None

            survivors = wait_for("the surplus connections to be closed", open_ones, timeout=10)
            assert survivors, "nothing left to time out: the test would prove no timeout"

            opened = dict(survivors)
            timed_out: list[float] = []
            deadline = time.monotonic() + REQUEST_TIMEOUT + 10
            while opened and time.monotonic() < deadline:
                ready, _, _ = select.select(list(opened), [], [], 0.2)
                for s in ready:
                    if closed_by_peer(s):
                        timed_out.append(time.monotonic() - opened.pop(s))
                most_threads = max(most_threads, thread_count(proc.pid))
            assert not opened, f"{len(opened)} idle connection(s) still open after the timeout"
            timed_out.sort()
        finally:
            for s, _ in socks:
                s.close()
    print(
        f"600 idle connections: at most {most_threads} threads in serve; a scrape "
        f"meanwhile took {scrape_seconds * 1000:.1f} ms; the last {len(survivors)} closed "
        f"{timed_out[0]:.1f}-{timed_out[-1]:.1f} s after connecting"
    )
    assert most_threads <= bound, f"{most_threads} threads for 600 idle connections"
    assert scrape_seconds < 3
    # The ones left were closed by the timeout, not before it (nor long after).
    assert timed_out[0] >= REQUEST_TIMEOUT - 1 and timed_out[-1] <= REQUEST_TIMEOUT + 5


def families(text: str) -> set[str]:
    """The series names of a text exposition."""
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


def test_name_filter_gives_only_those_series(attached):
    """`/metrics?name[]=...` as in prometheus-client's own server: only the named
    series, several names at once, an empty (valid) body for unknown names."""
    cli = attached
    with exporter(cli) as (_, port):
        base = f"http://127.0.0.1:{port}/metrics"
        everything = families(http_get(base))
        assert {"procmon_loaded", "procmon_exits_total", "process_open_fds"} <= everything
        only = families(http_get(f"{base}?name[]=procmon_loaded"))
        several = http_get(
            f"{base}?name[]=procmon_exits_total&name[]=procmon_attached"
            "&name[]=process_resident_memory_bytes"
        )
        with urllib.request.urlopen(f"{base}?name[]=no_such_metric", timeout=5) as r:
            unknown_status, unknown_type, unknown = r.status, r.headers["Content-Type"], r.read()
    assert only == {"procmon_loaded"}
    assert families(several) == {
        "procmon_exits_total",
        "procmon_attached",
        "process_resident_memory_bytes",
    }
    assert "# TYPE procmon_exits_total counter" in several
    assert several.count("procmon_attached{") == 4  # each program's series
    assert unknown_status == 200 and unknown_type.startswith("text/plain") and unknown == b""


def test_prometheus_scrapes_with_name_filter(attached, prometheus_bin, tmp_path):
    """A real Prometheus with `params: {name[]: [...]}` stores those series only."""
    cli = attached
    wanted = ["procmon_loaded", "procmon_exits_total"]
    with (
        exporter(cli) as (_, port),
        prometheus_server(prometheus_bin, tmp_path, port, names=wanted) as prom,
    ):
        assert prom.value('scrape_samples_scraped{job="procmon"}') == len(wanted)
        assert prom.value('procmon_loaded{job="procmon"}') == 1
        assert prom.value('procmon_exits_total{job="procmon"}') >= 0
        assert prom.value('procmon_events_produced_total{job="procmon"}') is None
        assert prom.value('process_resident_memory_bytes{job="procmon"}') is None


def test_serve_help_states_the_limits(cli):
    text = " ".join(cli("serve", "--help").stdout.split())
    assert f"at most {MAX_CONNECTIONS} connections" in text
    assert f"within {REQUEST_TIMEOUT:g} s" in text
    assert f"at most {ANSWERING_THREADS} answers" in text
    assert "1-65535" in text and "name[]" in text
