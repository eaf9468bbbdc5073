"""Render a command in a real terminal of a given width (tmux), for the tests that
check tables fit it.  The pane's scrollback is captured with wrapped lines joined
(`capture-pane -J`), so a line the terminal had to wrap comes back longer than the
width instead of as two rows.  A test that talks to the command while it runs
(types into its terminal once the screen shows something) uses tmux_pane."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


class Pane:
    """A command running in a detached tmux pane."""

    def __init__(self, tmux: list[str]):
        self.tmux = tmux

    def screen(self, joined: bool = True) -> list[str]:
        """The pane's lines, scrollback included, trailing blank lines dropped; with
        joined=False its rows as the terminal shows them, trailing spaces dropped."""
        return _capture(self.tmux, joined)

    def wait_for(self, shown: Callable[[list[str]], bool], timeout: float = 60) -> list[str]:
        """The screen's rows (not joined) once `shown` says so."""
        deadline = time.monotonic() + timeout
        while not shown(lines := self.screen(joined=False)):
            assert time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.05)
        return lines

    def type(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "t", *keys], check=True)

    def ended(self, timeout: float = 120) -> int:
        """Waits until the command has ended (woken by the pane: no polling, whose
        forks would show in the tables under test); its exit code."""
        subprocess.run([*self.tmux, "wait-for", "done"], check=True, timeout=timeout)
        codes = [line for line in self.screen() if line.startswith("exit:")]
        return int(codes[-1][5:])


@contextlib.contextmanager
def tmux_pane(
    argv: list[str], env: dict[str, str], columns: int = 80, cwd: Path | None = None
) -> Iterator[Pane]:
    """argv started in a detached tmux pane `columns` wide, with a tmux server of its
    own (-L), killed on leaving."""
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
        yield Pane(tmux)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        config.unlink(missing_ok=True)


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
    dropped)."""
    with tmux_pane(argv, env, columns, cwd) as pane:
        code = pane.ended(timeout)
        lines = pane.screen(joined)
        return code, [line for line in lines if not line.startswith("exit:")]


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
