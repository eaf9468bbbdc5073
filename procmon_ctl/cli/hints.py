"""Commands named in hints and errors, spelled for the instance the user is on.

After `procmon-ctl --pin-dir /sys/fs/bpf/x load`, "next: procmon-ctl attach" would act
on the default instance: every hint and error that tells the user to run a command
takes the text from `command()` here, which adds `--pin-dir` when the instance is not
the default and names PROCMON_PIN_DIR when that is where it came from.

From the variable, the hint is `PROCMON_PIN_DIR=DIR procmon-ctl attach`: pasted in the
same shell it acts on the same instance, and so it does after `sudo` (which drops the
caller's environment) or in another shell, where a bare `procmon-ctl attach` would not.
"""

from __future__ import annotations

import shlex
from typing import Literal

Source = Literal["default", "option", "env"]

# The commands that act on a pinned instance; the others (run, doctor, schema and
# serve --attach) make their own or none, and a --pin-dir would be refused or idle.
INSTANCE_COMMANDS = frozenset(
    {"load", "attach", "detach", "unload", "stats", "status", "events", "serve"}
)

_pin_dir: str | None = None
_source: Source = "default"


def name_instance(pin_dir: str | None, source: Source) -> None:
    """Called once by the CLI with the pin dir it resolved and where it came from."""
    global _pin_dir, _source
    _pin_dir, _source = pin_dir, source


def command(args: str) -> str:
    """`procmon-ctl ARGS` in backticks, for this instance: e.g. command("attach") is
    "`procmon-ctl attach`" on the default instance."""
    return f"`{command_line(args)}`"


def command_line(args: str) -> str:
    """command() without the backticks, for a line that is itself a command
    ("next: procmon-ctl attach")."""
    words = args.split()
    pinned = bool(words) and words[0] in INSTANCE_COMMANDS and "--attach" not in words[1:]
    where = _instance_dir() if pinned else None
    if where is None:
        return f"procmon-ctl {args}"
    if _source == "env":
        return f"PROCMON_PIN_DIR={shlex.quote(where)} procmon-ctl {args}"
    return f"procmon-ctl --pin-dir {shlex.quote(where)} {args}"


def _instance_dir() -> str | None:
    """The pin dir to spell out, or None for the default (the CLI names the default
    instance with source "default", however it was given)."""
    if not _pin_dir or _source == "default":
        return None
    return _pin_dir
