from __future__ import annotations

import ocgate.sandbox
from ocgate.errors import OcgateError
from ocgate.sandbox import AUTH_CAPS, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, SandboxError


def test_public_api() -> None:
    assert set(ocgate.sandbox.__all__) == {
        "AUTH_CAPS",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_NET_ADMIN",
        "CAP_NET_BIND_SERVICE",
        "SECCOMP_PROFILES",
        "Account",
        "SandboxError",
        "drop_privileges",
        "install_seccomp",
        "resolve_account",
        "sandbox_report",
        "set_no_new_privs",
        "set_not_dumpable",
        "set_role",
    }
    for name in ocgate.sandbox.__all__:
        assert hasattr(ocgate.sandbox, name)


def test_capability_numbers_follow_linux_capability_h() -> None:
    assert (ocgate.sandbox.CAP_DAC_OVERRIDE, ocgate.sandbox.CAP_DAC_READ_SEARCH) == (1, 2)
    assert (ocgate.sandbox.CAP_NET_BIND_SERVICE, ocgate.sandbox.CAP_NET_ADMIN) == (10, 12)
    assert set(AUTH_CAPS) == {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH}


def test_sandbox_error_is_an_ocgate_runtime_error() -> None:
    assert issubclass(SandboxError, OcgateError)
    assert issubclass(SandboxError, RuntimeError)
