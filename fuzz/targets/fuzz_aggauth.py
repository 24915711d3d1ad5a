"""AggAuth bodies: ``parse_client_message_untrusted``, ``parse_xml_untrusted`` (``BadAuthXml``).

Input: one selector byte (bit 0: call ``parse_xml_untrusted`` directly; bits 1-2: the
Content-Type passed along), then the POST body.

Oracle: the result is one of the three messages; every peer string respects its cap and holds
no NUL; ``opaque_context_id`` never raises; a reply's ``<opaque>`` echoed into our next form
(as the login dialog may) and the peer's user name rendered back as a form value still make a
well-formed document that parses to the same opaque element.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.aggauth import (
        AuthReply,
        FormInput,
        InitRequest,
        LoginForm,
        LogoutRequest,
        parse_client_message_untrusted,
        render_auth_request,
    )
    from ocgate.aggauth._xml import parse_xml_untrusted
    from ocgate.errors import BadAuthXml

_CONTENT_TYPES = (None, "application/xml", "application/x-www-form-urlencoded", "text/plain")


def _utf8(value: str | None) -> int:
    return 0 if value is None else len(value.encode("utf-8", "surrogatepass"))


def _check_reply(reply: AuthReply) -> None:
    assert _utf8(reply.username) <= 64
    assert _utf8(reply.group_select) <= 64
    assert _utf8(reply.password) <= 256
    assert _utf8(reply.secondary_password) <= 256
    for value in (reply.username, reply.password, reply.secondary_password, reply.group_select):
        assert value is None or "\x00" not in value
    context = reply.opaque_context_id
    assert context is None or 1 <= len(context) <= 128
    form = LoginForm(
        message="Please enter your username and password.",
        opaque=reply.opaque,
        inputs=(FormInput(type="text", name="username", label="Username:", value=reply.username),),
    )
    document = parse_xml_untrusted(render_auth_request(form=form))
    assert document.tag == "config-auth"
    if reply.opaque is not None:
        echoed = document.find("opaque")
        assert echoed is not None, "the echoed opaque element went missing"
        echoed.tail = None
        again = ET.tostring(echoed, encoding="unicode").encode("utf-8")
        assert again == reply.opaque, "the echoed opaque element changed"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    try:
        if selector & 1:
            parse_xml_untrusted(body)
            return
        message = parse_client_message_untrusted(body, _CONTENT_TYPES[selector >> 1 & 3])
    except BadAuthXml:
        return
    assert isinstance(message, InitRequest | AuthReply | LogoutRequest)
    if isinstance(message, AuthReply):
        _check_reply(message)
    elif isinstance(message, LogoutRequest):
        assert _utf8(message.session_token) <= 256
    else:
        assert _utf8(message.group_select) <= 64


def seeds() -> list[bytes]:
    """The openconnect 9.01 and Cisco client bodies of tests/vectors/aggauth."""
    out = []
    for path in sorted((_harness.VECTORS / "aggauth").iterdir()):
        if path.suffix in (".xml", ".txt"):
            body = path.read_bytes()
            out += [b"\x02" + body, b"\x01" + body]
    return out


if __name__ == "__main__":
    _harness.main(test_one_input)
