"""The login flow engine and the dialog's form sequences, with fake backends."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from ocgate.aggauth import AuthReply
from ocgate.auth import AuthAlternatives, LoginContext, PasswordOk
from ocgate.certauth import CertIdentity
from ocgate.config import parse_config
from ocgate.errors import AuthFailed
from ocgate.gateway import (
    Accepted,
    GroupMenu,
    LoginDialog,
    LoginFlow,
    LoginServices,
    Prompt,
    Step,
    parse_group_entry,
)
from ocgate.http import Request, Response
from ocgate.radius import RadiusChallenge, RadiusResult
from ocgate.session import MemorySessionStore
from ocgate.tls import ServerCredentials

from .conftest import make_config_text

CTX = LoginContext(client_ip="198.18.0.2")
ALICE_CERT = CertIdentity(
    username="alice", groups=("eng",), subject="CN=alice", serial=1, fingerprint_sha256="00"
)


@dataclass
class Fake(AuthAlternatives):
    """Passwords: alice/alicepass (groups eng, ops); bob/bobpass → challenge 'Code?' → 42."""

    alternatives: tuple[frozenset[str], ...] = (frozenset({"plain"}),)
    otp_codes: dict[str, str] = field(default_factory=dict)
    cert: CertIdentity | None = None
    calls: list[str] = field(default_factory=list)

    @property
    def has_otp(self) -> bool:
        return bool(self.otp_codes)

    async def check_password(
        self,
        username: str,
        password: str,
        ctx: LoginContext,
        challenge: RadiusChallenge | None = None,
    ) -> PasswordOk | RadiusChallenge:
        self.calls.append(f"password:{username}")
        if challenge is not None:
            if password == "42":
                return PasswordOk(username=username, radius=RadiusResult(username=username))
            raise AuthFailed("radius: rejected")
        if (username, password) == ("alice", "alicepass"):
            return PasswordOk(username="alice", groups=("eng", "ops"))
        if (username, password) == ("bob", "bobpass"):
            return RadiusChallenge(message="Code?", state=b"s")
        raise AuthFailed("wrong password")

    async def check_otp(self, username: str, code: str) -> None:
        self.calls.append(f"otp:{username}")
        if self.otp_codes.get(username) != code:
            raise AuthFailed("OTP: wrong code or PIN")

    def verify_certificate(self, chain: Sequence[bytes]) -> CertIdentity:
        if not chain or self.cert is None:
            raise AuthFailed("no certificate")
        return self.cert


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_password_only() -> None:
    flow = LoginFlow(Fake(), CTX)
    assert flow.begin() == Prompt(step=Step.CREDENTIALS, message=flow.begin().message)
    done = _run(flow.submit(AuthReply(username="alice", password="alicepass")))
    assert isinstance(done, Accepted)
    assert done.groups == ("eng", "ops")


def test_password_then_otp_then_wrong_otp_keeps_the_otp_step() -> None:
    fake = Fake(otp_codes={"alice": "123456"})
    flow = LoginFlow(fake, CTX)
    flow.begin()
    step = _run(flow.submit(AuthReply(username="alice", password="alicepass")))
    assert step == Prompt(step=Step.OTP, message="Please enter your OTP password.")
    with pytest.raises(AuthFailed):
        _run(flow.submit(AuthReply(secondary_password="000000")))
    assert flow.after_failure().step is Step.OTP
    done = _run(flow.submit(AuthReply(secondary_password="123456")))
    assert isinstance(done, Accepted)
    assert done.method == "otp"
    assert fake.calls == ["password:alice", "otp:alice", "otp:alice"]


def test_wrong_password_never_asks_for_otp() -> None:
    flow = LoginFlow(Fake(otp_codes={"alice": "1"}), CTX)
    flow.begin()
    with pytest.raises(AuthFailed):
        _run(flow.submit(AuthReply(username="alice", password="bad")))
    assert flow.after_failure().step is Step.CREDENTIALS


def test_radius_challenge_round_and_restart_after_refusal() -> None:
    flow = LoginFlow(Fake(), CTX)
    flow.begin()
    step = _run(flow.submit(AuthReply(username="bob", password="bobpass")))
    assert step == Prompt(step=Step.CHALLENGE, message="Code?")
    assert flow.pending_user == "bob"
    with pytest.raises(AuthFailed):
        _run(flow.submit(AuthReply(secondary_password="41")))
    assert flow.after_failure().step is Step.CREDENTIALS
    _run(flow.submit(AuthReply(username="bob", password="bobpass")))
    done = _run(flow.submit(AuthReply(secondary_password="42")))
    assert isinstance(done, Accepted)
    assert done.radius is not None


def test_certificate_alone_answers_the_init() -> None:
    fake = Fake(alternatives=(frozenset({"certificate"}),), cert=ALICE_CERT)
    done = LoginFlow(fake, CTX, lambda: [b"der"]).begin()
    assert isinstance(done, Accepted)
    assert (done.username, done.method) == ("alice", "certificate")


def test_certificate_required_without_one_fails() -> None:
    fake = Fake(alternatives=(frozenset({"certificate"}),), cert=ALICE_CERT)
    flow = LoginFlow(fake, CTX)
    with pytest.raises(AuthFailed, match="certificate required: no certificate"):
        flow.begin()


def test_certificate_and_password_binds_the_user() -> None:
    fake = Fake(alternatives=(frozenset({"certificate", "plain"}),), cert=ALICE_CERT)
    flow = LoginFlow(fake, CTX, lambda: [b"der"])
    assert isinstance(flow.begin(), Prompt)
    with pytest.raises(AuthFailed, match="certificate is for user 'alice'"):
        _run(flow.submit(AuthReply(username="bob", password="bobpass")))
    done = _run(flow.submit(AuthReply(username="alice", password="alicepass")))
    assert isinstance(done, Accepted)
    assert done.method == "certificate+password"


def test_certificate_and_password_checks_the_certificate_on_a_new_connection() -> None:
    fake = Fake(alternatives=(frozenset({"certificate", "plain"}),), cert=ALICE_CERT)
    flow = LoginFlow(fake, CTX)  # No certificate on this connection, no begin().
    with pytest.raises(AuthFailed, match="certificate required"):
        _run(flow.submit(AuthReply(username="alice", password="alicepass")))


def test_certificate_or_password() -> None:
    fake = Fake(alternatives=(frozenset({"plain"}), frozenset({"certificate"})), cert=ALICE_CERT)
    assert isinstance(LoginFlow(fake, CTX, lambda: [b"der"]).begin(), Accepted)
    assert isinstance(LoginFlow(fake, CTX).begin(), Prompt)


def test_group_entries_and_menu(config_dir: Path) -> None:
    assert parse_group_entry("ops[Operations team]").label == "Operations team"
    assert parse_group_entry("eng").label == "eng"
    config = parse_config(
        make_config_text(
            config_dir,
            "select-group = eng[Engineering]\nselect-group = ops\n"
            "default-select-group = DEFAULT\nauto-select-group = true\n",
        ),
        source="t.conf",
    )
    menu = GroupMenu(config, ("eng", "sales"))
    assert [e.value for e in menu.entries] == ["DEFAULT", "eng", "ops", "sales"]
    assert menu.resolve("engineering") == "eng"
    assert menu.resolve("DEFAULT") is None
    assert menu.resolve("other") == "other"
    assert [o.value for o in menu.options("Engineering") if o.selected] == ["eng"]


# The dialog ---------------------------------------------------------------------------------------

INIT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" '
    'aggregate-auth-version="2"><version who="vpn">v9.01-3</version>{extra}</config-auth>'
)


def _post(body: str) -> Request:
    headers = (("host", "vpn"), ("x-aggregate-auth", "1"), ("user-agent", "oc"))
    return Request(
        method="POST", target="/", headers=headers, body=body.encode(), http_version="1.1"
    )


def _reply(auth: str, group: str = "") -> Request:
    gs = f"<group-select>{group}</group-select>" if group else ""
    return _post(
        '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply">'
        f"<auth>{auth}</auth>{gs}</config-auth>"
    )


class Dialog:
    def __init__(
        self, config_dir: Path, fake: Fake, extra: str = "", chain: Sequence[bytes] = ()
    ) -> None:
        self.config = parse_config(make_config_text(config_dir, extra), source="t.conf")
        self.banned: set[str] = set()
        self.points: list[str] = []
        self.store = MemorySessionStore()
        services = LoginServices(
            config=self.config,
            backends=fake,
            store=self.store,
            credentials=ServerCredentials(sha1_hex="AB" * 20, pin_sha256="pin-sha256:x"),
            clock=lambda: 100.0,
            count_connected=lambda user: 0,
            end_session=lambda s, reason: None,
            groups=GroupMenu(self.config) if "select-group" in extra else None,
            is_banned=lambda ip: ip in self.banned,
            on_auth_failure=self.points.append,
        )
        self.dialog = LoginDialog(services, remote_addr="198.18.0.2", peer_chain=lambda: chain)

    def send(self, request: Request) -> Response:
        return asyncio.run(self.dialog.handle(request))


def test_dialog_otp_form_is_a_challenge_with_secondary_password(config_dir: Path) -> None:
    d = Dialog(config_dir, Fake(otp_codes={"alice": "123456"}))
    d.send(_post(INIT.format(extra="")))
    form = d.send(_reply("<username>alice</username><password>alicepass</password>"))
    assert b'<auth id="challenge">' in form.body
    assert b'name="secondary_password"' in form.body
    assert b"Please enter your OTP password." in form.body
    done = d.send(_reply("<secondary_password>123456</secondary_password>"))
    assert b'<auth id="success">' in done.body
    assert d.points == []


def test_dialog_group_reinit_is_remembered(config_dir: Path) -> None:
    extra = "select-group = eng[Engineering]\nselect-group = ops[Operations]\n"
    d = Dialog(config_dir, Fake(), extra)
    first = d.send(_post(INIT.format(extra="")))
    assert b'name="group_list"' in first.body
    again = d.send(_post(INIT.format(extra="<group-select>ops</group-select>")))
    assert b'<option value="ops" selected="true">Operations</option>' in again.body
    done = d.send(_reply("<username>alice</username><password>alicepass</password>"))
    assert b'<auth id="success">' in done.body
    (session,) = d.store.sessions()
    assert session.group == "ops"


def test_dialog_group_not_allowed_fails(config_dir: Path) -> None:
    d = Dialog(config_dir, Fake(), "select-group = sales\n")
    d.send(_post(INIT.format(extra="<group-select>sales</group-select>")))
    res = d.send(_reply("<username>alice</username><password>alicepass</password>"))
    assert b"Login failed" in res.body
    assert d.store.sessions() == []


def test_dialog_refuses_banned_address_even_with_right_password(config_dir: Path) -> None:
    d = Dialog(config_dir, Fake())
    d.send(_post(INIT.format(extra="")))
    d.banned.add("198.18.0.2")
    res = d.send(_reply("<username>alice</username><password>alicepass</password>"))
    assert (res.status, res.close) == (401, True)


def test_dialog_wrong_password_adds_ban_points(config_dir: Path) -> None:
    d = Dialog(config_dir, Fake())
    d.send(_reply("<username>alice</username><password>x</password>"))
    assert d.points == ["198.18.0.2"]


def test_dialog_progress_follows_the_login_until_its_session_exists(config_dir: Path) -> None:
    # What `show sessions all` lists for a login under way (ocserv's sec-mod entry states).
    d = Dialog(config_dir, Fake())
    first = d.dialog.progress()
    assert first is not None
    assert (first.state, first.username, first.created, first.remote) == (
        "pre-auth",
        "",
        100.0,
        "198.18.0.2",
    )
    d.send(_post(INIT.format(extra="")))
    assert d.dialog.progress() == replace(first, state="authenticating", user_agent="oc")
    d.send(_reply("<username>alice</username><password>x</password>"))
    failed = d.dialog.progress()
    assert failed is not None
    assert (failed.state, failed.username) == ("auth failed", "alice")
    # The name shown is random, never the cookie or the session id that follows.
    d.send(_reply("<username>alice</username><password>alicepass</password>"))
    assert d.dialog.progress() is None
    (session,) = d.store.sessions()
    assert first.display_id != session.sid


def test_dialog_refuses_unsafe_group_names(config_dir: Path, tmp_path: Path) -> None:
    fake = Fake()

    async def weird(*args: object, **kwargs: object) -> PasswordOk:
        return PasswordOk(username="alice", groups=("../escape",))

    fake.check_password = weird  # type: ignore[method-assign]
    groups = tmp_path / "groups"
    groups.mkdir()
    d = Dialog(config_dir, fake, f"config-per-group = {groups}\n")
    res = d.send(_reply("<username>alice</username><password>alicepass</password>"))
    assert b"Login failed" in res.body
    assert d.store.sessions() == []


def test_dialog_accepts_any_name_without_per_user_files(config_dir: Path) -> None:
    # Only the lookup of a per-user/per-group file needs a safe path component (ocserv 1.5.1).
    fake = Fake()

    async def odd(*args: object, **kwargs: object) -> PasswordOk:
        return PasswordOk(username="sp@c/al", groups=("../ünï",))

    fake.check_password = odd  # type: ignore[method-assign]
    d = Dialog(config_dir, fake)
    d.send(_reply("<username>sp@c/al</username><password>alicepass</password>"))
    (session,) = d.store.sessions()
    assert (session.username, session.group) == ("sp@c/al", "../ünï")


def test_dialog_session_carries_per_user_settings(config_dir: Path, tmp_path: Path) -> None:
    users = tmp_path / "peruser"
    users.mkdir()
    (users / "alice").write_text("idle-timeout = 123\nroute = 10.44.0.0/16\n")
    d = Dialog(config_dir, Fake(), f"config-per-user = {users}\n")
    d.send(_reply("<username>alice</username><password>alicepass</password>"))
    (session,) = d.store.sessions()
    settings = session.extra["settings"]
    assert settings.config.idle_timeout == 123  # type: ignore[attr-defined]
    assert [str(r) for r in settings.config.route] == ["10.44.0.0/16"]  # type: ignore[attr-defined]


QUAD_CERT = CertIdentity(
    username="quad",
    groups=("g1", "g2", "g3", "g4"),
    subject="CN=quad",
    serial=2,
    fingerprint_sha256="00",
    group_oid="2.5.4.11",
)


def test_certificate_alone_with_groups_asks_for_the_group_first(config_dir: Path) -> None:
    # ocserv lists every cert-group-oid value (after default-select-group, before select-group)
    # and lets the client pick one, also a group select-group does not list.
    fake = Fake(alternatives=(frozenset({"certificate"}),), cert=QUAD_CERT)
    extra = "select-group = g2[Second]\nselect-group = other\ndefault-select-group = DEFAULT\n"
    d = Dialog(config_dir, fake, extra, chain=(b"leaf",))
    form = d.send(_post(INIT.format(extra="")))
    body = form.body.decode()
    assert d.store.sessions() == []
    assert 'name="password"' not in body
    assert 'name="username"' not in body
    values = re.findall(r'<option value="([^"]*)"', body)
    assert values == ["DEFAULT", "g1", "g3", "g4", "g2", "other"]
    d.send(_reply("", group="g4"))
    (session,) = d.store.sessions()
    assert (session.username, session.group) == ("quad", "g4")


def test_certificate_alone_with_one_group_and_no_list_needs_no_form(config_dir: Path) -> None:
    fake = Fake(alternatives=(frozenset({"certificate"}),), cert=ALICE_CERT)
    d = Dialog(config_dir, fake, chain=(b"leaf",))
    d.send(_post(INIT.format(extra="")))
    (session,) = d.store.sessions()
    assert session.username == "alice"


def _svc(method: str, body: bytes = b"") -> Request:
    headers = (
        ("host", "vpn"),
        ("user-agent", "Cisco SVC IPPhone Client v1.0"),
        ("content-type", "application/x-www-form-urlencoded"),
    )
    return Request(method=method, target="/svc", headers=headers, body=body, http_version="1.1")


def test_svc_login_of_ip_phones(config_dir: Path) -> None:
    # ocserv src/worker-svc.c: GET sets webvpnlogin=1, the POST gets only the cookie.
    d = Dialog(config_dir, Fake(), "cisco-svc-client-compat = true\nudp-port = 443\n")
    hello = d.send(_svc("GET"))
    assert (hello.status, hello.body, hello.close) == (200, b"", False)
    assert ("Set-Cookie", "webvpnlogin=1; secure") in hello.headers
    assert d.send(_svc("POST", b"username=alice")).headers == hello.headers
    done = d.send(_svc("POST", b"username=alice&password=alicepass"))
    (session,) = d.store.sessions()
    assert done.status == 200
    assert done.body == b""
    cookies = [v for k, v in done.headers if k == "Set-Cookie"]
    assert len(cookies) == 1
    assert cookies[0].startswith("webvpn=")
    assert cookies[0].endswith("; secure")
    assert session.username == "alice"


def test_svc_failure_is_401_and_closes(config_dir: Path) -> None:
    d = Dialog(config_dir, Fake())
    refused = d.send(_svc("POST", b"username=alice&password=nope"))
    assert (refused.status, refused.reason, refused.close) == (401, "Authentication failed", True)
    assert d.points == ["198.18.0.2"]
    assert d.store.sessions() == []
