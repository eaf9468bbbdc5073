"""Render a command in a real terminal of a given width (tmux), for the tests that
check tables fit it.  The pane's scrollback is captured with wrapped lines joined
(`capture-pane -J`), so a line the terminal had to wrap comes back longer than the
width instead of as two rows."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from pathlib import Path


def run_in_tmux(
    argv: list[str],
    env: dict[str, str],
    columns: int = 80,
    timeout: float = 120,
    cwd: Path | None = None,
    joined: bool = True,
) -> tuple[int, list[str]]:
    """Run argv in a detached tmux pane `columns` wide; wait for it to end; return
    (exit code, the pane's lines with wrapped lines joined, trailing blank lines
    dropped; with joined=False, its rows as the screen shows them, trailing spaces
    dropped).  Each call has a tmux server of its own (-L), killed afterwards."""
    socket = f"procmon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # The scrollback must be long enough before the pane exists: a config file.
    config = Path(f"/tmp/{socket}.conf")
    config.write_text("set-option -g history-limit 200000\n")
    tmux = ["tmux", "-L", socket, "-f", str(config)]
    # The variables go on the command line: a tmux server takes its environment from
    # whoever started it, but panes get only what `update-environment` says.
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.isidentifier())
    command = f"env -i {exports} TERM=screen {shlex.join(argv)}"
    try:
        subprocess.run(
            [
                *tmux,
                "new-session", "-d", "-x", str(columns), "-y", "50",
                "-s", "t", "-c", str(cwd or Path.cwd()),
                "sh", "-c",
                f"{command}; echo \"exit:$?\" >&2; "
                f"tmux -L {socket} wait-for -S done; sleep 86400",
            ],
            check=True,
        )  # fmt: skip
        # Woken by the pane when the command has ended (no polling: its forks would
        # show in the tables under test).
        subprocess.run([*tmux, "wait-for", "done"], check=True, timeout=timeout)
        lines = _capture(tmux, joined)
        codes = [line for line in lines if line.startswith("exit:")]
        return int(codes[-1][5:]), [line for line in lines if not line.startswith("exit:")]
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        config.unlink(missing_ok=True)


def _capture(tmux: list[str], joined: bool) -> list[str]:
    join = ["-J"] if joined else []
    out = subprocess.run(
        [*tmux, "capture-pane", "-p", *join, "-S", "-", "-E", "-", "-t", "t"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.split("\n") if joined else [line.rstrip() for line in out.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines
