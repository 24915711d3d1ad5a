from __future__ import annotations

import pytest

from ocgate.auth import AuthResult, PasswordBackend, select_group
from ocgate.errors import AuthFailed


def test_auth_result_is_frozen_and_slotted() -> None:
    result = AuthResult("alice", ("admins",))
    with pytest.raises(AttributeError):
        result.username = "bob"  # type: ignore[misc]
    assert not hasattr(result, "__dict__")
    assert AuthResult("alice").groups == ()


@pytest.mark.parametrize(
    ("groups", "requested", "chosen"),
    [
        (("admins", "users"), None, "admins"),
        (("admins", "users"), "", "admins"),
        (("admins", "users"), "users", "users"),
        (("admins", "users"), "admins", "admins"),
        ((), None, None),
        ((), "", None),
    ],
)
def test_select_group(groups: tuple[str, ...], requested: str | None, chosen: str | None) -> None:
    assert select_group(AuthResult("a", groups), requested) == chosen


@pytest.mark.parametrize(
    ("groups", "requested"),
    [(("admins",), "users"), ((), "admins"), (("admins",), "Admins"), (("admins",), "admin")],
)
def test_select_group_refuses_other_groups(groups: tuple[str, ...], requested: str) -> None:
    with pytest.raises(AuthFailed, match="group not allowed"):
        select_group(AuthResult("a", groups), requested)


def test_protocol_is_structural() -> None:
    class Fixed:
        def authenticate(self, username: str, password: str) -> AuthResult:
            return AuthResult(username)

    backend: PasswordBackend = Fixed()
    assert backend.authenticate("u", "p") == AuthResult("u")
