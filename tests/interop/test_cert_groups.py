"""Acceptance: certificate groups as ocserv has them (issue 12 §1, certificate groups).

With ``cert-group-oid = 2.5.4.11`` every OU of the client certificate is a group: a certificate
with four OUs belongs to four groups. ``--authgroup`` may pick any of them, also one that
``select-group`` does not list (ocserv's "hidden" groups; ocserv ``src/worker-auth.c`` lists the
certificate's groups in the form too). The chosen group's ``config-per-group`` file applies to the
tunnel; a group the certificate does not hold is refused.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.pki import OID_UID, IssuedCert, Pki, issue_cert, make_pki

from ._openconnect import OpenConnectRunner
from ._server import DEFAULT_USERS, Server, ServerKind, StartServer, User

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

OID_OU = "2.5.4.11"
FOUR = ("g1", "g2", "g3", "g4")
ROUTES = {"g1": "10.81.0.0", "g2": "10.82.0.0", "g3": "10.83.0.0", "g4": "10.84.0.0"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="module")
def quad(pki: Pki) -> IssuedCert:
    """CN/UID ``quad`` with four OUs."""
    return issue_cert(pki.ca, pki.directory, "quad", common_name="quad", uid="quad", ous=FOUR)


def _start(
    start_gateway: StartServer,
    pki: Pki,
    tmp_path: Path,
    users: Sequence[User] = DEFAULT_USERS,
    **extra: str | list[str] | None,
) -> Server:
    groups = tmp_path / "groups"
    groups.mkdir(exist_ok=True)
    for name, net in ROUTES.items():
        (groups / name).write_text(f"route = {net}/16\n")
    options: dict[str, str | list[str] | None] = {
        "auth": "certificate",
        "ca-cert": str(pki.ca.cert_path),
        "crl": str(pki.crl_path),
        "cert-user-oid": OID_UID.dotted_string,
        "cert-group-oid": OID_OU,
        "select-group": ["g1", "g2[Second]"],  # g3 and g4 are "hidden".
        "config-per-group": str(groups),
    }
    options.update(extra)
    return start_gateway(options, users=users)


def _login_re(server: Server, user: str, group: str) -> str:
    """The server's log line of a login of ``user`` into ``group``."""
    if server.kind is ServerKind.OCSERV:  # ocserv 1.1.6 sec-mod at -d 3.
        return rf"auth complete .*for user '{user}' .*of group: '{group}'"
    return rf"event=login user='{user}' group='{group}' "


def _routes(env: dict[str, str]) -> list[str]:
    count = int(env.get("CISCO_SPLIT_INC", "0"))
    return sorted(env.get(f"CISCO_SPLIT_INC_{i}_ADDR", "") for i in range(count))


def _cert_args(cert: IssuedCert) -> list[str]:
    return ["--certificate", str(cert.cert_path), "--sslkey", str(cert.key_path)]


@pytest.mark.parametrize(
    ("authgroup", "group"), [("g1", "g1"), ("Second", "g2"), ("g3", "g3"), ("g4", "g4")]
)
def test_authgroup_picks_any_of_the_certificate_s_groups(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    pki: Pki,
    quad: IssuedCert,
    tmp_path: Path,
    authgroup: str,
    group: str,
) -> None:
    server = _start(start_gateway, pki, tmp_path)
    client = openconnect.connect(server, extra=[*_cert_args(quad), "--authgroup", authgroup])
    env = client.wait_env()
    assert _routes(env) == [ROUTES[group]], env
    server.wait_log(_login_re(server, "quad", group), timeout=10)


def test_a_group_outside_the_certificate_is_refused(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    pki: Pki,
    quad: IssuedCert,
    tmp_path: Path,
) -> None:
    server = _start(start_gateway, pki, tmp_path, **{"select-group": ["g1", "eng"]})
    result = openconnect.authenticate(
        server,
        user=None,
        stdin="unused\n",
        mode="--cookieonly",
        extra=[*_cert_args(quad), "--authgroup", "eng"],
    )
    assert result.returncode != 0, result.describe()
    if server.kind is ServerKind.OCSERV:
        refusal = r"requested group 'eng' but is not included on his certificate groups"
    else:
        refusal = r"login-failed .*'eng' is not among the certificate's groups"
    server.wait_log(refusal, timeout=10)


