"""The hardened XML reader used for every peer body (also reached through AuthReply.opaque)."""

from __future__ import annotations

import pytest

from ocgate.aggauth._xml import MAX_BODY_BYTES, MAX_DEPTH, parse_xml_untrusted
from ocgate.errors import BadAuthXml


def test_parses_a_plain_document() -> None:
    root = parse_xml_untrusted(b'<a x="1">t<b/></a>')
    assert (root.tag, root.get("x"), root.text, [c.tag for c in root]) == ("a", "1", "t", ["b"])


def test_refuses_oversize_before_parsing() -> None:
    with pytest.raises(BadAuthXml, match="exceeds"):
        parse_xml_untrusted(b"<a/>" + b" " * MAX_BODY_BYTES)


def test_refuses_non_utf8() -> None:
    with pytest.raises(BadAuthXml, match="UTF-8"):
        parse_xml_untrusted(b"<a>\xe9</a>")


def test_depth_limit_is_exact() -> None:
    parse_xml_untrusted(b"<a>" * MAX_DEPTH + b"</a>" * MAX_DEPTH)
    with pytest.raises(BadAuthXml, match="deeper"):
        parse_xml_untrusted(b"<a>" * (MAX_DEPTH + 1) + b"</a>" * (MAX_DEPTH + 1))


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
        b'<!DOCTYPE a PUBLIC "-//x" "http://example.com/a.dtd"><a/>',
        b"<a>&e;</a>",
        b"",
    ],
)
def test_refuses_dtds_entities_and_empty(body: bytes) -> None:
    with pytest.raises(BadAuthXml):
        parse_xml_untrusted(body)
