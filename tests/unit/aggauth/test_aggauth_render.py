"""Rendering of server replies: shape, escaping, and round trips through the parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ocgate.aggauth import (
    AuthReply,
    FormInput,
    GroupOption,
    LoginForm,
    make_opaque,
    parse_client_message_untrusted,
    render_auth_request,
    render_complete,
    render_legacy_form,
    render_legacy_success,
    render_logout_complete,
)
from ocgate.errors import LocalProtocolError

DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'

USER_PASS = (
    FormInput(type="text", name="username", label="Username:"),
    FormInput(type="password", name="password", label="Password:"),
)


def login_form(**overrides: object) -> LoginForm:
    values: dict[str, object] = {
        "message": "Please enter your username and password.",
        "inputs": USER_PASS,
    }
    values.update(overrides)
    return LoginForm(**values)  # type: ignore[arg-type]


def test_auth_request_shape() -> None:
    body = render_auth_request(form=login_form(opaque=make_opaque("ctx1")))
    assert body.startswith(
        DECL + b'<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">\n'
        b'<version who="sg">0.1(1)</version>\n<opaque is-for="sg">'
    )
    root = ET.fromstring(body)
    assert [child.tag for child in root] == ["version", "opaque", "auth"]
    auth = root.find("auth")
    assert auth is not None
    assert auth.get("id") == "main"
    assert [child.tag for child in auth] == ["title", "message", "form"]
    assert auth.findtext("title") == "Login"
    form = auth.find("form")
    assert form is not None
    assert form.attrib == {"method": "post", "action": "/auth"}
    inputs = [(i.get("type"), i.get("name"), i.get("label")) for i in form.iter("input")]
    assert inputs == [("text", "username", "Username:"), ("password", "password", "Password:")]
    assert form.find("select") is None


def test_auth_request_with_everything() -> None:
    form = login_form(
        auth_id="challenge",
        title="OTP",
        banner="Authorized use only",
        error="Bad password",
        action="/auth?x=1&y=2",
        inputs=(
            FormInput(type="password", name="secondary_password", label="Password2:"),
            FormInput(type="hidden", name="state", value="s1"),
        ),
        groups=(
            GroupOption(value="sales", label="Sales staff", selected=True),
            GroupOption(value="eng", label="Engineering"),
        ),
    )
    root = ET.fromstring(render_auth_request(form=form))
    assert root.find("opaque") is None
    auth = root.find("auth")
    assert auth is not None
    assert auth.get("id") == "challenge"
    assert [child.tag for child in auth] == ["title", "banner", "message", "error", "form"]
    error = auth.find("error")
    assert error is not None
    assert error.attrib == {"id": "88", "param1": "Bad password", "param2": ""}
    assert error.text == "Login failed: %s"
    form_el = auth.find("form")
    assert form_el is not None
    assert form_el.get("action") == "/auth?x=1&y=2"
    select = form_el.find("select")
    assert select is not None
    assert select.attrib == {"name": "group_list", "label": "GROUP:"}
    options = [(o.get("value"), o.text, o.get("selected")) for o in select.iter("option")]
    assert options == [("sales", "Sales staff", "true"), ("eng", "Engineering", None)]
    hidden = form_el.find("input[@type='hidden']")
    assert hidden is not None
    assert hidden.attrib == {"type": "hidden", "name": "state", "label": "", "value": "s1"}


def test_escaping_in_messages_banners_and_attributes() -> None:
    nasty = "<a href=\"x\">&amp; 'q'</a>\r\n\ttab"
    form = login_form(
        message=nasty,
        banner=nasty,
        title=nasty,
        error=nasty,
        inputs=(FormInput(type="text", name='n"<&', label=nasty, value=nasty),),
        groups=(GroupOption(value=nasty, label=nasty),),
    )
    body = render_auth_request(form=form)
    assert b'<a href="x">' not in body
    root = ET.fromstring(body)
    auth = root.find("auth")
    assert auth is not None
    for tag in ("title", "banner", "message"):
        assert auth.findtext(tag) == nasty
    error = auth.find("error")
    assert error is not None
    assert error.get("param1") == nasty
    field = auth.find("form/input")
    assert field is not None
    assert field.attrib == {"type": "text", "name": 'n"<&', "label": nasty, "value": nasty}
    option = auth.find("form/select/option")
    assert option is not None
    assert (option.get("value"), option.text) == (nasty, nasty)


def test_characters_xml_cannot_carry_are_replaced() -> None:
    body = render_auth_request(form=login_form(message="a\x00b\x1bc\ud800d"))
    auth = ET.fromstring(body).find("auth")
    assert auth is not None
    assert auth.findtext("message") == "a\ufffdb\ufffdc\ufffdd"


def test_rendered_output_is_utf8() -> None:
    body = render_auth_request(form=login_form(message="Grüße ☺"))
    assert "Grüße ☺".encode() in body


def test_opaque_round_trip_through_openconnect_style_reply() -> None:
    opaque = make_opaque("Zm9vYmFy-_.=+/~")
    rendered = ET.fromstring(render_auth_request(form=login_form(opaque=opaque)))
    echoed = rendered.find("opaque")
    assert echoed is not None
    # openconnect deep-copies the opaque into its reply (auth.c xmlpost_append_form_opts).
    reply = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply">'
        + ET.tostring(echoed)
        + b"<auth><username>alice</username></auth></config-auth>\n"
    )
    msg = parse_client_message_untrusted(reply, "application/xml")
    assert isinstance(msg, AuthReply)
    assert msg.opaque_context_id == "Zm9vYmFy-_.=+/~"
    # Echoing the parsed opaque back renders identically.
    again = render_auth_request(form=login_form(opaque=msg.opaque))
    assert again == render_auth_request(form=login_form(opaque=opaque))


@pytest.mark.parametrize("context_id", ["", "a b", "<x>", "é", "x" * 129, 'a"b'])
def test_make_opaque_refuses_bad_context_ids(context_id: str) -> None:
    with pytest.raises(LocalProtocolError):
        make_opaque(context_id)


@pytest.mark.parametrize(
    "opaque",
    [
        None,
        b"<opaque/>",
        b'<opaque is-for="vpn-client"><aggauth-handle>x</aggauth-handle></opaque>',
        b'<opaque is-for="sg"><tunnel-group>x</tunnel-group></opaque>',
        b'<opaque is-for="sg"><aggauth-handle/></opaque>',
        b'<opaque is-for="sg"><aggauth-handle>a b</aggauth-handle></opaque>',
        b'<other is-for="sg"><aggauth-handle>x</aggauth-handle></other>',
        b"<opaque",
    ],
)
def test_opaque_context_id_is_none_unless_ours(opaque: bytes | None) -> None:
    assert AuthReply(opaque=opaque).opaque_context_id is None


def test_bad_opaque_in_form_is_a_caller_error() -> None:
    with pytest.raises(LocalProtocolError):
        render_auth_request(form=login_form(opaque=b"<script/>"))
    with pytest.raises(LocalProtocolError):
        render_auth_request(form=login_form(opaque=b"<opaque>\xff</opaque>"))


def test_bad_form_input_is_a_caller_error() -> None:
    with pytest.raises(LocalProtocolError):
        FormInput(type="submit", name="x")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        FormInput(type="text", name="")


def test_form_input_value_not_in_repr() -> None:
    assert "s3cr3t" not in repr(FormInput(type="hidden", name="state", value="s3cr3t"))


def test_complete_shape() -> None:
    body = render_complete(
        session_token="TOK+/=",
        session_id="7",
        banner="Welcome <user>",
        server_cert_hash="A" * 40,
    )
    assert body.startswith(DECL)
    assert b'<auth id="success">' in body
    assert b"<session-token>TOK+/=</session-token>" in body
    root = ET.fromstring(body)
    assert root.attrib == {"client": "vpn", "type": "complete", "aggregate-auth-version": "2"}
    assert root.findtext("session-id") == "7"
    assert root.findtext("session-token") == "TOK+/="
    auth = root.find("auth")
    assert auth is not None
    assert auth.get("id") == "success"
    assert auth.findtext("title") == "SSL VPN Service"
    assert auth.findtext("banner") == "Welcome <user>"
    assert root.findtext("capabilities/crypto-supported") == "ssl-dhe"
    config = root.find("config")
    assert config is not None
    assert config.attrib == {"client": "vpn", "type": "private"}
    assert config.findtext("vpn-base-config/server-cert-hash") == "A" * 40
    opaque = config.find("opaque")
    assert opaque is not None
    assert opaque.get("is-for") == "vpn-client"
    assert config.find("vpn-profile-manifest") is None


def test_complete_without_banner_and_with_profile() -> None:
    body = render_complete(
        session_token="t",
        session_id="1",
        banner=None,
        server_cert_hash="AB",
        manifest=[("user", "/profiles/corp.xml", "CD" * 20)],
    )
    root = ET.fromstring(body)
    assert root.find("auth/banner") is None
    file_el = root.find("config/vpn-profile-manifest/vpn/file")
    assert file_el is not None
    assert file_el.attrib == {"type": "profile", "service-type": "user"}
    assert file_el.findtext("uri") == "/profiles/corp.xml"
    assert file_el.findtext("hash") == "CD" * 20


def test_logout_complete() -> None:
    root = ET.fromstring(render_logout_complete())
    assert root.tag == "config-auth"
    assert root.get("type") == "complete"
    assert root.findtext("logout") == "success"


def test_legacy_form_has_no_config_auth_wrapper() -> None:
    body = render_legacy_form(login_form(opaque=make_opaque("ctx"), action="/"))
    assert body.startswith(DECL + b'<auth id="main">\n')
    assert b"config-auth" not in body
    assert b"opaque" not in body
    root = ET.fromstring(body)
    assert root.tag == "auth"
    form = root.find("form")
    assert form is not None
    assert form.attrib == {"method": "post", "action": "/"}
    assert [i.get("name") for i in form.iter("input")] == ["username", "password"]


def test_legacy_success() -> None:
    root = ET.fromstring(render_legacy_success())
    assert (root.tag, root.get("id")) == ("auth", "success")
    assert root.findtext("title") == "SSL VPN Service"
    assert root.find("banner") is None
    root = ET.fromstring(render_legacy_success(banner="Hi & bye"))
    assert root.findtext("banner") == "Hi & bye"
