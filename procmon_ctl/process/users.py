"""Users by name and by id, as the system's user database has them (NSS: /etc/passwd,
LDAP, systemd's dynamic users), asked through the C library as id(1) asks."""

from __future__ import annotations

import pwd


def uid_named(name: str) -> int | None:
    """The user id of the user called `name`, or None when there is no such user."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None
