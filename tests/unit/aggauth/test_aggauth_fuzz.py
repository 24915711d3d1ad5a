"""Hypothesis fuzzing: only BadAuthXml escapes the parser, and rendered text round-trips."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocgate.aggauth import (
    AuthReply,
    FormInput,
    InitRequest,
    LoginForm,
    LogoutRequest,
    parse_client_message_untrusted,
    render_auth_request,
)
from ocgate.errors import BadAuthXml

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "aggauth"
SEEDS = [p.read_bytes() for p in sorted(VECTORS.iterdir()) if p.suffix in {".xml", ".txt"}]
MESSAGES = (InitRequest, AuthReply, LogoutRequest)
CONTENT_TYPES = st.sampled_from(
    [None, "application/xml; charset=utf-8", "application/x-www-form-urlencoded", "text/plain"]
)


def check(body: bytes, content_type: str | None) -> None:
    try:
        msg = parse_client_message_untrusted(body, content_type)
    except BadAuthXml:
        return
    assert isinstance(msg, MESSAGES)
    if isinstance(msg, AuthReply):
        assert msg.opaque_context_id is None or isinstance(msg.opaque_context_id, str)


@given(st.binary(max_size=512), CONTENT_TYPES)
def test_random_bytes(body: bytes, content_type: str | None) -> None:
    check(body, content_type)


@st.composite
def mutated_vectors(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif data and pos < len(data):
            if op == "flip":
                data[pos] = draw(st.integers(min_value=0, max_value=255))
            else:
                del data[pos : pos + draw(st.integers(min_value=1, max_value=16))]
    return bytes(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mutated_vectors(), CONTENT_TYPES)
def test_mutated_vectors(body: bytes, content_type: str | None) -> None:
    check(body, content_type)


TAGS = st.sampled_from(
    [
        "config-auth",
        "auth",
        "username",
        "password",
        "secondary_password",
        "answer",
        "group-select",
        "group_list",
        "opaque",
        "aggauth-handle",
        "session-token",
        "version",
        "device-id",
        "group-access",
        "client-cert-fail",
        "x_password",
    ]
)
TEXT = st.text(max_size=80)
ATTRS = st.dictionaries(
    st.sampled_from(["type", "is-for", "client", "id"]),
    st.sampled_from(["init", "auth-reply", "logout", "sg", "vpn", "complete", "x"]),
    max_size=3,
)


def element(tag: str, attrs: dict[str, str], text: str, children: list[ET.Element]) -> ET.Element:
    el = ET.Element(tag, attrs)
    el.text = text
    el.extend(children)
    return el


trees = st.recursive(
    st.builds(element, TAGS, ATTRS, TEXT, st.just([])),
    lambda kids: st.builds(element, TAGS, ATTRS, TEXT, st.lists(kids, max_size=5)),
    max_leaves=30,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(trees, st.booleans())
def test_structured_xml(tree: ET.Element, declare: bool) -> None:
    body = ET.tostring(tree, encoding="unicode").encode("utf-8", "surrogatepass")
    if declare:
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + body
    check(body, "application/xml")


@given(
    st.dictionaries(
        st.sampled_from(["username", "password", "group_list", "answer", "x"]), TEXT, max_size=5
    )
)
def test_urlencoded(fields: dict[str, str]) -> None:
    from urllib.parse import urlencode

    check(urlencode(fields).encode(), "application/x-www-form-urlencoded")


# Text XML 1.0 can carry; anything else is replaced on purpose (tested separately).
XML_TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="".join(
            [chr(c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)] + ["\ufffe", "\uffff"]
        ),
    ),
    max_size=60,
)


@given(XML_TEXT, XML_TEXT, XML_TEXT, XML_TEXT)
def test_render_round_trips_text(message: str, banner: str, label: str, value: str) -> None:
    form = LoginForm(
        message=message,
        banner=banner,
        error=message,
        inputs=(FormInput(type="hidden", name="n", label=label, value=value),),
    )
    auth = ET.fromstring(render_auth_request(form=form)).find("auth")
    assert auth is not None
    assert (auth.findtext("message") or "") == message
    assert (auth.findtext("banner") or "") == banner
    error = auth.find("error")
    assert error is not None
    assert error.get("param1") == message
    field = auth.find("form/input")
    assert field is not None
    assert (field.get("label"), field.get("value")) == (label, value)
