"""The service layout of scripts/: procmon-ctl.service (loads and attaches the pinned
instance, serves the metrics) and procmon-ctl-log.service (the JSON log, a named
reader).  `systemd-analyze verify` accepts both, and their commands really work as
systemd would run them: taken from the unit files, as root, under each unit's
CapabilityBoundingSet and NoNewPrivileges (setpriv), PrivateNetwork (unshare), UMask
and Environment, ExecStartPre before ExecStart, stopped with KillSignal; no systemd
runs as PID 1 here.  Only the pin dir, the port and the log directory are the
test's own."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, our_program_ids, pin_tree

from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.instance.readers import ReaderSlots

SCRIPTS = ROOT / "scripts"
MAIN = "procmon-ctl.service"
LOG = "procmon-ctl-log.service"
INSTALLED = "/usr/local/bin/procmon-ctl"  # where `make install` links it
VENV_BIN = Path(sys.executable).parent / "procmon-ctl"
# systemd's environment for a system service (no login shell, no HOME for root).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
PROGRAMS = ("fork", "exec", "exit")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} not installed: `make test` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass(frozen=True)
class Unit:
    """A unit file as systemd reads the settings used here: [Section] key=value lines,
    a key given again adds a value (ExecStartPre=, Environment=)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def values(self, key: str, section: str = "Service") -> list[str]:
        found, current = [], None
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            assert not line.endswith("\\"), f"{self.name}: continued lines are not read here"
            if line.startswith("["):
                current = line.strip("[]")
            elif current == section and line.partition("=")[0] == key:
                found.append(line.partition("=")[2].strip())
        return found

    def value(self, key: str, section: str = "Service") -> str | None:
        values = self.values(key, section)
        return values[-1] if values else None

    def commands(self, key: str) -> list[list[str]]:
        """The command lines of ExecStartPre=/ExecStart=/...: none has a prefix
        (`-` would let a failing step pass, `+` would run it unsandboxed)."""
        argvs = [shlex.split(v) for v in self.values(key)]
        for argv in argvs:
            assert argv[0].startswith("/"), f"{self.name} {key}: {argv[0]} (a prefix?)"
        return argvs

    def capabilities(self) -> list[str]:
        return (self.value("CapabilityBoundingSet") or "").split()


def unit(name: str) -> Unit:
    return Unit(SCRIPTS / name)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Host:
    """Where this test's services live: its pin dir, port and /var/log."""

    pin_dir: Path
    var_log: Path
    port: int

    def rewritten(self, argv: list[str]) -> list[str]:
        """argv with this checkout's binary, this test's port and log directory."""
        out = []
        for arg in argv:
            if arg == INSTALLED:
                arg = str(VENV_BIN)
            elif arg.startswith("/var/log/"):
                arg = str(self.var_log / arg.removeprefix("/var/log/"))
            out.append(arg)
        if "--port" in out:
            out[out.index("--port") + 1] = str(self.port)
        return out

    def log_path(self, argv: list[str]) -> Path:
        """Where the command `argv` of a unit writes its --output, here."""
        return Path(self.rewritten([argv[argv.index("--output") + 1]])[0])

    def prepare(self, u: Unit) -> None:
        """What systemd makes before it starts the unit: its LogsDirectory=."""
        mode = int(u.value("LogsDirectoryMode") or "0755", 8)
        for name in u.values("LogsDirectory"):
            (self.var_log / name).mkdir(parents=True, exist_ok=True)
            os.chmod(self.var_log / name, mode)

    def argv(self, u: Unit, argv: list[str], caps: list[str] | None = None) -> list[str]:
        """argv as systemd runs it for unit `u`: only the unit's capabilities (or
        `caps`) in the bounding set, so root gets no others at exec; no inheritable
        ones; no new privileges; a network namespace of its own if it asks for one."""
        caps = u.capabilities() if caps is None else caps
        bounding = ",".join(["-all", *(f"+{c.lower().removeprefix('cap_')}" for c in caps)])
        sandbox = [need("setpriv"), "--bounding-set", bounding, "--inh-caps", "-all"]
        if u.value("NoNewPrivileges") == "yes":
            sandbox.append("--no-new-privs")
        if u.value("PrivateNetwork") == "yes":
            sandbox = [need("unshare"), "--net", "--", *sandbox]
        return [*sandbox, "--", *self.rewritten(argv)]

    def env(self, u: Unit) -> dict[str, str]:
        env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "PROCMON_PIN_DIR": str(self.pin_dir)}
        for assignment in u.values("Environment"):
            key, _, value = assignment.partition("=")
            env[key] = value
        return env

    def run_pre(self, u: Unit, caps: list[str] | None = None) -> list[subprocess.CompletedProcess]:
        """Each ExecStartPre= in order, as long as they succeed (systemd's rule)."""
        self.prepare(u)
        done = []
        for argv in u.commands("ExecStartPre"):
            done.append(
                subprocess.run(
                    self.argv(u, argv, caps),
                    capture_output=True,
                    text=True,
                    timeout=120,
                    env=self.env(u),
                    cwd="/",
                    umask=int(u.value("UMask") or "0022", 8),
                )
            )
            if done[-1].returncode != 0:
                break
        return done

    def start(self, u: Unit, caps: list[str] | None = None) -> subprocess.Popen:
        """The unit's one ExecStart= (Type=exec: it is the main process)."""
        assert u.value("Type") == "exec"
        (argv,) = u.commands("ExecStart")
        self.prepare(u)
        return subprocess.Popen(
            self.argv(u, argv, caps),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(u),
            cwd="/",
            umask=int(u.value("UMask") or "0022", 8),
        )

    def start_unit(self, u: Unit) -> subprocess.Popen:
        for step in self.run_pre(u):
            assert step.returncode == 0, f"{u.name}: {step.args}: {step.stderr}"
        return self.start(u)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()


