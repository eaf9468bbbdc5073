"""Instances a command makes for itself (`run`, `serve --attach`): load and attach
in a pin dir of its own, and remove every pin on the way out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .attach import attach
from .errors import StateError
from .load import load, remove_pins
from .pins import DEFAULT_PIN_DIR, PIN_DIR_ENV, PinLayout


def private_pin_dir(explicit: str | None) -> str:
    """Unless told otherwise, a directory of our own: never the shared default, so a
    `run` cannot disturb an instance that `load` made."""
    if explicit or os.environ.get(PIN_DIR_ENV):
        return explicit or os.environ[PIN_DIR_ENV]
    return f"{DEFAULT_PIN_DIR}-run-{os.getpid()}"


def require_unused(layout: PinLayout, message: str) -> None:
    """Refuse a pin dir that already holds an instance: ours would replace it."""
    if layout.is_loaded():
        raise StateError(message)


@contextmanager
def temporary_instance(
    layout: PinLayout, obj: Path, events: list[str], ring_size: int | None
) -> Iterator[None]:
    load(layout, obj, ring_size)
    try:
        attach(layout, events)
        yield
    finally:
        with layout.admin_lock():
            remove_pins(layout)
