"""Text below the CLI that names an option does so as <<setting>> (the setting's
domain name, as errors.Setting does); the CLI hands in its spelling of a setting
(cli.hints.option), so options are spelled in one place."""

from __future__ import annotations

import re
from collections.abc import Callable

_OPTION = re.compile(r"<<([a-z_]+)>>")


def with_options(text: str, option: Callable[[str], str]) -> str:
    return _OPTION.sub(lambda m: option(m.group(1)), text)


def worded_schema(schema, option: Callable[[str], str]):
    """A JSON Schema (as model_json_schema() returns it) with every string's
    <<setting>> spelled by `option`."""
    if isinstance(schema, str):
        return with_options(schema, option)
    if isinstance(schema, dict):
        return {k: worded_schema(v, option) for k, v in schema.items()}
    if isinstance(schema, list):
        return [worded_schema(v, option) for v in schema]
    return schema
