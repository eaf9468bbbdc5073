"""What the commands share: the global --pin-dir, how a command is registered,
and the options that several commands take."""

from __future__ import annotations

import functools
import gc
import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from ..instance.pinned import PinnedInstance
from ..instance.pins import DEFAULT_PIN_DIR

if TYPE_CHECKING:
    from .hints import Hints

# Every registered command: name -> (function, Typer settings).  A command module
# registers its commands when app.py imports it, which happens only when the
# command is run, listed by --help or completed.
REGISTRY: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


class OutputClosed(Exception):
    """stdout was closed under us (SIGPIPE); Typer would exit 1 on a BrokenPipeError."""


class Invocation:
    """One run of procmon-ctl: the instance it acts on, as --pin-dir or
    PROCMON_PIN_DIR named it.  Made afresh for each run (app.run) and held by the
    root context as its obj, where every command reaches it."""

    def __init__(self) -> None:
        self.pin_dir: str | None = None
        self.pin_dir_given = False  # on the command line, not from PROCMON_PIN_DIR

    def pinned(self) -> PinnedInstance:
        return PinnedInstance.resolve(self.pin_dir)

    def hints(self) -> Hints:
        """Words for this instance: the default one is spelled bare, however given."""
        from .hints import Hints

        if not self.pin_dir or _same_dir(self.pin_dir, str(DEFAULT_PIN_DIR)):
            return Hints()
        return Hints(self.pin_dir, "option" if self.pin_dir_given else "env")


def invocation(ctx: typer.Context) -> Invocation:
    return ctx.find_root().obj


def pinned(ctx: typer.Context) -> PinnedInstance:
    """The pinned instance the command acts on (--pin-dir, checked)."""
    return invocation(ctx).pinned()


def hints(ctx: typer.Context) -> Hints:
    return invocation(ctx).hints()


# Commands with no pinned instance: an explicit --pin-dir is refused (it would do
# nothing) and PROCMON_PIN_DIR, exported for the others, is ignored.
NO_INSTANCE = {
    "run": "it loads an instance of its own, pinned nowhere",
    "doctor": "it checks the host, trying the programs in a pin dir of its own",
    "schema": "it prints the schema of `events --json` lines, from no instance",
    "help": "it prints help, from no instance",
    "lineage": "it reads /proc and a log (--log), not an instance",
}
PIN_DIR_HELP = "bpffs directory that holds this instance's pins [default: /sys/fs/bpf/procmon]"


def use_pin_dir(ctx: typer.Context, command: str, value: str | None, given: bool) -> None:
    """The instance `command` acts on: --pin-dir before or after the command (given)
    or PROCMON_PIN_DIR (not given), checked here once for both places."""
    from ..errors import UsageError

    state = invocation(ctx)
    if command in NO_INSTANCE:
        if given:
            raise UsageError(
                f"--pin-dir does not apply to {command}: {NO_INSTANCE[command]}; "
                "leave --pin-dir out"
            )
        value = None
    if given and state.pin_dir_given and not _same_dir(value, state.pin_dir):
        raise UsageError(
            f"--pin-dir given twice with different directories ({state.pin_dir!r} before "
            f"{command}, {value!r} after it): give it once"
        )
    if given or not state.pin_dir_given:
        state.pin_dir, state.pin_dir_given = value, given


def _same_dir(a: str | None, b: str | None) -> bool:
    return a == b or bool(a and b and os.path.normpath(a) == os.path.normpath(b))


def _pin_dir_after_command(ctx: typer.Context, value: str | None) -> str | None:
    if ctx.get_parameter_source("pin_dir").name == "COMMANDLINE":
        use_pin_dir(ctx, ctx.info_name, value, given=True)
    return value


# The global option again after the command (`procmon-ctl load --pin-dir X`):
# app.typer_command adds it to every command, whose function never sees it (the
# callback takes it).
PinDirOpt = Annotated[
    str | None,
    typer.Option(
        "--pin-dir",
        envvar="PROCMON_PIN_DIR",
        show_envvar=True,
        callback=_pin_dir_after_command,
        metavar="DIR",
        help=PIN_DIR_HELP,
    ),
]
# The same for the commands without an instance: hidden, to refuse it with why.
NoPinDirOpt = Annotated[
    str | None,
    typer.Option("--pin-dir", hidden=True, callback=_pin_dir_after_command),
]


