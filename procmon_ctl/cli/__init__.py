"""The command line, `procmon-ctl`: each command parses its options, calls one
function of the workflow modules, and renders what it returns.

    app.py      the group: global options, lazy commands, errors to one line
    _common.py  what the commands share (the pin dir, registration, options)
    <name>.py   the commands themselves
"""


def main(argv: list[str] | None = None) -> None:
    import gc
    import sys

    from ..kernel import signals

    # Before the slow imports: a stop signal from here on is held, not lost, and
    # not a traceback out of an import; run() raises it once it can be handled.
    signals.install()
    if signals.stopped() is not None:
        # Stopped while Python started (the signal waited, blocked, until install()):
        # done, without the imports of a command that will not run.
        signals.stand_down()
        sys.exit(0)

    # Starting up (importing Typer, pydantic and sh, making the models and the
    # command) creates some 57,000 objects the cyclic collector tracks, nearly all
    # kept until exit: it would run about ninety collections over them for nothing,
    # ~15 ms of `procmon-ctl stats`.  It stays off until a command that runs for long
    # starts (_common.command); a quick one exits without it (app.exit_with).
    gc.disable()
    from .app import run

    run(argv)
