"""The account a process drops to: ocserv's ``run-as-user`` and ``run-as-group``.

Names are resolved once, in the supervisor, before ``fork()``: NSS lookups load modules and may
talk to ``nscd`` or ``sssd``, which has no place in a confined child, and a bad name is then a
start-up error rather than a crashing worker. The result is a plain value every child receives.

Rules:

* ``user`` names an account in the password database; without it the process stays the user
  it is (the real uid).
* ``group`` names a group; without it the user's primary group is used.
* The supplementary group list becomes just that group, as ocserv's ``drop_privileges()``
  does with ``setgroups(1, &gid)``: the account's memberships in the group database (``shadow``,
  ``ssl-cert``, ``adm``...) must not follow it into a worker. The supervisor opens whatever the
  children need before it forks them.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from ocgate.errors import ConfigError

__all__ = ["Account", "resolve_account"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A resolved identity: who a process becomes in :func:`~ocgate.sandbox.drop_privileges`.

    :param name: the user name (or the uid as text when it has no password entry), for logs.
    :param uid: the real, effective and saved user id to take.
    :param gid: the real, effective and saved group id to take.
    :param groups: the supplementary group ids (by default just ``gid``).
    """

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def resolve_account(user: str | None, group: str | None) -> Account:
    """Resolve ``run-as-user`` / ``run-as-group`` to ids.

    :param user: a user name, or ``None`` to keep the current real uid.
    :param group: a group name, or ``None`` for the user's primary group.
    :raises ConfigError: the user or group does not exist; ``key`` names the option.
    """
    entry = _lookup_user(user)
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"no such group {group!r}", key="run-as-group") from None
    elif entry is not None:
        gid = entry.pw_gid
    else:
        gid = os.getgid()
    if entry is None:
        return Account(name=str(os.getuid()), uid=os.getuid(), gid=gid, groups=(gid,))
    return Account(name=entry.pw_name, uid=entry.pw_uid, gid=gid, groups=(gid,))


def _lookup_user(user: str | None) -> pwd.struct_passwd | None:
    if user is None:
        try:
            return pwd.getpwuid(os.getuid())
        except KeyError:
            return None
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"no such user {user!r}", key="run-as-user") from None