def command(*, quick: bool = False, name: str | None = None, **settings: Any):
    """Register a command (as app.command() would), named after its function
    unless `name` is given.

    quick: the command reads, prints and exits, so the cyclic collector stays off
    (see cli.main); any other turns it back on as it starts."""

    def register(fn):
        @functools.wraps(fn)
        def guarded(*a, **kw):
            if not quick:
                gc.enable()
            try:
                return fn(*a, **kw)
            except BrokenPipeError:
                raise OutputClosed() from None

        REGISTRY[name or fn.__name__.lower().replace("_", "-")] = (guarded, settings)
        return guarded

    return register


def print_json(model) -> None:
    from ..process.decode import json_safe  # pydantic writes bidi controls and U+2028 raw

    print(json_safe(model.model_dump_json()))


EVENTS_HELP = (
    "Which programs: a comma-separated list of fork, exec, exit, cgroup (cgroup keeps "
    "the filter of --cgroup and --container readers on their cgroup when it is made anew)."
)

ObjectOpt = Annotated[
    str | None,
    typer.Option(
        "--object", metavar="FILE", help="BPF object to load [default: the one `make` builds]"
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="One JSON object per kernel event (schema: `procmon-ctl schema`)."),
]
RawOpt = Annotated[bool, typer.Option("--raw", help="Every kernel event as it arrives.")]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Add TIME, USER (the name; the uid where no user has it) and EVENT (exec, fork, "
        "thread, exit N or the signal); an exit row follows each process, with how long it "
        "ran. COMMAND shows the file exec'd in (parentheses) when argv[0] does not name it.",
    ),
]
ThreadsOpt = Annotated[
    bool,
    typer.Option("--threads", help="Stream new threads too (the kernel skips them otherwise)."),
]
CountOpt = Annotated[
    int | None,
    typer.Option(
        "--count", "-n", metavar="N", help="Stop after this many rows (or lines with --json/--raw)."
    ),
]
DurationOpt = Annotated[
    float | None,
    typer.Option("--duration", metavar="SECONDS", help="Stop after this many seconds."),
]
FromNowOpt = Annotated[
    bool,
    typer.Option(
        "--from-now",
        help="With --name: skip what came while that reader was down; show only new "
        "events. (A reader without a name always starts now.)",
    ),
]
CommOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--comm",
        metavar="NAME",
        help="Only processes with this name (as the kernel keeps it: its first 15 bytes, "
        "no directory); again for more names.",
    ),
]
TimeOpt = Annotated[
    bool | None,
    typer.Option(
        "--time/--no-time",
        help="A TIME column first: the local time of day of each row "
        "[default: on with --wide, off otherwise].",
        show_default=False,
    ),
]
PidOpt = Annotated[
    list[int] | None,
    typer.Option("--pid", metavar="PID", help="Only this process id; again for more."),
]
PpidOpt = Annotated[
    list[int] | None,
    typer.Option(
        "--ppid", metavar="PID", help="Only children of this process; again for more parents."
    ),
]
UidOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--uid",
        metavar="USER",
        help="Only processes of this user (a name or a user id); again for more.",
    ),
]
TreeOfOpt = Annotated[
    list[int] | None,
    typer.Option(
        "--tree-of",
        metavar="PID",
        help="Only this process and its descendants, following new children; again for more trees.",
    ),
]


class ExamplesLast:
    """The epilog (the examples) as a section of its own, its heading flush left as
    "Options:" is; Click would indent it as a paragraph of text."""

    def format_epilog(self, ctx, formatter) -> None:
        if self.epilog:
            formatter.write_paragraph()
            formatter.write_text(inspect.cleandoc(self.epilog))


class HelpedCommand(ExamplesLast, TyperCommand):
    """Every command's class (a command of its own subclasses it): its help ends with
    its examples."""
