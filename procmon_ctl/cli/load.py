"""`load` and `unload`."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import ObjectOpt, command, hints, pinned


@command()
def load(
    ctx: typer.Context,
    object_path: ObjectOpt = None,
    ring_size: Annotated[
        int | None,
        typer.Option(
            "--ring-size",
            metavar="BYTES",
            help="Each reader's ring buffer size in bytes, unless it asks for another "
            "(events --ring-size): a power of two, at least one page [default: 4194304]",
        ),
    ] = None,
    argv_bytes: Annotated[
        int | None,
        typer.Option(
            "--argv-bytes",
            metavar="BYTES",
            help="Each reader keeps at most this many bytes of each exec's command line "
            "(0 to 16384) unless it asks for another (events --argv-bytes); a longer one is "
            "cut and marked argv_truncated [default: 4096].",
        ),
    ] = None,
    if_needed: Annotated[
        bool,
        typer.Option(
            "--if-needed",
            help="If an instance is already loaded here, leave it as it is whatever it was "
            "loaded with (without it, a load that names another --object, --ring-size or "
            "--argv-bytes is refused): for a service's ExecStartPre.",
        ),
    ] = False,
) -> None:
    """Load the BPF programs into the kernel and pin them (first step).

    The programs and their maps are pinned under the pin dir (bpftool prog loadall):
    they stay loaded after this command, watching nothing until `attach`."""
    from ..instance.load import load as load_instance
    from ..instance.startup import find_object
    from ..kernel.system import require_root

    pins = pinned(ctx)
    require_root("loading BPF programs")  # before the object is read: as root
    obj = find_object(object_path)
    loaded = load_instance(
        pins, obj, ring_size, argv_bytes, if_needed=if_needed, object_given=object_path is not None
    )
    next_step = hints(ctx).command_line("attach")
    if not loaded:
        print(f"already loaded at {pins.root}: left as it is; next: {next_step}")
        return
    # The packaged object by name alone: where the project sits is no news.
    shown = obj.name if object_path is None else object_path
    print(f"loaded {shown} at {pins.root}; next: {next_step}")


@command()
def unload(
    ctx: typer.Context,
    force: Annotated[
        bool,
        typer.Option("--force", help="Unload even while a reader (`events`) reads the ring."),
    ] = False,
) -> None:
    """Remove the instance: detach it and remove every pin.

    Named readers' places go with it; refused while a reader reads (--force)."""
    from ..instance.load import unload as unload_instance

    pins = pinned(ctx)
    removed = unload_instance(pins, force=force)
    if removed is None:
        # Exit 0, as `load` of a loaded instance: already in the state asked for.
        print(f"nothing loaded at {pins.root}: nothing to unload")
        return
    print(f"unloaded {pins.root} ({len(removed)} pins removed)")
