"""`run -- CMD` and what happens around CMD (issue 25.3): a closed pipe stops the
rows, never CMD."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI

# A try that fails waits this long for what should have come at once.
PATIENCE = 20


def poll(condition, timeout: float = PATIENCE, every: float = 0.02):
    """condition()'s first true value, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


# --- a closed pipe (25.3) ------------------------------------------------------------

# CMD: forks a `sleep` (a row each) until the test says go, then leaves a mark and
# exits 7; it writes nothing to the pipe itself.
WAITING_CMD = (
    "n=0; while [ ! -e go ]; do sleep 0.05; n=$((n+1)); echo $n > count; done; touch alive; exit 7"
)


def _count(cwd: Path) -> int:
    try:
        return int((cwd / "count").read_text())
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.parametrize("closed", ["stdout and stderr", "stderr"])
def test_a_closed_pipe_stops_the_rows_not_cmd(tmp_path, closed):
    """`run -- CMD 2>&1 | head -c 1`: the pipe closes under run's rows.  As under
    `time` and `timeout`, CMD runs to its end and run exits with its status (on
    main, run SIGKILLed CMD and exited 0).  With stdout still open, run says once
    there that the rows stopped, and the JSON summary is still its last line."""
    json_out = closed == "stderr"
    with contextlib.ExitStack() as stack:
        stdout = subprocess.PIPE
        if json_out:
            stdout = stack.enter_context(open(tmp_path / "stdout", "w"))
        proc = subprocess.Popen(
            [*CLI, "run", *(["--json"] if json_out else []), "--", "sh", "-c", WAITING_CMD],
            cwd=tmp_path,
            stdout=stdout,
            stderr=subprocess.PIPE if json_out else subprocess.STDOUT,
        )
        stack.callback(lambda: proc.poll() is None and proc.kill())
        pipe = proc.stderr if json_out else proc.stdout
        assert pipe.read(1), "run wrote nothing"  # `head -c 1`
        pipe.close()
        # Ten more rows written to the closed pipe (or CMD killed, and run gone).
        start = _count(tmp_path)
        poll(lambda: _count(tmp_path) >= start + 10 or proc.poll() is not None)
        (tmp_path / "go").touch()
        code = proc.wait(timeout=PATIENCE)
    assert (tmp_path / "alive").exists(), f"CMD did not run to its end (run exited {code})"
    assert code == 7
    if json_out:
        lines = (tmp_path / "stdout").read_text().splitlines()
        assert len(lines) == 2, lines
        assert lines[0].startswith("procmon-ctl: warning: no more rows: writing them to stderr")
        assert json.loads(lines[1])["exit_code"] == 7
