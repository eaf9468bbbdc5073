"""The command line: parse arguments, hand the work to the workflow modules, render.

Errors arrive as ProcmonError and leave as one line on stderr with the error's
exit code; a traceback only with PROCMON_DEBUG=1."""

from __future__ import annotations

import functools
import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator, MutableMapping
from typing import Annotated, Any

# Starting up (importing Typer, pydantic and sh, making the models and the command)
# creates some 57,000 objects the cyclic collector tracks, nearly all kept until
# exit: it would run about ninety collections over them for nothing, ~15 ms of
# `procmon-ctl stats`.  It stays off until a command that runs for long starts (see
# _command); a quick one exits without it (see _exit).
gc.disable()

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402
from typer.main import get_command  # noqa: E402

from . import __version__  # noqa: E402
from .errors import (  # noqa: E402
    EXIT_FAILED,
    EXIT_PERMISSION,
    EXIT_USAGE,
    PermissionDenied,
    ProcmonError,
    UsageError,
)

# Every command, in the order `--help` lists them: name -> (function, Typer settings).
_COMMANDS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


def _typer_command(name: str, fn: Callable[..., Any], settings: dict[str, Any]):
    """The click command Typer makes of one command function, as it would for
    @app.command(): made from a Typer app with only that command."""
    single = typer.Typer(
        add_completion=False,
        rich_markup_mode=app.rich_markup_mode,
        pretty_exceptions_short=app.pretty_exceptions_short,
    )
    single.command(name, **settings)(fn)
    return get_command(single)


class _LazyCommands(MutableMapping):
    """The group's commands, each made by Typer the first time it is looked up.

    Typer would make all of them before parsing (reading every signature and type
    hint); `procmon-ctl stats` needs only one.  `--help` and shell completion look
    up the ones they list, so they see every command as before."""

    def __init__(self, specs: dict[str, tuple[Callable[..., Any], dict[str, Any]]]):
        self._specs: dict[str, Any] = dict(specs)
        self._made: dict[str, Any] = {}

    def __getitem__(self, name: str):
        if name not in self._made:
            fn, settings = self._specs[name]
            self._made[name] = _typer_command(name, fn, settings)
        return self._made[name]

    def __setitem__(self, name: str, command) -> None:
        self._specs.setdefault(name, None)
        self._made[name] = command

    def __delitem__(self, name: str) -> None:
        del self._specs[name]
        self._made.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


class _Group(TyperGroup):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.commands = _LazyCommands(_COMMANDS)

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


class _Terminated(Exception):
    """SIGINT or SIGTERM: how a monitor is stopped.  Cleanup runs as it unwinds."""


class _OutputClosed(Exception):
    """stdout was closed under us (SIGPIPE); Typer would exit 1 on a BrokenPipeError."""


def _command(*, quick: bool = False, **settings: Any):
    """Register a command (as app.command() would, but made only when used).

    quick: the command reads, prints and exits, so the cyclic collector stays off
    (see gc.disable() above); any other turns it back on as it starts."""

    def register(fn):
        @functools.wraps(fn)
        def guarded(*a, **kw):
            if not quick:
                gc.enable()
            try:
                return fn(*a, **kw)
            except BrokenPipeError:
                raise _OutputClosed() from None

        _COMMANDS[fn.__name__.lower().replace("_", "-")] = (guarded, settings)
        return guarded

    return register


class _State:
    pin_dir: str | None = None


state = _State()


def _layout():
    from .pins import PinLayout

    return PinLayout.resolve(state.pin_dir)


