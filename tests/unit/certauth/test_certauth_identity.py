"""Binding a certificate identity to the typed user and the chosen group (ocserv #694)."""

from __future__ import annotations

import pytest

from ocgate.certauth import CertIdentity, check_cert_group, check_cert_user
from ocgate.errors import AuthFailed


def _identity(
    groups: tuple[str, ...] = ("eng", "ops"), group_oid: str | None = "2.5.4.11"
) -> CertIdentity:
    return CertIdentity(
        username="alice",
        groups=groups,
        subject="UID=alice,CN=alice",
        serial=1,
        fingerprint_sha256="00" * 32,
        group_oid=group_oid,
    )


@pytest.mark.parametrize("typed", [None, "", "alice"])
def test_matching_or_absent_typed_user(typed: str | None) -> None:
    check_cert_user(_identity(), typed)


@pytest.mark.parametrize("typed", ["bob", "Alice", "alice ", "alice\x00"])
def test_typed_user_must_equal_certificate_user(typed: str) -> None:
    with pytest.raises(AuthFailed, match="certificate is for user 'alice'"):
        check_cert_user(_identity(), typed)


def test_requested_group_in_certificate() -> None:
    assert check_cert_group(_identity(), "ops") == "ops"


def test_requested_group_not_in_certificate() -> None:
    with pytest.raises(AuthFailed, match="not among the certificate's groups"):
        check_cert_group(_identity(), "admins")


def test_requested_group_with_a_certificate_without_groups() -> None:
    with pytest.raises(AuthFailed):
        check_cert_group(_identity(groups=()), "eng")


@pytest.mark.parametrize("requested", [None, ""])
def test_no_request_takes_the_first_certificate_group(requested: str | None) -> None:
    assert check_cert_group(_identity(), requested) == "eng"
    assert check_cert_group(_identity(groups=("solo",)), requested) == "solo"
    assert check_cert_group(_identity(groups=()), requested) is None


@pytest.mark.parametrize("requested", [None, "anything"])
def test_without_cert_group_oid_the_choice_is_free(requested: str | None) -> None:
    assert check_cert_group(_identity(groups=(), group_oid=None), requested) == requested
