"""Parsing of client AggAuth bodies: vectors, urlencoded forms, and every refusal path."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ocgate.aggauth import (
    MAX_BODY_BYTES,
    AuthReply,
    DeviceId,
    InitRequest,
    LogoutRequest,
    make_opaque,
    parse_client_message_untrusted,
)
from ocgate.errors import BadAuthXml

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "aggauth"
XML_CT = "application/xml; charset=utf-8"
FORM_CT = "application/x-www-form-urlencoded"


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def parse(body: bytes, content_type: str | None = XML_CT) -> object:
    return parse_client_message_untrusted(body, content_type)


def config_auth(inner: str, *, msg_type: str = "auth-reply") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<config-auth client="vpn" type="{msg_type}" aggregate-auth-version="2">'
        f"{inner}</config-auth>\n"
    ).encode()


# -- Vectors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in VECTORS.glob("*.xml")))
def test_xml_vectors_are_well_formed(name: str) -> None:
    assert ET.fromstring(vector(name)).tag == "config-auth"


def test_openconnect_init() -> None:
    msg = parse(vector("openconnect-9.01-init.xml"))
    assert msg == InitRequest(
        version="v9.01-3",
        device_id="linux-64",
        device=DeviceId(platform="linux-64"),
        group_access="https://vpn.example.com/",
        group_select=None,
        client_cert_fail=False,
        capabilities=("single-sign-on-v2", "single-sign-on-external-browser"),
    )


def test_openconnect_second_init_with_group_select() -> None:
    msg = parse(vector("openconnect-9.01-init-group-select.xml"))
    assert isinstance(msg, InitRequest)
    assert msg.group_select == "grpA"


def test_openconnect_auth_reply() -> None:
    msg = parse(vector("openconnect-9.01-auth-reply.xml"))
    assert isinstance(msg, AuthReply)
    assert msg.username == "alice"
    assert msg.password == "secret"
    assert msg.secondary_password is None
    assert msg.group_select == "grpA"
    assert msg.opaque == make_opaque("ctx-7f3a")
    assert msg.opaque_context_id == "ctx-7f3a"
    assert dict(msg.fields) == {"username": "alice", "password": "secret"}


def test_openconnect_challenge_reply() -> None:
    msg = parse(vector("openconnect-9.01-auth-reply-challenge.xml"))
    assert isinstance(msg, AuthReply)
    assert msg.username is None
    assert msg.password is None
    assert msg.secondary_password == "274539"
    assert msg.opaque_context_id == "ctx-7f3a"


def test_asa_opaque_is_kept_verbatim_but_is_not_ours() -> None:
    msg = parse(vector("asa-opaque-auth-reply.xml"))
    assert isinstance(msg, AuthReply)
    assert msg.opaque is not None
    opaque = ET.fromstring(msg.opaque)
    assert opaque.findtext("tunnel-group") == "grpA"
    assert msg.opaque.endswith(b"</opaque>")  # The tail after </opaque> is not part of it.
    # 168422659 has the shape of a context id: the caller must look it up, not trust it.
    assert msg.opaque_context_id == "168422659"


def test_cisco_logout() -> None:
    msg = parse(vector("cisco-logout.xml"))
    assert isinstance(msg, LogoutRequest)
    assert msg.session_token == "hVo2x9WwA3Lk5fJ0aZC1rV2tTgJQ6mOqKx7w8yP3sE4="
    assert "hVo2" not in repr(msg)


def test_legacy_urlencoded_vector() -> None:
    msg = parse(vector("legacy-urlencoded.txt"), FORM_CT)
    assert msg == AuthReply(
        username="alice",
        password="s&cret=1",
        group_select="grpA",
        fields={"username": "alice", "password": "s&cret=1", "group_list": "grpA"},
    )
    assert isinstance(msg, AuthReply)
    assert msg.opaque is None


# -- XML field mapping ---------------------------------------------------------------------------


def test_any_password_element_is_the_password() -> None:
    msg = parse(config_auth("<auth><username>u</username><new_password>np</new_password></auth>"))
    assert isinstance(msg, AuthReply)
    assert msg.password == "np"


def test_exact_password_wins_over_other_password_elements() -> None:
    body = config_auth("<auth><verify_password>v</verify_password><password>p</password></auth>")
    msg = parse(body)
    assert isinstance(msg, AuthReply)
    assert msg.password == "p"


def test_secondary_password_is_not_the_password() -> None:
    msg = parse(config_auth("<auth><secondary_password>123456</secondary_password></auth>"))
    assert isinstance(msg, AuthReply)
    assert msg.password is None
    assert msg.secondary_password == "123456"


def test_asa_answer_is_the_secondary_password() -> None:
    msg = parse(config_auth("<auth><answer>42</answer></auth>"))
    assert isinstance(msg, AuthReply)
    assert msg.secondary_password == "42"


def test_group_list_inside_auth_is_a_group_select() -> None:
    msg = parse(config_auth("<auth><group_list>eng</group_list></auth>"))
    assert isinstance(msg, AuthReply)
    assert msg.group_select == "eng"


def test_group_select_outside_auth_wins() -> None:
    body = config_auth("<auth><group_list>eng</group_list></auth><group-select>ops</group-select>")
    msg = parse(body)
    assert isinstance(msg, AuthReply)
    assert msg.group_select == "ops"


def test_empty_elements_are_empty_strings_and_passwords_are_not_stripped() -> None:
    msg = parse(config_auth("<auth><username/><password>  pw  </password></auth>"))
    assert isinstance(msg, AuthReply)
    assert msg.username == ""
    assert msg.password == "  pw  "


def test_first_duplicate_field_wins() -> None:
    msg = parse(config_auth("<auth><username>alice</username><username>bob</username></auth>"))
    assert isinstance(msg, AuthReply)
    assert msg.username == "alice"
    assert msg.fields["username"] == "alice"


def test_auth_reply_without_auth_has_no_fields() -> None:
    msg = parse(config_auth("<group-select>g</group-select>"))
    assert msg == AuthReply(group_select="g")


def test_entities_and_cdata_are_decoded() -> None:
    body = config_auth("<auth><password>a&amp;b&lt;&#x263A;<![CDATA[<x>]]></password></auth>")
    msg = parse(body)
    assert isinstance(msg, AuthReply)
    assert msg.password == "a&b<\u263a<x>"


def test_secrets_are_not_in_repr() -> None:
    msg = parse(config_auth("<auth><username>u</username><password>hunter2</password></auth>"))
    assert "hunter2" not in repr(msg)
    msg = parse(config_auth("<auth><secondary_password>987654</secondary_password></auth>"))
    assert "987654" not in repr(msg)


def test_auth_reply_is_hashable_and_fields_are_read_only() -> None:
    msg = parse(config_auth("<auth><username>u</username></auth>"))
    assert isinstance(msg, AuthReply)
    hash(msg)
    with pytest.raises(TypeError):
        msg.fields["username"] = "x"  # type: ignore[index]


def test_init_with_client_cert_fail_and_mobile_device_id() -> None:
    body = config_auth(
        '<version who="vpn"> 4.10.05095 </version>'
        '<device-id platform-version="14" device-type="Pixel" unique-id="AB">android</device-id>'
        "<group-access>https://vpn.example.com/sales</group-access><client-cert-fail/>",
        msg_type="init",
    )
    msg = parse(body)
    assert msg == InitRequest(
        version="4.10.05095",
        device_id="android",
        device=DeviceId(
            platform="android", platform_version="14", device_type="Pixel", unique_id="AB"
        ),
        group_access="https://vpn.example.com/sales",
        client_cert_fail=True,
    )


def test_cisco_device_id_attributes_are_kept_and_bad_ones_dropped() -> None:
    # Cisco Secure Client 5.1 on Windows (attribute set from ASA login captures, cisco-headend.md).
    body = config_auth(
        '<device-id computer-name="LAPTOP-7" device-type="VMware, Inc. VMware7,1" '
        'platform-version="10.0.19045  #1" unique-id="9F1C" unique-id-global="E2B0">'
        "win</device-id>",
        msg_type="init",
    )
    msg = parse(body)
    assert isinstance(msg, InitRequest)
    assert msg.device == DeviceId(
        platform="win",
        computer_name="LAPTOP-7",
        device_type="VMware, Inc. VMware7,1",
        platform_version="10.0.19045  #1",
        unique_id="9F1C",
        unique_id_global="E2B0",
    )
    odd = config_auth(
        '<device-id computer-name="a&#10;b" unique-id="' + "F" * 200 + '">linux-64</device-id>',
        msg_type="init",
    )
    msg = parse(odd)
    assert isinstance(msg, InitRequest)
    assert msg.device == DeviceId(platform="linux-64")  # a login is not refused for them


def test_xml_without_declaration_and_with_bom_and_whitespace() -> None:
    body = b"\xef\xbb\xbf \n" + config_auth("", msg_type="init").split(b"\n", 1)[1]
    assert parse(body) == InitRequest()


def test_declared_foreign_encoding_is_read_as_utf8() -> None:
    body = config_auth("<auth><username>j\xf6rg</username></auth>").replace(
        b'encoding="UTF-8"', b'encoding="ISO-8859-1"'
    )
    msg = parse(body)
    assert isinstance(msg, AuthReply)
    assert msg.username == "j\xf6rg"


def test_logout_without_token() -> None:
    assert parse(config_auth("", msg_type="logout")) == LogoutRequest(session_token=None)


def test_content_type_does_not_override_sniffing() -> None:
    # An XML body labelled as a form is still XML (ocserv sniffs the body too).
    msg = parse(vector("openconnect-9.01-init.xml"), FORM_CT)
    assert isinstance(msg, InitRequest)
    # And a form labelled as XML is still a form.
    msg = parse(b"username=u&password=p", XML_CT)
    assert isinstance(msg, AuthReply)
    assert msg.username == "u"


# -- Non-XML bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"  \r\n", b"\xef\xbb\xbf"])
def test_empty_body_is_a_bare_init(body: bytes) -> None:
    assert parse(body, None) == InitRequest()


def test_urlencoded_secondary_and_answer() -> None:
    msg = parse(b"secondary_password=111111", FORM_CT)
    assert isinstance(msg, AuthReply)
    assert msg.secondary_password == "111111"
    msg = parse(b"answer=222222", FORM_CT)
    assert isinstance(msg, AuthReply)
    assert msg.secondary_password == "222222"


def test_urlencoded_plus_and_utf8() -> None:
    msg = parse(b"username=j%C3%B6rg&password=a+b&group_list=", FORM_CT)
    assert isinstance(msg, AuthReply)
    assert msg.username == "j\xf6rg"
    assert msg.password == "a b"
    assert msg.group_select == ""


def test_urlencoded_without_fields() -> None:
    msg = parse(b"&&", FORM_CT)
    assert msg == AuthReply()


# -- Refusals ------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<config-auth client="vpn" type="auth-reply"><auth><username>&lol4;</username></auth></config-auth>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE config-auth [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<config-auth client="vpn" type="auth-reply"><auth><username>&xxe;</username></auth></config-auth>
"""