def _version(value: bool) -> None:
    if value:
        print(f"procmon-ctl {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    pin_dir: Annotated[
        str | None,
        typer.Option(
            "--pin-dir",
            envvar="PROCMON_PIN_DIR",
            show_envvar=True,
            help="bpffs directory that holds this instance's pins [default: /sys/fs/bpf/procmon]",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    state.pin_dir = pin_dir


def _print_json(model) -> None:
    print(model.model_dump_json())


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{name} must be greater than 0 (got {value})")


EVENTS_HELP = "Which programs: a comma-separated list of fork, exec, exit."


@_command()
def load(
    object_path: Annotated[
        str | None,
        typer.Option("--object", help="BPF object to load [default: the one `make` builds]"),
    ] = None,
    ring_size: Annotated[
        int | None,
        typer.Option(
            "--ring-size",
            help="Ring buffer size in bytes: a power of two, at least one page [default: 4194304]",
        ),
    ] = None,
) -> None:
    """Load the BPF programs and pin them and their maps (bpftool prog loadall)."""
    from .load import find_object
    from .load import load as do_load

    layout = _layout()
    obj = find_object(object_path)
    do_load(layout, obj, ring_size)
    print(f"loaded {obj} at {layout.root}; next: procmon-ctl attach")


@_command()
def attach(
    events: Annotated[str, typer.Option("--events", help=EVENTS_HELP)] = "fork,exec,exit",
) -> None:
    """Attach the loaded programs with pinned links that outlive this command."""
    from .attach import attach as do_attach
    from .attach import parse_events

    names = parse_events(events)
    done = do_attach(_layout(), names)
    print(f"attached {', '.join(done)}")


@_command()
def detach(
    events: Annotated[str, typer.Option("--events", help=EVENTS_HELP)] = "fork,exec,exit",
) -> None:
    """Detach: remove the link pins; the counters stop growing."""
    from .attach import detach as do_detach
    from .attach import parse_events

    done = do_detach(_layout(), parse_events(events))
    print(f"detached {', '.join(done)}")


@_command()
def unload() -> None:
    """Detach if needed and remove every pin of this instance."""
    from .load import unload as do_unload

    layout = _layout()
    removed = do_unload(layout)
    print(f"unloaded {layout.root} ({len(removed)} pins removed)")


@_command(quick=True)
def stats(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Print rates per second until interrupted.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between --watch lines.")
    ] = 1.0,
) -> None:
    """Counters: processes (process_count), threads, execs, exits, dropped."""
    from .stats import read_stats

    layout = _layout()
    if not watch:
        s = read_stats(layout)
        if json_out:
            _print_json(s)
        else:
            for name, value in s.model_dump().items():
                print(f"{name:<14} {value}")
        return
    _positive("--interval", interval)
    gc.enable()  # runs until interrupted: collect as usual
    import time

    prev, t_prev = read_stats(layout).model_dump(), time.monotonic()
    fields = ("processes", "threads", "execs", "exits", "dropped")
    if not json_out:
        print("  ".join(f"{f + '/s':>12}" for f in fields))
    while True:
        time.sleep(interval)
        cur, now = read_stats(layout).model_dump(), time.monotonic()
        rates = {f: (cur[f] - prev[f]) / (now - t_prev) for f in fields}
        if json_out:
            import json

            print(json.dumps({f"{k}_per_s": round(v, 1) for k, v in rates.items()}), flush=True)
        else:
            print("  ".join(f"{rates[f]:>12.1f}" for f in fields), flush=True)
        prev, t_prev = cur, now


@_command(quick=True)
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What is loaded and attached: program, map and link ids and pin paths."""
    from .stats import read_status

    s = read_status(_layout())
    if json_out:
        _print_json(s)
        return
    print(f"pin dir: {s.pin_dir} ({'loaded' if s.loaded else 'not loaded'})")
    for p in s.programs:
        link = f"attached, link {p.link_id} ({p.link_pin})" if p.attached else "not attached"
        print(f"  {p.event:<5} program {p.id} ({p.pin}): {link}")
    for name, map_id in s.maps.items():
        print(f"  map {name:<14} id {map_id}")
    if s.ring_size:
        print(f"  ring buffer: {s.ring_size} bytes")


def _stream_options(
    json_out, raw, wide, threads, count, duration, from_now, comm, pid, ppid, uid, tree
):
    from .stream import Filters, StreamOptions, descendants

    if sum((json_out, raw, wide)) > 1:
        raise UsageError("choose one of --json, --raw and --wide")
    if count is not None and count <= 0:
        raise UsageError(f"--count must be a positive number of events (got {count})")
    _positive("--duration", duration)
    mode = "json" if json_out else "raw" if raw else "wide" if wide else "table"
    filters = Filters(
        comm=comm, pid=pid, ppid=ppid, uid=uid, tree=descendants(tree) if tree is not None else None
    )
    return StreamOptions(
        mode=mode,
        threads=threads,
        count=count,
        duration=duration,
        from_now=from_now,
        filters=filters,
    )


JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="One JSON object per kernel event (schema: `procmon-ctl schema`)."),
]
RawOpt = Annotated[bool, typer.Option("--raw", help="Every kernel event as it arrives.")]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide", help="Add UID, EXIT, DURATION and FILENAME; an exit row follows each process."
    ),
]
ThreadsOpt = Annotated[
    bool,
    typer.Option("--threads", help="Stream new threads too (the kernel skips them otherwise)."),
]
CountOpt = Annotated[
    int | None,
    typer.Option("--count", "-n", help="Stop after this many rows (or lines with --json/--raw)."),
]
DurationOpt = Annotated[
    float | None, typer.Option("--duration", help="Stop after this many seconds.")
]
FromNowOpt = Annotated[
    bool,
    typer.Option("--from-now", help="Skip what waits in the ring buffer; show only new events."),
]
CommOpt = Annotated[str | None, typer.Option("--comm", help="Only processes with this name.")]
PidOpt = Annotated[int | None, typer.Option("--pid", help="Only this process id.")]
PpidOpt = Annotated[int | None, typer.Option("--ppid", help="Only children of this process.")]
UidOpt = Annotated[int | None, typer.Option("--uid", help="Only processes of this user id.")]
TreeOpt = Annotated[
    int | None,
    typer.Option("--tree", help="Only this process and its descendants, following new children."),
]


@_command()
def events(
    json_out: JsonOpt = False,
    raw: RawOpt = False,
    wide: WideOpt = False,
    threads: ThreadsOpt = False,
    count: CountOpt = None,
    duration: DurationOpt = None,
    from_now: FromNowOpt = False,
    comm: CommOpt = None,
    pid: PidOpt = None,
    ppid: PpidOpt = None,
    uid: UidOpt = None,
    tree: TreeOpt = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            help="Append JSON lines to this file instead (implies --json); "
            "SIGHUP reopens it, for logrotate.",
        ),
    ] = None,
) -> None:
    """Read events from the pinned ring buffer: one row per new process by default.

    A later `events` continues where this one stopped."""
    from .stream import follow

    if output is not None:
        if raw or wide or not output:
            raise UsageError(
                "--output FILE writes JSON lines: give a file name, without --raw or --wide"
            )
        json_out = True
    opts = _stream_options(
        json_out, raw, wide, threads, count, duration, from_now, comm, pid, ppid, uid, tree
    )
    layout = _layout()
    _require_loaded(layout, "reading the ring buffer")
    if not layout.attached_events():
        print(
            f"procmon-ctl: warning: nothing attached at {layout.root}: only events already "
            "in the ring will show (run `procmon-ctl attach`)",
            file=sys.stderr,
        )
    if output is None:
        follow(layout, opts, sys.stdout)
        return
    from .logfile import ReopeningFile, reopen_on_sighup

    with ReopeningFile(output) as sink:
        reopen_on_sighup(sink)
        follow(layout, opts, sink)


def _require_loaded(layout, what: str) -> None:
    """Fail before any output (the table header) when the command cannot run."""
    from .errors import StateError
    from .system import require_root

    require_root(what)
    if not layout.map("events").exists():
        raise StateError(f"nothing loaded at {layout.root}: run `procmon-ctl load` first")


@_command(context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="A command to run and follow (after --): its process tree only."),
    ] = None,
    object_path: Annotated[
        str | None,
        typer.Option("--object", help="BPF object to load [default: the one `make` builds]"),
    ] = None,
    ring_size: Annotated[
        int | None, typer.Option("--ring-size", help="Ring buffer size in bytes (a power of two).")
    ] = None,
    json_out: JsonOpt = False,
    raw: RawOpt = False,
    wide: WideOpt = False,
    threads: ThreadsOpt = False,
    count: CountOpt = None,
    duration: DurationOpt = None,
    comm: CommOpt = None,
    pid: PidOpt = None,
    ppid: PpidOpt = None,
    uid: UidOpt = None,
    tree: TreeOpt = None,
) -> None:
    """Load, attach and stream until Ctrl-C, SIGTERM or --duration, then remove it all.

    With `-- CMD ARGS`, follow exactly CMD's process tree (rows on stderr), print a
    summary (--json: one object, the last line on stdout) and exit with CMD's code."""
    from .load import find_object
    from .pins import PinLayout
    from .run import check_not_shared, private_pin_dir, run_command, run_monitor, summary_text

    opts = _stream_options(
        json_out, raw, wide, threads, count, duration, False, comm, pid, ppid, uid, tree
    )
    obj = find_object(object_path)
    layout = PinLayout.resolve(private_pin_dir(state.pin_dir))
    check_not_shared(layout)
    if not command:
        run_monitor(layout, obj, ["fork", "exec", "exit"], ring_size, opts, sys.stdout)
        return
    summary = run_command(
        layout, obj, command, ring_size, opts.filters, None if json_out else sys.stderr
    )
    if json_out:
        _print_json(summary)
    else:
        print(summary_text(summary), file=sys.stderr)
    raise typer.Exit(summary.exit_code)


@_command(quick=True)
def schema() -> None:
    """Print the JSON Schema of one `events --json` line."""
    import json

    from .models import EventLine

    print(json.dumps(EventLine.model_json_schema(), indent=2))


@_command()
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    fix: Annotated[
        bool, typer.Option("--fix", help="Mount bpffs and tracefs where they are missing (root).")
    ] = False,
    object_path: Annotated[
        str | None,
        typer.Option("--object", help="BPF object to check [default: the one `make` builds]"),
    ] = None,
) -> None:
    """Check the kernel, mounts, tools and privileges procmon-ctl needs: PASS/WARN/FAIL
    with a fix for each problem; exits 4 when anything FAILs."""
    from .doctor import render_table, run_checks
    from .errors import MissingError

    report = run_checks(fix=fix, object_path=object_path)
    if json_out:
        _print_json(report)
    else:
        print(render_table(report))
    if not report.ok:
        raise MissingError(
            f"doctor: {len(report.failed)} check(s) failed: {', '.join(report.failed)}"
        )


