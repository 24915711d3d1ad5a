from __future__ import annotations

import grp
import os
import pwd

import pytest

from ocgate.errors import ConfigError
from ocgate.sandbox import Account, resolve_account


def _nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:  # pragma: no cover - every Debian/Fedora/Alpine system has it
        pytest.skip("no 'nobody' account")


def test_user_with_primary_group() -> None:
    nobody = _nobody()
    account = resolve_account("nobody", None)
    assert account == Account(
        name="nobody", uid=nobody.pw_uid, gid=nobody.pw_gid, groups=(nobody.pw_gid,)
    )


def test_explicit_group_replaces_primary_group_and_supplementary_list() -> None:
    nobody = _nobody()
    root_group = grp.getgrgid(0).gr_name
    account = resolve_account("nobody", root_group)
    assert (account.uid, account.gid, account.groups) == (nobody.pw_uid, 0, (0,))


def test_no_user_keeps_the_current_uid() -> None:
    account = resolve_account(None, None)
    assert account.uid == os.getuid()
    assert account.groups == (account.gid,)


def test_no_user_with_group() -> None:
    root_group = grp.getgrgid(0).gr_name
    account = resolve_account(None, root_group)
    assert (account.uid, account.gid) == (os.getuid(), 0)


def test_unknown_user_names_the_option() -> None:
    with pytest.raises(ConfigError, match="no such user") as info:
        resolve_account("ocgate-no-such-user", None)
    assert info.value.key == "run-as-user"
    assert str(info.value).startswith("run-as-user: ")


def test_unknown_group_names_the_option() -> None:
    with pytest.raises(ConfigError, match="no such group") as info:
        resolve_account(None, "ocgate-no-such-group")
    assert info.value.key == "run-as-group"


def test_account_is_frozen() -> None:
    account = resolve_account(None, None)
    with pytest.raises(AttributeError):
        account.uid = 0  # type: ignore[misc]
