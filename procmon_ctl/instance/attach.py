"""Attach and detach: one BPF link per program, pinned so it outlives the command.

bpftool 7.1 (Debian 12) cannot attach a tracing program (`prog attach` knows no
tracepoint type, and it has no `link create` or `autoattach`), so the link is
made through libbpf: bpf_raw_tracepoint_open() on the pinned tp_btf program,
then bpf_obj_pin().  Removing the link pin detaches the program."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import BpfError, PermissionDenied, Setting, UsageError
from ..kernel import libbpf, signals
from ..kernel.system import require_root
from .pinned import PinnedInstance
from .pins import PROGRAMS, PinLayout


def parse_events(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROGRAMS]
    if unknown or not names:
        raise UsageError(
            (
                Setting("events"),
                f" {text!r}: unknown event {', '.join(unknown) or '(none given)'}; "
                f"choose from {','.join(PROGRAMS)}",
            )
        )
    return list(dict.fromkeys(names))


def attach(pinned: PinnedInstance, events: list[str]) -> tuple[list[str], list[str]]:
    """Attach the programs for `events` that are not: (those newly attached, those
    that already were).  Idempotent, as detach: what was asked holds afterwards,
    whether or not it held before, and a script need not tell the cases apart."""
    require_root("attaching BPF programs")
    layout = pinned.layout
    with pinned.locks.admin():
        pinned.require_loaded()
        todo = [e for e in events if not layout.link(e).exists()]
        already = [e for e in events if e not in todo]
        if not todo:
            return [], already
        layout.links_dir.mkdir(mode=0o700, exist_ok=True)
        done = []
        try:
            for event in todo:
                _attach_one(pinned, event)
                done.append(event)
        except BaseException:
            for event in done:
                layout.link(event).unlink(missing_ok=True)
            pinned.record.forget_links(todo)
            raise
        return done, already


def _attach_one(pinned: PinnedInstance, event: str) -> None:
    with _link(pinned.layout, event) as link_fd:
        # Recorded before it is pinned: a pinned link is always a recorded one.
        pinned.record.remember_link(event, libbpf.link_info(link_fd).id)
        try:
            libbpf.obj_pin(link_fd, pinned.layout.link(event))
        except libbpf.LibbpfError as err:
            raise _attach_error(event, err) from None
    # The pin now holds the link; our fd must not keep anything alive.


def try_attach(layout: PinLayout) -> None:
    """Attach every loaded program and detach it again at once, pinning nothing:
    proves the kernel accepts the links (`doctor`)."""
    for event in PROGRAMS:
        with _link(layout, event):
            pass


@contextmanager
def _link(layout: PinLayout, event: str) -> Iterator[int]:
    """A link fd for the program of `event`, closed on leaving (which detaches it
    unless it was pinned meanwhile)."""
    prog_fd = link_fd = -1
    try:
        prog_fd = libbpf.obj_get(layout.prog(event))
        link_fd = libbpf.raw_tracepoint_open(prog_fd)
    except libbpf.LibbpfError as err:
        for fd in (link_fd, prog_fd):
            if fd >= 0:
                os.close(fd)
        raise _attach_error(event, err) from None
    try:
        yield link_fd
    finally:
        os.close(link_fd)
        os.close(prog_fd)


def _attach_error(event: str, err: libbpf.LibbpfError) -> Exception:
    if libbpf.is_permission(err):
        return PermissionDenied(f"attaching {event}")
    return BpfError(f"attaching the {event} program failed: {err}")


def detach(pinned: PinnedInstance, events: list[str]) -> tuple[list[str], list[str]]:
    """Remove the link pins for `events`: (those detached, those that were not
    attached; all of them where nothing is loaded)."""
    require_root("detaching BPF programs")
    layout = pinned.layout
    with pinned.locks.admin():
        attached = [e for e in events if layout.link(e).exists()]
        idle = [e for e in events if e not in attached]
        if not attached:
            return [], idle
        if pinned.record.pins() is not None:
            # Remove no link pin that is not ours (an instance of an older
            # procmon-ctl has no record: its links are known by name alone).
            pinned.identity.check_pins([f"links/{e}" for e in attached])
        with signals.deferred():  # every link asked for or none: a stop waits
            for event in attached:
                layout.link(event).unlink()
            pinned.record.forget_links(attached)
            if not any(layout.links_dir.iterdir()):
                layout.links_dir.rmdir()
        return attached, idle