def stop(u: Unit, proc: subprocess.Popen) -> str:
    """As `systemctl stop` does: KillSignal= to the main process, then wait at most
    TimeoutStopSec=; it must exit 0 (systemd counts that unit's stop clean)."""
    sig = getattr(signal, u.value("KillSignal") or "SIGTERM")
    timeout = float((u.value("TimeoutStopSec") or "90s").removesuffix("s"))
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"{u.name} did not stop within TimeoutStopSec: {err}")
    assert proc.returncode == 0, f"{u.name} exited {proc.returncode}: {err}"
    return err


def kill_left(*procs: subprocess.Popen | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(condition, what: str, timeout: float = 60, poke=None, procs=()) -> None:
    """Poll condition() until it holds, calling poke() between tries (to make the
    processes it looks for); fail early if one of procs has ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            assert proc.poll() is None, f"ended while waiting for {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout:.0f} s"
        if poke is not None:
            poke()
        time.sleep(0.05)


def exec_marked(marker: str) -> None:
    """One process that execs with `marker` as an argument."""
    subprocess.run(["/bin/sh", "-c", ":", marker], check=True)


def markers_in(path: Path, prefix: str) -> list[str]:
    """The markers starting with `prefix` that exec records in the JSON lines at
    `path` carry, one per record, in order."""
    if not path.exists():
        return []
    text = path.read_text()
    found = []
    # Whole lines only: the writer may be halfway through one.
    for line in text[: text.rfind("\n") + 1].splitlines():
        if prefix not in line:
            continue
        record = json.loads(line)
        if record["type"] == "exec":
            found += [a for a in record["argv"] if a.startswith(prefix)]
    return found


CAPABILITY_BITS = {"CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


def effective_capabilities(pid: int) -> set[str]:
    """The capabilities process `pid` has in effect, by name (those named here)."""
    with open(f"/proc/{pid}/status") as f:
        mask = int(re.search(r"^CapEff:\s*(\w+)", f.read(), re.M)[1], 16)
    names = {name for name, bit in CAPABILITY_BITS.items() if mask & (1 << bit)}
    assert mask == sum(1 << CAPABILITY_BITS[n] for n in names), f"CapEff {mask:#x}"
    return names


def metric(text: str, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", text, re.M)[1])


def output_of(argv: list[str]) -> Path:
    return Path(argv[argv.index("--output") + 1])


def reader_name(argv: list[str]) -> str:
    return argv[argv.index("--name") + 1]


@pytest.fixture
def host(pin_dir, tmp_path) -> Host:
    return Host(pin_dir, tmp_path / "var-log", free_port())


# -- the unit files --------------------------------------------------------------


def test_the_units_run_the_installed_binary_on_the_pinned_instance():
    main, log = unit(MAIN), unit(LOG)
    for u in (main, log):
        for key in ("ExecStartPre", "ExecStart"):
            for argv in u.commands(key):
                assert argv[0] == INSTALLED, f"{u.name} {key}: {argv}"
        assert u.value("User") is None, "root: the CLI checks for uid 0 and owns its pins"
        assert u.value("NoNewPrivileges") == "yes"
        assert u.value("ProtectSystem") == "strict"
        assert not u.value("AmbientCapabilities")
        # Without CAP_SYS_RESOURCE, libbpf cannot raise it for BPF maps on 5.10.
        assert u.value("LimitMEMLOCK") == "infinity"
        assert set(u.capabilities()) <= set(CAPABILITY_BITS) - {"CAP_SYS_ADMIN"}
        assert u.value("Restart") == "on-failure"
        assert u.value("WantedBy", "Install") == "multi-user.target"
    # Loaded if needed, then attached; served without --attach, which would serve a
    # private instance that no other reader can read.
    assert [argv[1:2] for argv in main.commands("ExecStartPre")] == [["load"], ["attach"]]
    assert "--if-needed" in main.commands("ExecStartPre")[0]
    ((_, command, *options),) = main.commands("ExecStart")
    assert command == "serve" and "--attach" not in options
    # The log: a named reader writing into its LogsDirectory= (the one place on disk
    # ProtectSystem=strict lets it write), after the instance is up.
    (argv,) = log.commands("ExecStart")
    assert argv[1] == "events" and reader_name(argv)
    assert "--from-now" not in argv, "a shipper's reader must not skip what waited"
    (logs,) = log.values("LogsDirectory")
    assert output_of(argv).parent == Path("/var/log") / logs
    assert MAIN in log.values("Requires", "Unit") and MAIN in log.values("After", "Unit")
    # Restarted while nothing is loaded (exit 3), it must keep trying: slower than
    # systemd's default start limit (5 starts in 10 s), after which it would stay down.
    assert float(log.value("RestartSec").removesuffix("s")) * 4 > 10
    (reload,) = log.commands("ExecReload")
    assert reload[1:] == ["-HUP", "$MAINPID"], "SIGHUP reopens --output (logrotate)"


def rewritten_copies(tmp_path: Path, extra: dict[str, str] | None = None) -> list[Path]:
    """Both units with this checkout's binary (verify checks that each command
    exists, and /usr/local/bin/procmon-ctl is there only after install), side by side
    so that the log unit's Requires= finds the other."""
    tmp_path.mkdir(exist_ok=True)
    copies = []
    for name in (MAIN, LOG):
        text = (SCRIPTS / name).read_text().replace(INSTALLED, str(VENV_BIN))
        copy = tmp_path / name
        copy.write_text(text + (extra or {}).get(name, ""))
        copies.append(copy)
    return copies


