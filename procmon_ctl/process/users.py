"""Users by name and by id, as the system's user database has them (NSS: /etc/passwd,
LDAP, systemd's dynamic users), asked through the C library as id(1) asks; and a
user a command runs as (`run --user`): the credentials and environment a process of
theirs gets, as `sudo -u` gives them, and a way to act as them for a moment
(opening a file they asked for).  `run` keeps root for the kernel work: only CMD,
and files opened on CMD's user's behalf, take the user's credentials."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import Given, Setting, UsageError


def written_as_number(given: str) -> bool:
    """Whether a user given on the command line is a number: ASCII digits, as id(1)
    and sudo take one (str.isdigit() is true for "²", which int() refuses)."""
    return given.isascii() and given.lstrip("-").isdigit()


def uid_named(name: str) -> int | None:
    """The user id of the user called `name`, or None when there is no such user."""
    try:
        return pwd.getpwnam(name).pw_uid
    except (KeyError, ValueError):  # ValueError: an embedded NUL
        return None


class UserNames:
    """The names of user ids (the number itself for an id no user has), each asked of
    the user database once: a table asks for every row.  Bounded: a host with more
    users than `limit` seen by one reader asks again."""

    def __init__(self, limit: int = 4096):
        self._names: dict[int, str] = {}
        self._limit = limit

    def name(self, uid: int) -> str:
        found = self._names.get(uid)
        if found is None:
            try:
                found = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError):
                found = str(uid)
            if len(self._names) >= self._limit:
                self._names.clear()
            self._names[uid] = found
        return found


@dataclass(frozen=True)
class RunAs:
    """A user from the user database, with the groups a login gives them."""

    name: str
    uid: int
    gid: int  # the primary group
    groups: tuple[int, ...]  # the supplementary groups (initgroups), the primary one included
    home: str
    shell: str


def find_user(given: str) -> RunAs:
    """The user of this name (or, as sudo's #UID, of this number when the name is
    all digits and no user has it as a name).  One that does not exist is a usage
    error: nothing has been loaded or started for it yet."""
    try:
        entry = pwd.getpwnam(given)
    except KeyError:
        entry = None
    except ValueError:  # an embedded NUL
        entry = None
    if entry is None and written_as_number(given) and not given.startswith("-"):
        try:
            entry = pwd.getpwuid(int(given))
        except (KeyError, OverflowError):
            entry = None
    if entry is None:
        raise UsageError(
            (Setting("user"), " ", Given(given), ": no such user (getent passwd has none)")
        )
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return RunAs(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=groups,
        home=entry.pw_dir,
        shell=entry.pw_shell or "/bin/sh",
    )


def environment_for(user: RunAs, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with HOME, SHELL, USER and LOGNAME the user's, as `sudo -u` and `su`
    set them; the rest (PATH, TERM, LANG, ...) is kept as the caller had it."""
    env = dict(environ)
    env.update(HOME=user.home, SHELL=user.shell, USER=user.name, LOGNAME=user.name)
    return env


def become(user: RunAs) -> None:
    """This process takes the user's groups and ids for good (real, effective and
    saved, so no way back to root; the kernel drops root's capabilities with them).
    Groups first: once the uid is the user's, setgroups is no longer allowed."""
    os.setgroups(list(user.groups))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)


@contextmanager
def acting_as(user: RunAs) -> Iterator[None]:
    """For the body, what this process opens is opened with the user's rights (its
    effective ids and groups the user's; the real and saved ids stay root's, so the
    way back is open).  The kernel decides, as for the user's own shell: no rule of
    root's to get round."""
    groups = os.getgroups()
    egid, euid = os.getegid(), os.geteuid()
    os.setgroups(list(user.groups))
    os.setresgid(-1, user.gid, -1)
    os.setresuid(-1, user.uid, -1)
    try:
        yield
    finally:
        os.setresuid(-1, euid, -1)
        os.setresgid(-1, egid, -1)
        os.setgroups(groups)
