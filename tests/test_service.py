"""scripts/procmon-ctl.service: `systemd-analyze verify` accepts it, and its
ExecStart really works under its CapabilityBoundingSet and NoNewPrivileges
(run through setpriv, since no systemd runs as PID 1 here)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, bpf_held_by, fork_processes, programs_left

UNIT = ROOT / "scripts" / "procmon-ctl.service"
VENV_BIN = Path(sys.executable).parent / "procmon-ctl"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} not installed: `make test` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def unit_values(key: str, text: str | None = None) -> list[str]:
    text = UNIT.read_text() if text is None else text
    return [m.group(1).strip() for m in re.finditer(rf"^{key}=(.*)$", text, re.M)]


def rewritten_copy(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointing at this checkout's binary: verify checks that
    the command exists, and /usr/local/bin/procmon-ctl is there only after install."""
    text = UNIT.read_text().replace("ExecStart=/usr/local/bin/procmon-ctl", f"ExecStart={VENV_BIN}")
    copy = tmp_path / "procmon-ctl.service"
    copy.write_text(text + extra)
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [need("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


def test_unit_runs_the_installed_binary():
    (exec_start,) = unit_values("ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == "/usr/local/bin/procmon-ctl", "where `make install` links it"
    assert argv[1:3] == ["serve", "--attach"]
    assert unit_values("NoNewPrivileges") == ["yes"]
    assert unit_values("ProtectSystem") == ["strict"]


def test_systemd_analyze_verify(tmp_path):
    assert VENV_BIN.exists()
    r = verify(rewritten_copy(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "procmon-ctl.service" not in r.stderr, r.stderr
    # ... and verify does catch a bad unit (so the pass above means something).
    bad = verify(rewritten_copy(tmp_path, "\n[Service]\nType=not-a-type\nExecStart=\n"))
    assert bad.returncode != 0 or "not-a-type" in bad.stderr


def test_security_exposure_is_ok(tmp_path):
    r = subprocess.run(
        [
            need("systemd-analyze"),
            "security",
            "--offline=true",
            "--no-pager",
            str(rewritten_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for procmon-ctl.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    print(f"systemd-analyze security: exposure {m.group(1)}")
    assert float(m.group(1)) < 5.0


def setpriv_argv(caps: list[str], port: int) -> list[str]:
    """ExecStart as systemd would run it: only `caps` in the bounding set (so root
    gets no others at exec), no new privileges; our binary and a free port."""
    (exec_start,) = unit_values("ExecStart")
    argv = shlex.split(exec_start)
    argv[0] = str(VENV_BIN)
    argv[argv.index("--port") + 1] = str(port)
    bounding = ",".join(["-all", *(f"+{c.lower().removeprefix('cap_')}" for c in caps)])
    return [
        need("setpriv"),
        "--bounding-set",
        bounding,
        "--inh-caps",
        "-all",
        "--no-new-privs",
        "--",
        *argv,
    ]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_exec_start_works_with_the_unit_capabilities(pin_dir):
    caps = unit_values("CapabilityBoundingSet")[0].split()
    assert sorted(caps) == ["CAP_BPF", "CAP_PERFMON"]
    port = free_port()
    proc = subprocess.Popen(
        setpriv_argv(caps, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PROCMON_PIN_DIR": str(pin_dir)},
    )
    prog_ids: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                text = metrics(port)
                # It listens first, then loads and attaches.
                if 'procmon_attached{program="exit"} 1.0' in text:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1]
        assert text, "no metrics in 30 s"
        with open(f"/proc/{proc.pid}/status") as f:
            cap_eff = int(re.search(r"^CapEff:\s*(\w+)", f.read(), re.M).group(1), 16)
        assert cap_eff == (1 << 38) | (1 << 39), f"CapEff {cap_eff:#x}: CAP_PERFMON|CAP_BPF"
        for event in ("fork", "exec", "exit"):
            assert f'procmon_attached{{program="{event}"}} 1.0' in text
        assert not pin_dir.exists(), "serve --attach pins nothing"
        prog_ids = bpf_held_by(proc.pid)["prog"]
        assert len(prog_ids) == 3
        before = float(re.search(r"^procmon_processes_created_total (\S+)", text, re.M)[1])
        fork_processes(5)
        after = float(re.search(r"^procmon_processes_created_total (\S+)", metrics(port), re.M)[1])
        assert after - before >= 5
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert not programs_left(prog_ids), "stop did not unload"


@pytest.mark.parametrize("missing", ["CAP_BPF", "CAP_PERFMON"])
def test_each_capability_is_needed(pin_dir, missing):
    caps = [c for c in unit_values("CapabilityBoundingSet")[0].split() if c != missing]
    r = subprocess.run(
        setpriv_argv(caps, free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PROCMON_PIN_DIR": str(pin_dir)},
    )
    assert r.returncode != 0, f"serve --attach worked without {missing}"
    assert "Traceback" not in r.stderr
    assert not pin_dir.exists()
