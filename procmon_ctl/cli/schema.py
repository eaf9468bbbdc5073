"""`schema`."""

from __future__ import annotations

from ._common import command


@command(quick=True)
def schema() -> None:
    """Print the JSON Schema of one `events --json` line."""
    import json

    from ..views.schema import EventLine
    from ..views.words import worded_schema
    from .hints import option

    print(json.dumps(worded_schema(EventLine.model_json_schema(), option), indent=2))
