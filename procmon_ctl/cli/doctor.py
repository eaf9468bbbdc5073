"""`doctor`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._common import command, hints, print_json


@command()
def doctor(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    fix: Annotated[
        bool, typer.Option("--fix", help="Mount bpffs and tracefs where they are missing (root).")
    ] = False,
    object_path: Annotated[
        str | None,
        typer.Option(
            "--object", metavar="FILE", help="BPF object to check [default: the one `make` builds]"
        ),
    ] = None,
) -> None:
    """Check what procmon-ctl needs of this machine, and how to fix it.

    The kernel, mounts, tools and privileges procmon-ctl needs: PASS/WARN/FAIL with
    a fix for each problem; exits 4 when anything FAILs."""
    from ..commands.doctor import require_ok, run_checks
    from ..views.doctor import render_table
    from ..views.render import stream_width

    report = run_checks(fix=fix, object_path=object_path, say=hints(ctx).words)
    if json_out:
        print_json(report)
    else:
        print(render_table(report, stream_width(sys.stdout)), flush=True)
    require_ok(report)