@_command()
def serve(
    address: Annotated[
        str, typer.Option("--address", help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 9464,
    attach_too: Annotated[
        bool, typer.Option("--attach", help="Load and attach an instance first; remove it on exit.")
    ] = False,
    object_path: Annotated[
        str | None,
        typer.Option("--object", help="BPF object for --attach [default: the one `make` builds]"),
    ] = None,
) -> None:
    """Serve the counters as Prometheus metrics over HTTP, read at scrape time."""
    from .exporter import serve_forever
    from .load import find_object

    if object_path is not None and not attach_too:
        raise UsageError("--object only applies with --attach (serve loads nothing without it)")
    obj = find_object(object_path) if attach_too else None
    serve_forever(_layout(), address, port, obj, lambda text: print(text, flush=True))


def _on_signal(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> None:
    # Our own exception for both, so Typer does not turn Ctrl-C into exit 130.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    debug = os.environ.get("PROCMON_DEBUG") == "1"
    try:
        # Not standalone: click would print usage errors over several lines and
        # return Exit codes instead of raising; we want one line and our codes.
        code = app(args=argv, prog_name="procmon-ctl", standalone_mode=False)
    except ProcmonError as err:
        if debug:
            raise
        _print_log_tail(err)
        _fail(err.message, err.exit_code)
    except typer.Exit as e:
        _exit(e.exit_code)
    except typer.TyperException as err:
        if debug:
            raise
        _fail(err.format_message(), EXIT_USAGE if err.exit_code == 2 else err.exit_code)
    except (_Terminated, typer.Abort):
        # Ctrl-C and SIGTERM are how a monitor is stopped: cleanup already ran.
        _exit(0)
    except _OutputClosed:
        # `events | head`: the reader went away; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        _exit(0)
    except OSError as err:
        # A safety net for a file or call that failed where no module expected it:
        # still one line and a documented code, never a traceback.
        if debug:
            raise
        if isinstance(err, PermissionError) and os.geteuid() != 0:
            _fail(PermissionDenied(err.filename or "").message, EXIT_PERMISSION)
        where = f": {err.filename}" if err.filename else ""
        _fail(f"{err.strerror or err}{where}", EXIT_FAILED)
    _exit(code if isinstance(code, int) else 0)


VERIFIER_TAIL = 20


def _print_log_tail(err: ProcmonError) -> None:
    """When the kernel refused to load a program, its verifier log says why: print
    its last lines before the one-line error."""
    log = getattr(err, "verifier_log", None)
    if log:
        print("\n".join(log[-VERIFIER_TAIL:]), file=sys.stderr)


def _exit(code: int) -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if not gc.isenabled():
        # A quick command (or an error before any command ran) done without the
        # collector: the interpreter would still run full collections over all that
        # startup made as it exits (~60 ms of `procmon-ctl stats`).  Frozen objects
        # are left out of them; the process ends right after and frees it all anyway.
        gc.freeze()
    sys.exit(code)


def _fail(message: str, code: int) -> None:
    print(f"procmon-ctl: error: {message}", file=sys.stderr)
    _exit(code)
