"""`schema`."""

from __future__ import annotations

from ._common import command


@command(quick=True)
def schema() -> None:
    """Print the JSON Schema of the lines of `events --json`.

    For a log shipper or a parser: every field, its type and what it means."""
    import json

    from ..views.schema import EventLine
    from ..views.words import worded_schema
    from .hints import option

    print(json.dumps(worded_schema(EventLine.model_json_schema(), option), indent=2))
