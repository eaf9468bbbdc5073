"""The one place that spells options and commands: errors, warnings and hints, worded
for the instance the user is on.

Below the CLI a message names a setting by its domain name and a remedy as a command
(errors.Setting, errors.Command); here they become `--ring-size` and `procmon-ctl
unload`.  After `procmon-ctl --pin-dir /sys/fs/bpf/x load`, "next: procmon-ctl attach"
would act on the default instance: every command a message tells the user to run
gets `--pin-dir` when the instance is not the default, and names PROCMON_PIN_DIR
when that is where it came from.

From the variable, the hint is `PROCMON_PIN_DIR=DIR procmon-ctl attach`: pasted in the
same shell it acts on the same instance, and so it does after `sudo` (which drops the
caller's environment) or in another shell, where a bare `procmon-ctl attach` would not.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import Command, Given, Setting

if TYPE_CHECKING:
    from ..errors import ProcmonError, Words

Source = Literal["default", "option", "env"]

# The commands that act on a pinned instance; the others (run, doctor, schema and
# serve --attach) make their own or none, and a --pin-dir would be refused or idle.
INSTANCE_COMMANDS = frozenset(
    {"load", "attach", "detach", "unload", "stats", "status", "readers", "events", "serve"}
)


def option(setting: str) -> str:
    """The option that gives a setting: option("ring_size") is "--ring-size"."""
    return "--" + setting.replace("_", "-")


@dataclass(frozen=True)
class Hints:
    """Words for the instance in use: its pin dir as given, and where it came from
    (source "default" for the default instance, however it was given)."""

    pin_dir: str | None = None
    source: Source = "default"

    def error(self, err: ProcmonError) -> str:
        return self.words(err.words)

    def words(self, words: Words) -> str:
        """A message's parts as text: settings as options, commands as command lines
        in backticks, values as the user gave them."""
        return "".join(self._part(part) for part in words)

    def _part(self, part) -> str:
        if isinstance(part, str):
            return part
        if isinstance(part, Setting):
            return option(part.name)
        if isinstance(part, Command):
            args = " ".join((part.name, *map(option, part.settings)))
            return self.command(args) if part.backticks else self.command_line(args)
        if isinstance(part, Given):
            if part.as_is_if_printable and part.text.isprintable():
                return part.text
            from ..views.render import given  # here: quick commands do not load render

            return given(part.text)
        raise TypeError(f"not a part of a message: {part!r}")

    def command(self, args: str) -> str:
        """`procmon-ctl ARGS` in backticks, for this instance: e.g. command("attach") is
        "`procmon-ctl attach`" on the default instance."""
        return f"`{self.command_line(args)}`"

    def command_line(self, args: str) -> str:
        """command() without the backticks, for a line that is itself a command
        ("next: procmon-ctl attach")."""
        words = args.split()
        pinned = bool(words) and words[0] in INSTANCE_COMMANDS and "--attach" not in words[1:]
        where = self._instance_dir() if pinned else None
        if where is None:
            return f"procmon-ctl {args}"
        if self.source == "env":
            return f"PROCMON_PIN_DIR={shlex.quote(where)} procmon-ctl {args}"
        return f"procmon-ctl --pin-dir {shlex.quote(where)} {args}"

    def _instance_dir(self) -> str | None:
        """The pin dir to spell out, or None for the default."""
        if not self.pin_dir or self.source == "default":
            return None
        return self.pin_dir