BAD_BODIES = {
    "billion-laughs": BILLION_LAUGHS,
    "external-entity": EXTERNAL_ENTITY,
    "doctype-only": b'<!DOCTYPE config-auth><config-auth type="init"/>',
    "doctype-system": b'<!DOCTYPE config-auth SYSTEM "http://x/y.dtd"><config-auth type="init"/>',
    "undefined-entity": config_auth("<auth><username>&foo;</username></auth>"),
    "invalid-utf8-xml": config_auth("<auth><username>x</username></auth>").replace(b"x<", b"\xff<"),
    "invalid-utf8-form": b"username=\xc3\x28",
    "invalid-utf8-percent": b"username=%C3%28",
    "utf16": '<config-auth type="init"/>'.encode("utf-16"),
    "wrong-root": b'<auth type="init"><username>u</username></auth>',
    "namespaced-root": b'<config-auth xmlns="urn:x" type="init"/>',
    "unknown-type": config_auth("", msg_type="complete"),
    "no-type": b'<config-auth client="vpn"/>',
    "malformed": b'<config-auth type="init"><version>',
    "two-roots": b'<config-auth type="init"/><config-auth type="init"/>',
    "too-deep": config_auth("<a>" * 40 + "</a>" * 40),
    "username-too-long": config_auth(f"<auth><username>{'u' * 65}</username></auth>"),
    "username-too-long-utf8": config_auth("<auth><username>" + "\xe9" * 33 + "</username></auth>"),
    "username-control": config_auth("<auth><username>a&#10;b</username></auth>"),
    "username-nul-form": b"username=a%00b",
    "password-too-long": config_auth(f"<auth><password>{'p' * 257}</password></auth>"),
    "password-nul-form": b"password=a%00",
    "secondary-too-long": config_auth(f"<auth><answer>{'1' * 257}</answer></auth>"),
    "group-too-long": config_auth(f"<group-select>{'g' * 65}</group-select>"),
    "group-list-too-long-form": ("group_list=" + "g" * 65).encode(),
    "init-group-too-long": config_auth(f"<group-select>{'g' * 65}</group-select>", msg_type="init"),
    "field-too-long": config_auth(f"<auth><x>{'x' * 1025}</x></auth>"),
    "field-name-too-long": config_auth(f"<auth><{'n' * 65}>x</{'n' * 65}></auth>"),
    "too-many-fields": config_auth("<auth>" + "<f/>" * 65 + "</auth>"),
    "too-many-form-fields": b"&".join([b"a=1"] * 65),
    "form-field-name-control": b"a%0Ab=1",
    "version-too-long": config_auth(f"<version>{'v' * 129}</version>", msg_type="init"),
    "token-too-long": config_auth(f"<session-token>{'t' * 257}</session-token>", msg_type="logout"),
    "token-control": config_auth("<session-token>a&#9;b</session-token>", msg_type="logout"),
    "opaque-too-long": config_auth(f'<opaque is-for="sg">{"o" * 17000}</opaque>'),
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_refused(body: bytes) -> None:
    with pytest.raises(BadAuthXml):
        parse(body)


def test_too_many_elements() -> None:
    with pytest.raises(BadAuthXml, match="elements"):
        parse(config_auth("<x>" + "<y/>" * 5000 + "</x>"))


def test_one_megabyte_body_is_refused() -> None:
    body = config_auth("<auth><username>" + "u" * (1024 * 1024) + "</username></auth>")
    with pytest.raises(BadAuthXml, match="exceeds"):
        parse(body)


def test_largest_body_is_accepted() -> None:
    filler = "<x/>" * 100
    body = config_auth(f"<padding>{filler}</padding>", msg_type="init")
    body = body + b" " * (MAX_BODY_BYTES - len(body))
    assert len(body) == MAX_BODY_BYTES
    assert isinstance(parse(body), InitRequest)
    with pytest.raises(BadAuthXml):
        parse(body + b" ")


def test_ten_megabytes_of_nesting_is_refused_quickly() -> None:
    body = b"<a>" * (10 * 1024 * 1024 // 3)
    start = time.perf_counter()
    with pytest.raises(BadAuthXml):
        parse(body)
    assert time.perf_counter() - start < 1.0


def test_nesting_within_the_size_limit_stops_at_the_depth_limit_quickly() -> None:
    body = b'<config-auth type="init">' + b"<a>" * (MAX_BODY_BYTES // 3 - 10)
    start = time.perf_counter()
    with pytest.raises(BadAuthXml, match="deeper"):
        parse(body)
    assert time.perf_counter() - start < 0.5


def test_depth_32_is_accepted() -> None:
    body = config_auth("<a>" * 31 + "</a>" * 31, msg_type="init")
    assert parse(body) == InitRequest()


def test_limits_at_their_edges_are_accepted() -> None:
    body = config_auth(
        f"<auth><username>{'u' * 64}</username><password>{'p' * 256}</password></auth>"
        f"<group-select>{'g' * 64}</group-select>"
    )
    msg = parse(body)
    assert isinstance(msg, AuthReply)
    assert msg.username == "u" * 64
    assert msg.password == "p" * 256
    assert msg.group_select == "g" * 64
