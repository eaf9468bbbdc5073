"""Render a command in a real terminal of a given width (tmux), for the tests that
check tables fit it.  The pane's scrollback is captured with wrapped lines joined
(`capture-pane -J`), so a line the terminal had to wrap comes back longer than the
width instead of as two rows."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid


def run_in_tmux(
    argv: list[str], env: dict[str, str], columns: int = 80, timeout: float = 120
) -> tuple[int, list[str]]:
    """Run argv in a detached tmux pane `columns` wide; wait for it to end; return
    (exit code, the pane's lines with wrapped lines joined, trailing blank lines
    dropped).  Each call has a tmux server of its own (-L), killed afterwards."""
    socket = f"procmon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    # The variables go on the command line: a tmux server takes its environment from
    # whoever started it, but panes get only what `update-environment` says.
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.isidentifier())
    command = f"env -i {exports} TERM=screen {shlex.join(argv)}"
    try:
        subprocess.run(
            [
                *tmux,
                "new-session", "-d", "-x", str(columns), "-y", "50",
                "-s", "t", "sh", "-c", f"{command}; echo \"exit:$?\" >&2; sleep 86400",
            ],
            check=True,
        )  # fmt: skip
        subprocess.run([*tmux, "set-option", "-t", "t", "history-limit", "100000"], check=True)
        deadline = time.monotonic() + timeout
        while True:
            lines = _capture(tmux)
            codes = [line for line in lines if line.startswith("exit:")]
            if codes:
                return int(codes[-1][5:]), [line for line in lines if not line.startswith("exit:")]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv} still running in tmux after {timeout} s")
            time.sleep(0.05)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def _capture(tmux: list[str]) -> list[str]:
    out = subprocess.run(
        [*tmux, "capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "t"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines
