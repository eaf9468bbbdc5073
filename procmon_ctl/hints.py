"""Commands named in hints and errors, spelled for the instance the user is on.

After `procmon-ctl --pin-dir /sys/fs/bpf/x load`, "next: procmon-ctl attach" would act
on the default instance: every hint and error that tells the user to run a command
takes the text from `command()` here, which adds `--pin-dir` when the instance is not
the default and names PROCMON_PIN_DIR when that is where it came from.
(Skeleton by the lead: the helper of the hints work completes it.)
"""

from __future__ import annotations

from typing import Literal

Source = Literal["default", "option", "env"]

_pin_dir: str | None = None
_source: Source = "default"


def name_instance(pin_dir: str | None, source: Source) -> None:
    """Called once by the CLI with the pin dir it resolved and where it came from."""
    global _pin_dir, _source
    _pin_dir, _source = pin_dir, source


def command(args: str) -> str:
    """`procmon-ctl ARGS` in backticks, for this instance: e.g. command("attach") is
    "`procmon-ctl attach`" on the default instance."""
    return f"`procmon-ctl {args}`"
