"""What every password backend returns, and the group-selection rule shared by all of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ocgate.errors import AuthFailed

__all__ = ["AuthResult", "PasswordBackend", "select_group"]


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A successful authentication.

    :param username: the authenticated user, as the backend knows it.
    :param groups: the groups the user may select (in the backend's order); empty = none.
    """

    username: str
    groups: tuple[str, ...] = ()


class PasswordBackend(Protocol):
    """A username/password check (``plain``, later ``pam`` and ``radius``)."""

    def authenticate(self, username: str, password: str) -> AuthResult:
        """Check the credentials.

        :raises AuthFailed: if they are refused; the message is for the log, never for the client.
        """
        ...


def select_group(result: AuthResult, requested: str | None) -> str | None:
    """Pick the session's group (ocserv-compatibility §4.2 group rules).

    :param result: the authenticated user and the groups they may use.
    :param requested: the group the client asked for (``None`` or empty = no request).
    :returns: the requested group, or with no request the first listed group, or ``None``.
    :raises AuthFailed: if the requested group is not one of the user's.
    """
    if not requested:
        return result.groups[0] if result.groups else None
    if requested not in result.groups:
        raise AuthFailed("group not allowed")
    return requested
