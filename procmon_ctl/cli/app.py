"""The `procmon-ctl` group: global options, commands made only when used, and
every error turned into one line on stderr with the error's exit code (a
traceback only with PROCMON_DEBUG=1)."""

from __future__ import annotations

import errno
import functools
import gc
import importlib
import inspect
import os
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.main import get_command

from .. import __version__
from ..errors import EXIT_FAILED, EXIT_PERMISSION, EXIT_USAGE, PermissionDenied, ProcmonError
from ..kernel import signals
from ..kernel.signals import Terminated
from ._common import (
    NO_INSTANCE,
    PIN_DIR_HELP,
    REGISTRY,
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
    "schema": "schema",
    "doctor": "doctor",
    "serve": "serve",
}


def typer_command(name: str):
    """The click command Typer makes of one command function, as it would for
    @app.command(): made from a Typer app with only that command."""
    importlib.import_module(f"{__package__}.{COMMANDS[name]}")
    fn, settings = REGISTRY[name]
    fn = _taking_pin_dir(fn, NoPinDirOpt if name in NO_INSTANCE else PinDirOpt)
    single = typer.Typer(
        add_completion=False,
        rich_markup_mode=app.rich_markup_mode,
        pretty_exceptions_short=app.pretty_exceptions_short,
    )
    single.command(name, **settings)(fn)
    return get_command(single)


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

    # After the context (a parameter without a default, which Typer fills).
    params = list(signature.parameters.values())
    at = sum(1 for p in params if p.annotation is typer.Context)
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


class _Group(TyperGroup):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.commands = _LazyCommands(list(COMMANDS))

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # the names, without making every command


app = typer.Typer(
    name="procmon-ctl",
    help="Watch process creation, exec and exit with eBPF (sched_process_* tracepoints).",
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
        typer.Option("--pin-dir", envvar="PROCMON_PIN_DIR", show_envvar=True, help=PIN_DIR_HELP),
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


def run(argv: list[str] | None = None) -> None:
    # Installed already by main() when run as the program (before the slow imports);
    # a caller in its own process (the tests) gets its handlers back afterwards.
    installed_here = signals.install()
    try:
        message, code = _stood_down(argv)
    finally:
        # From here on a stop is only recorded: the exit path is not interrupted.
        if installed_here:
            signals.uninstall()
        else:
            signals.stand_down()
    if message is not None:
        print(f"procmon-ctl: error: {one_line(message)}", file=sys.stderr)
    exit_with(code)


def _stood_down(argv: list[str] | None) -> tuple[str | None, int]:
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
        return None, 0


def _outcome(argv: list[str] | None) -> tuple[str | None, int]:
    """Run the command: (the one-line error or None, the exit code)."""
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
        return invocation.hints().error(err), err.exit_code
    except typer.Exit as e:
        return None, e.exit_code
    except typer.TyperException as err:  # usage errors (typer 0.28+ has its own click)
        if debug:
            raise
        return err.format_message(), EXIT_USAGE if err.exit_code == 2 else err.exit_code
    except (Terminated, typer.Abort):
        # Ctrl-C, SIGTERM and SIGHUP are how a monitor is stopped: cleanup already ran.
        return None, 0
    except OutputClosed:
        # `events | head`: the reader went away; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return None, 0
    except OSError as err:
        # A safety net for a file or call that failed where no module expected it:
        # still one line and a documented code, never a traceback.
        if debug:
            raise
        if isinstance(err, PermissionError) and os.geteuid() != 0:
            return invocation.hints().error(PermissionDenied(err.filename or "")), EXIT_PERMISSION
        where = f": {err.filename}" if err.filename else ""
        if err.errno == errno.ENAMETOOLONG:
            # Only a name the user gave can be too long: bad input, not a refusal.
            return f"{err.strerror}{where}: use a shorter path", EXIT_USAGE
        return f"{err.strerror or err}{where}", EXIT_FAILED
    except Exception as err:
        if debug or not (signals.caused_by_stop(err) or signals.stopped() is not None):
            raise
        # A stop that landed in code which wrapped it in an error of its own, or
        # replaced it: CPython's `from m import name` turns an exception raised while
        # it builds its ImportError into "TypeError: expected a message argument",
        # with no trace of the stop (seen once in 200 stops, inside `import ssl`).
        return None, 0
    return None, code if isinstance(code, int) else 0


def one_line(message: str) -> str:
    """The message with what would break its line (a newline in a path the user
    gave, other control characters) written as escapes: an error is one line.  A
    byte of the command line that is not UTF-8 (a lone surrogate, as Python decodes
    it) is written \\xNN, as names and arguments are everywhere."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else _escaped(c) for c in message)


def _escaped(c: str) -> str:
    if "\udc80" <= c <= "\udcff":
        return f"\\x{ord(c) - 0xDC00:02x}"
    return repr(c)[1:-1]


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