def verify(*units: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [need("systemd-analyze"), "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", [MAIN, LOG])
def test_systemd_analyze_verify(tmp_path, name):
    assert VENV_BIN.exists()
    copies = {c.name: c for c in rewritten_copies(tmp_path)}
    r = verify(copies[name])
    assert r.returncode == 0, r.stderr
    assert "procmon-ctl" not in r.stderr, r.stderr
    # ... and verify does catch a bad unit (so the pass above means something): a bad
    # value is a warning naming the unit, a missing ExecStart= command an error.
    bad = {name: "\n[Service]\nType=not-a-type\n"}
    copies = {c.name: c for c in rewritten_copies(tmp_path / "bad", bad)}
    r = verify(copies[name])
    assert "not-a-type" in r.stderr, r.stderr
    copies[name].write_text(copies[name].read_text().replace(str(VENV_BIN), "/nonexistent/x"))
    assert verify(copies[name]).returncode != 0


@pytest.mark.parametrize("name", [MAIN, LOG])
def test_security_exposure_is_ok(tmp_path, name):
    copies = {c.name: c for c in rewritten_copies(tmp_path)}
    r = subprocess.run(
        [need("systemd-analyze"), "security", "--offline=true", "--no-pager", str(copies[name])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(rf"Overall exposure level for {re.escape(name)}: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    print(f"systemd-analyze security {name}: exposure {m.group(1)}")
    assert float(m.group(1)) < 5.0


# -- the units' commands, as systemd runs them -------------------------------------


def test_the_service_layout_end_to_end(host, cli, tmp_path):
    """Both units up, and `sudo procmon-ctl events` beside them: the log fills, the
    metrics answer and the interactive reader gets its records, all at once; the
    log unit's restarts and the main unit's lose nothing; a stop leaves the instance
    and the log's place, and nothing else."""
    main, log = unit(MAIN), unit(LOG)
    (log_argv,) = log.commands("ExecStart")
    log_file = host.log_path(log_argv)
    mark = f"svc-{uuid.uuid4().hex[:8]}"
    serve = log_reader = interactive = None
    try:
        serve = host.start_unit(main)
        assert host.pin_dir.is_dir(), "the units read the pinned instance"
        programs = our_program_ids(host.pin_dir)
        assert programs
        instance_pins = pin_tree(host.pin_dir)

        def attached() -> bool:
            try:
                text = host.metrics()
            except OSError:
                return False
            return all(f'procmon_attached{{program="{p}"}} 1.0' in text for p in PROGRAMS)

        wait_for(attached, "metrics of the attached instance", procs=[serve])
        assert effective_capabilities(serve.pid) == set(main.capabilities())
        assert pin_tree(host.pin_dir) == instance_pins, "serve pins nothing"

        log_reader = host.start_unit(log)
        n = iter(range(10**6))
        wait_for(
            lambda: markers_in(log_file, f"{mark}-probe"),
            "records in the log",
            poke=lambda: exec_marked(f"{mark}-probe-{next(n)}"),
            procs=[serve, log_reader],
        )
        assert log_file.stat().st_mode & 0o777 == 0o640
        assert effective_capabilities(log_reader.pid) == set(log.capabilities())
        with_log = pin_tree(host.pin_dir)

        # The person at the terminal: `sudo procmon-ctl events --json`, all caps.
        seen = tmp_path / "interactive.jsonl"
        with open(seen, "w") as out:
            interactive = cli.popen("events", "--json", stdout=out, stderr=subprocess.PIPE)
        wait_for(
            lambda: markers_in(seen, f"{mark}-probe"),
            "records for the interactive reader",
            poke=lambda: exec_marked(f"{mark}-probe-{next(n)}"),
            procs=[serve, log_reader, interactive],
        )

        # All three at once.
        before = metric(host.metrics(), "procmon_execs_total")
        batch = [f"{mark}-both-{i}" for i in range(20)]
        for marker in batch:
            exec_marked(marker)
        wait_for(
            lambda: set(batch) <= set(markers_in(log_file, f"{mark}-both")),
            "the batch in the log",
            procs=[serve, log_reader, interactive],
        )
        wait_for(
            lambda: set(batch) <= set(markers_in(seen, f"{mark}-both")),
            "the batch for the interactive reader",
            procs=[serve, log_reader, interactive],
        )
        assert metric(host.metrics(), "procmon_execs_total") - before >= len(batch)
        assert serve.poll() is None and log_reader.poll() is None and interactive.poll() is None
        reading = {(r["name"], r["pid"]) for r in cli.json("readers", "--json")}
        # serve is a reader too (its own counts), beside the log and the interactive one.
        assert reading == {
            (reader_name(log_argv), log_reader.pid),
            (None, interactive.pid),
            (None, serve.pid),
        }
        served = host.metrics()
        assert metric(served, "procmon_serve_records_total") >= len(batch)
        assert metric(served, "procmon_serve_records_lost_total") == 0

        # Ctrl-C: an unnamed reader leaves nothing behind.
        interactive.send_signal(signal.SIGINT)
        _, err = interactive.communicate(timeout=30)
        assert interactive.returncode == 0, err
        assert pin_tree(host.pin_dir) == with_log, "the interactive reader left pins"

        # `systemctl restart procmon-ctl-log`: what happens meanwhile is in the log, once.
        stop(log, log_reader)
        while_down = [f"{mark}-log-down-{i}" for i in range(20)]
        for marker in while_down:
            exec_marked(marker)
        log_reader = host.start_unit(log)
        wait_for(
            lambda: set(while_down) <= set(markers_in(log_file, f"{mark}-log-down")),
            "what happened while the log unit was down",
            procs=[serve, log_reader],
        )

        # `systemctl restart procmon-ctl`: the log unit stops first, starts after.
        stop(log, log_reader)
        stop(main, serve)
        assert pin_tree(host.pin_dir) == with_log, "a stop leaves the instance, nothing more"
        both_down = [f"{mark}-all-down-{i}" for i in range(20)]
        for marker in both_down:
            exec_marked(marker)
        pre = host.run_pre(main)
        assert [step.returncode for step in pre] == [0, 0], [step.stderr for step in pre]
        assert "already loaded" in pre[0].stdout, "load --if-needed kept the instance"
        assert our_program_ids(host.pin_dir) == programs
        serve = host.start(main)
        wait_for(attached, "metrics after the restart", procs=[serve])
        log_reader = host.start_unit(log)
        wait_for(
            lambda: set(both_down) <= set(markers_in(log_file, f"{mark}-all-down")),
            "what happened while both units were down",
            procs=[serve, log_reader],
        )

        # `systemctl stop procmon-ctl`: the log unit first (After=), then serve.
        stop(log, log_reader)
        stop(main, serve)
    finally:
        kill_left(interactive, log_reader, serve)
    logged = markers_in(log_file, mark)
    for marker in batch + while_down + both_down:
        assert logged.count(marker) == 1, f"{marker} logged {logged.count(marker)} times"
    # Left on purpose: the instance, attached, and the log's place; nothing else.
    assert pin_tree(host.pin_dir) == with_log
    assert our_program_ids(host.pin_dir) == programs
    status = cli.json("status", "--json")
    assert all(p["attached"] for p in status["programs"]), status
    places = cli.json("readers", "--json")
    assert [(r["name"], r["pid"]) for r in places] == [(reader_name(log_argv), None)], places


def test_the_main_unit_adopts_an_instance_loaded_by_hand(host, cli):
    """`load --if-needed` leaves what an admin loaded (with options of their own) as
    it is: not refused (a unit failing in a loop), not replaced (its readers cut off)."""
    cli("load", "--ring-size", "65536")
    programs = our_program_ids(host.pin_dir)
    pre = host.run_pre(unit(MAIN))
    assert [step.returncode for step in pre] == [0, 0], [step.stderr for step in pre]
    assert our_program_ids(host.pin_dir) == programs
    # ... but an incomplete one (an interrupted load) is still refused, with its fix.
    PinnedInstance.at(host.pin_dir).layout.prog("exit").unlink()
    (first, *_) = host.run_pre(unit(MAIN))
    assert first.returncode == 3 and "incomplete" in first.stderr, first.stderr


@pytest.mark.parametrize("missing", ["CAP_BPF", "CAP_PERFMON"])
def test_each_capability_of_the_main_unit_is_needed(host, missing):
    main = unit(MAIN)
    caps = [c for c in main.capabilities() if c != missing]
    assert len(caps) == len(main.capabilities()) - 1
    steps = host.run_pre(main, caps)
    errors = [s.stderr for s in steps]
    if all(s.returncode == 0 for s in steps):
        serve = host.start(main, caps)
        try:
            _, err = serve.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            kill_left(serve)
            pytest.fail(f"{main.name} worked without {missing}")
        assert serve.returncode != 0, err
        errors.append(err)
    assert all("Traceback" not in e for e in errors), errors


@pytest.mark.parametrize("missing", unit(LOG).capabilities())
def test_each_capability_of_the_log_unit_is_needed(host, cli, missing):
    log = unit(LOG)
    caps = [c for c in log.capabilities() if c != missing]
    cli("load")
    cli("attach")
    reader = host.start(log, caps)
    (argv,) = log.commands("ExecStart")
    log_file = host.log_path(argv)
    n = iter(range(10**6))
    try:
        # It must end on its own, having written nothing.
        wait_for(
            lambda: reader.poll() is not None or markers_in(log_file, "cap-probe"),
            "an end",
            poke=lambda: exec_marked(f"cap-probe-{next(n)}"),
        )
    finally:
        kill_left(reader)
    _, err = reader.communicate()
    assert not markers_in(log_file, "cap-probe"), f"{log.name} worked without {missing}"
    assert reader.returncode not in (0, -signal.SIGKILL), err
    assert "Traceback" not in err, err


def test_the_log_units_place_is_pinned_and_goes_with_it(host, cli):
    """A named reader's ring is pinned (so that the log unit, CAP_BPF alone, reopens
    it: by id needs CAP_SYS_ADMIN), recorded as procmon-ctl's, refused if replaced,
    and removed with the place or by unload, which finds nothing foreign."""
    cli("load")
    cli("attach")
    loaded = pin_tree(host.pin_dir)
    cli("events", "--name", "svc-place", "--duration", "1")
    instance = PinnedInstance.at(host.pin_dir)
    (place,) = ReaderSlots(instance).states()
    ring = instance.layout.reader_ring(place.slot)
    assert pin_tree(host.pin_dir) - loaded == {"readers", f"readers/{place.slot}"}
    instance.identity.check_pins()  # recorded: ours
    # Replaced by another ring: refused, not read.
    ring.unlink()
    subprocess.run(
        [
            "bpftool",
            "map",
            "create",
            str(ring),
            "type",
            "ringbuf",
            "key",
            "0",
            "value",
            "0",
            "entries",
            "4096",
            "name",
            "planted",
        ],
        check=True,
    )
    r = cli("events", "--name", "svc-place", "--count", "1", check=False)
    assert r.returncode == 3 and str(ring) in r.stderr, r.stderr
    ring.unlink()
    # Removed with its place, leaving the tree as load made it ...
    cli("readers", "rm", "svc-place")
    assert pin_tree(host.pin_dir) == loaded
    # ... or by unload, with everything else.
    cli("events", "--name", "svc-place", "--count", "1", "--duration", "1")
    assert ring.exists()
    cli("unload")
    assert not host.pin_dir.exists()
