"""`schema`."""

from __future__ import annotations

from ._common import command


@command(quick=True)
def schema() -> None:
    """Print the JSON Schema of one `events --json` line."""
    import json

    from ..views.schema import EventLine

    print(json.dumps(EventLine.model_json_schema(), indent=2))
