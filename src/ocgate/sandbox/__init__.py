"""Process confinement for the split gateway: what each process gives up right after ``fork()``.

The gateway runs as ocserv does, as several processes:

=============  ===========  ======================================  ==================
role           runs as      keeps                                   seccomp profile
=============  ===========  ======================================  ==================
supervisor     root         everything (TUN, netlink, scripts)      none
sec-mod        run-as-user  CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE   ``"auth"``
worker         run-as-user  nothing                                 ``"worker"``
NVM collector  run-as-user  nothing                                 ``"nvm"``
=============  ===========  ======================================  ==================

sec-mod keeps the two DAC capabilities because the password and OTP files are root-owned
(mode 0600) and it writes OTP state back after dropping to ``run-as-user``. Workers parse
client bytes and keep nothing: their listening sockets and TUN descriptors come from the
supervisor. The supervisor never parses client bytes and stays root.

A confined role calls, in this order (each step raises rather than half-succeeding)::

    account = resolve_account(config.run_as_user, config.run_as_group)  # before fork()
    ...
    set_role("worker 2")                         # ps: "ocgate: worker 2", comm "ocgate-worker"
    drop_privileges(account)                     # sec-mod: keep_caps=AUTH_CAPS
    set_not_dumpable()
    set_no_new_privs()
    install_seccomp("worker")                    # last: it forbids setuid and friends
    log.info("event=sandboxed %s", sandbox_report())

Everything a role imports lazily must be imported before ``drop_privileges``: afterwards the
interpreter's files (a virtualenv under ``/root``, say) may no longer be readable.

Linux only. ``install_seccomp`` needs libseccomp (``pyseccomp``); the rest needs nothing beyond
the C library.
"""

from __future__ import annotations

from ocgate.sandbox._account import Account, resolve_account
from ocgate.sandbox._caps import (
    CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH,
    CAP_NET_ADMIN,
    CAP_NET_BIND_SERVICE,
)
from ocgate.sandbox._errors import SandboxError
from ocgate.sandbox._privileges import drop_privileges, set_no_new_privs, set_not_dumpable
from ocgate.sandbox._report import sandbox_report
from ocgate.sandbox._seccomp import SECCOMP_PROFILES, install_seccomp
from ocgate.sandbox._title import set_role

#: What sec-mod keeps after dropping to ``run-as-user``: read and write root-owned secret files.
AUTH_CAPS: tuple[int, ...] = (CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE)

__all__ = [
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
]
