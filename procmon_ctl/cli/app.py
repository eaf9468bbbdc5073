"""The `procmon-ctl` group: global options, commands made only when used, their
help, and every error turned into one message on stderr (cli/messages) with the
error's exit code (a traceback only with PROCMON_DEBUG=1)."""

from __future__ import annotations

import errno
import functools
import gc
import importlib
import inspect
import os
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoArgsIsHelpError, NoSuchOption
from typer.core import TyperGroup
from typer.main import get_command

from .. import __version__
from ..errors import EXIT_FAILED, EXIT_PERMISSION, EXIT_USAGE, PermissionDenied, ProcmonError
from ..kernel import signals
from ..kernel.signals import Terminated
from . import examples, messages
from ._common import (
    NO_INSTANCE,
    PIN_DIR_HELP,
    REGISTRY,
    ExamplesLast,
    HelpedCommand,
    Invocation,
    NoPinDirOpt,
    OutputClosed,
    PinDirOpt,
    use_pin_dir,
)

# Every command, in the order `--help` lists them, and the module that defines it.
COMMANDS = {
    "load": "load",
    "attach": "attach",
    "detach": "attach",
    "unload": "load",
    "stats": "stats",
    "status": "stats",
    "readers": "readers",
    "events": "events",
    "run": "run",
    "lineage": "lineage",
    "schema": "schema",
    "doctor": "doctor",
    "serve": "serve",
    "help": "help",
}


def typer_command(name: str):
    """The click command Typer makes of one command function, as it would for
    @app.command(): made from a Typer app with only that command."""
    importlib.import_module(f"{__package__}.{COMMANDS[name]}")
    fn, settings = REGISTRY[name]
    # The command list shows each command's purpose whole (never cut with "...");
    # its help ends with examples, lines kept as written.
    settings = {
        "short_help": purpose(fn.__doc__),
        "epilog": examples.epilog(name),
        "cls": HelpedCommand,
        **settings,
    }
    fn = _taking_pin_dir(fn, NoPinDirOpt if name in NO_INSTANCE else PinDirOpt)
    single = typer.Typer(
        add_completion=False,
        rich_markup_mode=app.rich_markup_mode,
        pretty_exceptions_short=app.pretty_exceptions_short,
    )
    single.command(name, **settings)(fn)
    return get_command(single)


def purpose(doc: str | None) -> str:
    """What a command is for: the first sentence of its docstring."""
    first = inspect.cleandoc(doc or "").split("\n\n")[0]
    return " ".join(first.split()).split(". ")[0].rstrip(".")


def _taking_pin_dir(fn, option):
    """fn with a parameter `--pin-dir` first (after the context) for Typer to make:
    the global option accepted after the command too, in one place for every
    command.  Its callback takes the value (use_pin_dir); fn never sees it."""
    signature = inspect.signature(fn, eval_str=True)
    extra = inspect.Parameter(
        "pin_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=option
    )

    @functools.wraps(fn)
    def command(*args, pin_dir=None, **kwargs):
        return fn(*args, **kwargs)

    # After the context (which Typer fills) and any required argument: a parameter
    # with a default cannot come before one without.
    params = list(signature.parameters.values())
    empty = inspect.Parameter.empty
    at = next((i for i, p in enumerate(params) if p.default is not empty), len(params))
    params.insert(at, extra)
    command.__signature__ = signature.replace(parameters=params)
    command.__annotations__ = {"pin_dir": option, **fn.__annotations__}
    return command


class _LazyCommands(MutableMapping):
    """The group's commands, each made by Typer the first time it is looked up.

    Typer would make all of them before parsing (reading every signature and type
    hint); `procmon-ctl stats` needs only one.  `--help` and shell completion look
    up the ones they list, so they see every command as before."""

    def __init__(self, names: list[str]):
        self._names: dict[str, None] = dict.fromkeys(names)
        self._made: dict[str, Any] = {}

    def __getitem__(self, name: str):
        if name not in self._made:
            if name not in self._names:
                raise KeyError(name)
            self._made[name] = typer_command(name)
        return self._made[name]

    def __setitem__(self, name: str, command) -> None:
        self._names.setdefault(name, None)
        self._made[name] = command

    def __delitem__(self, name: str) -> None:
        del self._names[name]
        self._made.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _Group(ExamplesLast, TyperGroup):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.commands = _LazyCommands(list(COMMANDS))

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # the names, without making every command


