"""The ``webvpncontext`` table: a login's rounds on several connections (issue 13 §5)."""

from __future__ import annotations

import pytest

from ocgate.gateway import LoginContexts
from ocgate.gateway._contexts import parse_context_token_untrusted

A = "198.18.0.2"


class Dialog:
    """Stands for a login dialog: the table only keeps and returns it."""


def test_a_token_names_its_dialog_for_the_same_address_and_host() -> None:
    table: LoginContexts[Dialog] = LoginContexts(240)
    dialog = Dialog()
    token = table.token_for(dialog, remote=A, vhost="", now=0.0)
    assert len(token) == 32
    assert table.token_for(dialog, remote=A, vhost="", now=1.0) == token  # one per login
    assert table.resume(token, remote=A, vhost="", now=2.0) is dialog
    assert table.resume(token, remote="198.18.0.9", vhost="", now=2.0) is None
    assert table.resume(token, remote=A, vhost="other", now=2.0) is None
    assert table.resume(token + "x", remote=A, vhost="", now=2.0) is None


def test_a_context_lives_auth_timeout_after_its_last_use() -> None:
    table: LoginContexts[Dialog] = LoginContexts(240)
    dialog = Dialog()
    token = table.token_for(dialog, remote=A, vhost="", now=0.0)
    assert table.resume(token, remote=A, vhost="", now=200.0) is dialog
    assert table.resume(token, remote=A, vhost="", now=439.0) is dialog
    assert table.resume(token, remote=A, vhost="", now=679.5) is None
    assert len(table) == 0


def test_a_finished_login_forgets_its_token() -> None:
    table: LoginContexts[Dialog] = LoginContexts(240)
    dialog = Dialog()
    token = table.token_for(dialog, remote=A, vhost="", now=0.0)
    table.forget(dialog)
    assert table.resume(token, remote=A, vhost="", now=1.0) is None
    assert table.dialogs() == []


def test_the_table_is_bounded_and_the_least_recently_used_gives_way() -> None:
    table: LoginContexts[Dialog] = LoginContexts(240, limit=3)
    dialogs = [Dialog() for _ in range(4)]
    tokens = [table.token_for(d, remote=A, vhost="", now=float(i)) for i, d in enumerate(dialogs)]
    assert len(table) == 3
    assert table.resume(tokens[0], remote=A, vhost="", now=5.0) is None
    assert table.resume(tokens[3], remote=A, vhost="", now=5.0) is dialogs[3]


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "A" * 65,  # longer than any token
        "abc%00def",
        "a b",
        "é",
        "abc=",
    ],
)
def test_malformed_tokens_name_nothing(value: str | None) -> None:
    assert parse_context_token_untrusted(value) is None


def test_a_token_shape_is_accepted() -> None:
    assert parse_context_token_untrusted("Ab-_9") == "Ab-_9"
