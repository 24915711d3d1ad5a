"""A hardened XML reader for peer bytes.

Theory of operation: every XML body a client sends goes through :func:`parse_xml_untrusted`, which

1. refuses bodies over :data:`MAX_BODY_BYTES` before looking at them (the ocserv 1.4.2 limit,
   ocserv-compatibility §9);
2. refuses anything that is not strict UTF-8, and forces expat to read UTF-8 whatever the XML
   declaration says;
3. parses with defusedxml's expat parser with DTDs, entity declarations and external references
   forbidden (no ``<!DOCTYPE``, hence no "billion laughs" and no external entities);
4. counts depth and elements *while* expat streams start tags, so a deeply nested body is refused at
   element :data:`MAX_DEPTH` + 1 without building the rest of the tree.

It raises only :class:`ocgate.errors.BadAuthXml`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from ocgate.errors import BadAuthXml

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "MAX_ELEMENTS", "parse_xml_untrusted"]

#: Largest request body accepted (ocserv ``MAX_POST_SIZE`` since 1.4.2; reference §2.4).
MAX_BODY_BYTES = 256 * 1024
#: Deepest element nesting accepted; real bodies nest at most 4 levels.
MAX_DEPTH = 32
#: Most elements accepted in one body; real bodies hold a few dozen.
MAX_ELEMENTS = 4096


class _LimitExceeded(Exception):
    """Raised from inside the expat callbacks to stop parsing at once."""


class _LimitedTreeBuilder:
    """A TreeBuilder target that refuses too deep or too many elements as they arrive."""

    __slots__ = ("_builder", "_count", "_depth")

    def __init__(self) -> None:
        self._builder = ET.TreeBuilder()
        self._depth = 0
        self._count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        self._depth += 1
        self._count += 1
        if self._depth > MAX_DEPTH:
            raise _LimitExceeded(f"XML nested deeper than {MAX_DEPTH}")
        if self._count > MAX_ELEMENTS:
            raise _LimitExceeded(f"XML has more than {MAX_ELEMENTS} elements")
        return self._builder.start(tag, attrs)

    def end(self, tag: str) -> ET.Element:
        self._depth -= 1
        return self._builder.end(tag)

    def data(self, data: str) -> None:
        self._builder.data(data)

    def close(self) -> ET.Element:
        return self._builder.close()


def parse_xml_untrusted(body: bytes) -> ET.Element:
    """Parse a peer's XML document into its root element.

    :param body: the raw request body.
    :raises BadAuthXml: too large, not UTF-8, malformed, a DTD or entity, too deep or too many
        elements.
    """
    if len(body) > MAX_BODY_BYTES:
        raise BadAuthXml(f"XML body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadAuthXml("XML body is not valid UTF-8") from exc
    target = _LimitedTreeBuilder()
    # encoding= overrides the document's own declaration (expat ParserCreate semantics), so an
    # ``encoding="UTF-16"`` declaration cannot make expat reinterpret bytes we validated as UTF-8.
    parser = DefusedXMLParser(
        target=target,
        encoding="utf-8",
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        parser.feed(body)
        root = parser.close()
    except (ET.ParseError, DefusedXmlException, _LimitExceeded) as exc:
        raise BadAuthXml(f"unacceptable XML: {exc}") from exc
    if not isinstance(
        root, ET.Element
    ):  # pragma: no cover - TreeBuilder always returns an Element.
        raise BadAuthXml("XML body has no root element")
    return root
