"""`procmon-ctl lineage PID`: who started a process, from /proc and the JSON log
(process/history.py says what each source knows)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import Given, MissingError, PermissionDenied, Setting
from ..process.history import SERVICE_LOG, Found, find


@dataclass(frozen=True)
class LineageAnswer:
    found: Found | None
    log: str | None  # the log read ("-": stdin), None: none


def lineage_of(pid: int, log: str | None) -> LineageAnswer:
    """The process `pid` and who started it.  `log`: the JSON log to read (None: the
    log service's when there is one; "": none)."""
    chosen = log
    if chosen is None:
        chosen = SERVICE_LOG if os.path.exists(SERVICE_LOG) else ""
    if not chosen:
        return LineageAnswer(find(pid, None), None)
    with _open_log(chosen) as lines:
        return LineageAnswer(find(pid, lines), chosen)


def _open_log(path: str) -> BinaryIO:
    if path == "-":
        return open(0, "rb", closefd=False)  # standard input, left open
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise MissingError(
            (
                Setting("log"),
                " ",
                Given(path),
                " does not exist: give the JSON log a reader writes (events ",
                Setting("output"),
                " FILE)",
            )
        ) from None
    except PermissionError:
        raise PermissionDenied(f"reading the log {path}") from None
    except OSError as err:
        raise MissingError((Setting("log"), " ", Given(path), f": {err.strerror}")) from None