app = typer.Typer(
    name="procmon-ctl",
    help="""Watch processes start, exec and exit on this machine, as they happen (eBPF).

    Follow one command and every process it starts (`run -- CMD`), watch the whole
    machine or one container (`load`, `attach`, then `events`), write JSON lines for
    a log shipper (`events --output FILE`), count for Prometheus (`serve`).
    `procmon-ctl help COMMAND` describes a command.""",
    epilog=examples.epilog("procmon-ctl"),
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"procmon-ctl {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    pin_dir: Annotated[
        str | None,
        typer.Option(
            "--pin-dir",
            envvar="PROCMON_PIN_DIR",
            show_envvar=True,
            metavar="DIR",
            help=PIN_DIR_HELP,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    given = ctx.get_parameter_source("pin_dir").name == "COMMANDLINE"
    use_pin_dir(ctx, ctx.invoked_subcommand or "", pin_dir, given)


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its exit code, and what to say on stderr (an error, or the
    help when no command was given)."""

    code: int
    error: str | None = None
    help: str | None = None


def run(argv: list[str] | None = None) -> None:
    # Installed already by main() when run as the program (before the slow imports);
    # a caller in its own process (the tests) gets its handlers back afterwards.
    installed_here = signals.install()
    try:
        outcome = _stood_down(argv)
    finally:
        # From here on a stop is only recorded: the exit path is not interrupted.
        if installed_here:
            signals.uninstall()
        else:
            signals.stand_down()
    if outcome.help is not None:
        print(outcome.help, file=sys.stderr)
    if outcome.error is not None:
        messages.error(outcome.error)
    exit_with(outcome.code)


def _stood_down(argv: list[str] | None) -> Outcome:
    """The command's outcome, returned once no stop can be raised any more.

    A stop re-raised by the timer can land anywhere _outcome's own `except` does not
    reach: as it returns, or in an `except` that handles another error.  It ends the
    program as any stop does.  Escaping, it would print a traceback and leave the
    timer armed, and the interpreter, as it exits, puts SIGALRM's default action
    back: killed by SIGALRM instead of exit 0 (seen once, a reader stopped during a
    storm in a VM)."""
    try:
        outcome = _outcome(argv)
        signals.stand_down()
        return outcome
    except Terminated:
        signals.stand_down()  # while a stop is handled, none is raised: never cut
        return Outcome(0)


def _outcome(argv: list[str] | None) -> Outcome:
    """Run the command: its exit code and what to say about it."""
    debug = os.environ.get("PROCMON_DEBUG") == "1"
    # Each run starts afresh (the tests run several in one process).
    invocation = Invocation()
    try:
        signals.arm()  # a stop that came while starting up ends the program here
        # Not standalone: click would print usage errors over several lines and
        # return Exit codes instead of raising; we want one line and our codes.
        code = app(args=argv, prog_name="procmon-ctl", standalone_mode=False, obj=invocation)
    except ProcmonError as err:
        if debug:
            raise
        _print_log_tail(err)
        return Outcome(err.exit_code, invocation.hints().error(err))
    except typer.Exit as e:
        return Outcome(e.exit_code)
    except NoArgsIsHelpError as err:
        # No command: the help, as Click does (on stderr, exit 2: nothing was done;
        # git and podman also exit non-zero).  `procmon-ctl help` is the help on stdout.
        return Outcome(EXIT_USAGE, help=err.ctx.get_help())
    except NoSuchOption as err:
        if debug:
            raise
        from .suggest import no_such_option

        return Outcome(EXIT_USAGE, no_such_option(err))
    except typer.TyperException as err:  # usage errors (typer 0.28+ has its own click)
        if debug:
            raise
        return Outcome(EXIT_USAGE if err.exit_code == 2 else err.exit_code, err.format_message())
    except (Terminated, typer.Abort):
        # Ctrl-C, SIGTERM and SIGHUP are how a monitor is stopped: cleanup already ran.
        return Outcome(0)
    except OutputClosed:
        # `events | head`: the reader went away; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return Outcome(0)
    except OSError as err:
        # A safety net for a file or call that failed where no module expected it:
        # still one line and a documented code, never a traceback.
        if debug:
            raise
        if isinstance(err, PermissionError) and os.geteuid() != 0:
            return Outcome(
                EXIT_PERMISSION, invocation.hints().error(PermissionDenied(err.filename or ""))
            )
        where = f": {err.filename}" if err.filename else ""
        if err.errno == errno.ENAMETOOLONG:
            # Only a name the user gave can be too long: bad input, not a refusal.
            return Outcome(EXIT_USAGE, f"{err.strerror}{where}: use a shorter path")
        return Outcome(EXIT_FAILED, f"{err.strerror or err}{where}")
    except Exception as err:
        if debug or not (signals.caused_by_stop(err) or signals.stopped() is not None):
            raise
        # A stop that landed in code which wrapped it in an error of its own, or
        # replaced it: CPython's `from m import name` turns an exception raised while
        # it builds its ImportError into "TypeError: expected a message argument",
        # with no trace of the stop (seen once in 200 stops, inside `import ssl`).
        return Outcome(0)
    return Outcome(code if isinstance(code, int) else 0)


VERIFIER_TAIL = 20


def _print_log_tail(err: ProcmonError) -> None:
    """When the kernel refused to load a program, its verifier log says why: print
    its last lines before the one-line error."""
    log = getattr(err, "verifier_log", None)
    if log:
        print("\n".join(log[-VERIFIER_TAIL:]), file=sys.stderr)


def exit_with(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            # A closed pipe, a terminal gone: what the stream holds cannot be written,
            # and the interpreter's own flush as it exits would make that status 120.
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    if not gc.isenabled():
        # A quick command (or an error before any command ran) done without the
        # collector: the interpreter would still run full collections over all that
        # startup made as it exits (~60 ms of `procmon-ctl stats`).  Frozen objects
        # are left out of them; the process ends right after and frees it all anyway.
        gc.freeze()
    sys.exit(code)