def test_default_select_group_means_the_certificate_s_first_group(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    pki: Pki,
    quad: IssuedCert,
    tmp_path: Path,
) -> None:
    # ocserv: the default-select-group entry asks for no particular group; the certificate's
    # first group is then the session's group.
    server = _start(start_gateway, pki, tmp_path, **{"default-select-group": "DEFAULT"})
    client = openconnect.connect(server, extra=[*_cert_args(quad), "--authgroup", "DEFAULT"])
    env = client.wait_env()
    assert _routes(env) == [ROUTES["g1"]], env
    server.wait_log(_login_re(server, "quad", "g1"), timeout=10)


def test_certificate_and_password_combined_and_after_a_reload(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    pki: Pki,
    tmp_path: Path,
) -> None:
    # auth = certificate + plain: the password file names the user; the groups come from the
    # certificate, all four of them, hidden ones included; a SIGHUP keeps it so. (ocserv's plain
    # module also wants the requested group in the password file, so alice is in all four.)
    quad_user = issue_cert(
        pki.ca, pki.directory, "quadp", common_name="alice", uid="alice", ous=FOUR
    )
    passwd = tmp_path / "server0" / "ocpasswd"
    server = _start(
        start_gateway,
        pki,
        tmp_path,
        (User("alice", "alicepass", FOUR), *DEFAULT_USERS[1:]),
        auth=["certificate", f'"plain[passwd={passwd}]"'],
        **{"auto-select-group": "true"},
    )
    for authgroup in ("g3", "Second"):
        group = "g2" if authgroup == "Second" else authgroup
        result = openconnect.authenticate(
            server,
            user="alice",
            stdin="alicepass\n",
            mode="--cookieonly",
            extra=[*_cert_args(quad_user), "--authgroup", authgroup],
        )
        assert result.returncode == 0, result.describe()
        server.wait_log(_login_re(server, "alice", group), timeout=10)
    offset = server.log_size()
    server.proc.send_signal(signal.SIGHUP)
    reloaded = (
        "sec-mod: reloading configuration"
        if server.kind is ServerKind.OCSERV
        else ("event=reloaded")
    )
    server.wait_log(reloaded, since=offset, timeout=15)
    client = openconnect.connect(
        server,
        user="alice",
        password="alicepass",
        extra=[*_cert_args(quad_user), "--authgroup", "g4"],
    )
    env = client.wait_env()
    assert _routes(env) == [ROUTES["g4"]], env
    server.wait_log(_login_re(server, "alice", "g4"), since=offset, timeout=10)


@pytest.mark.parametrize(
    ("authgroup", "ocserv_refusal", "ocgate_refusal"),
    [
        ("g4", r"requested group 'g4' but is not a member", r"group not allowed"),
        (
            "g5",
            r"presented a certificate from group 'g5' but he isn't a member of it",
            r"'g5' is not among the certificate's groups",
        ),
    ],
    ids=["in-certificate-only", "in-password-file-only"],
)
def test_certificate_and_password_want_the_group_in_both(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    pki: Pki,
    tmp_path: Path,
    authgroup: str,
    ocserv_refusal: str,
    ocgate_refusal: str,
) -> None:
    # ocserv sec-mod check_group: the password module decides the group (it must be one of the
    # user's groups in the password file), then the certificate must hold it as well.
    cert = issue_cert(pki.ca, pki.directory, "quadb", common_name="alice", uid="alice", ous=FOUR)
    passwd = tmp_path / "server0" / "ocpasswd"
    server = _start(
        start_gateway,
        pki,
        tmp_path,
        (User("alice", "alicepass", ("g5", "g3")), *DEFAULT_USERS[1:]),
        auth=["certificate", f'"plain[passwd={passwd}]"'],
        **{"select-group": ["g1", "g5"]},
    )
    args = _cert_args(cert)
    ok = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly",
        extra=[*args, "--authgroup", "g3"],
    )  # fmt: skip
    assert ok.returncode == 0, ok.describe()
    server.wait_log(_login_re(server, "alice", "g3"), timeout=10)
    offset = server.log_size()
    refused = openconnect.authenticate(
        server, user="alice", stdin="alicepass\n", mode="--cookieonly",
        extra=[*args, "--authgroup", authgroup],
    )  # fmt: skip
    assert refused.returncode != 0, refused.describe()
    refusal = ocserv_refusal if server.kind is ServerKind.OCSERV else ocgate_refusal
    server.wait_log(refusal, since=offset, timeout=10)
