"""The first, unverified look at a ``SAMLResponse``, and the time values of SAML documents.

Theory of operation: :func:`peek_response_untrusted` decodes and parses the POSTed response
(defusedxml: no DTD, no entities) before pysaml2 verifies anything, so a response for another
login or URL is refused with a clear message; :func:`_diagnose_untrusted` names the reason when
pysaml2 refuses without one. Neither ever accepts anything: acceptance is decided only on what
pysaml2 verified (:mod:`ocgate.sso._saml`).
"""

from __future__ import annotations

import binascii
import calendar
import xml.etree.ElementTree as ET
from datetime import datetime

import defusedxml
import defusedxml.ElementTree

from ocgate.errors import SsoError

__all__ = ["NOT_VALID", "peek_response_untrusted"]

NOT_VALID = "the SAML response is not valid"
_RESPONSE_TAG = "{urn:oasis:names:tc:SAML:2.0:protocol}Response"
_SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"


def _instant(value: str | None, what: str) -> float:
    """An ``xs:dateTime`` (SAML core 1.3.3: UTC) as seconds since the epoch."""
    if not value:
        raise SsoError(f"the SAML response has no {what}")
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            return float(calendar.timegm(parsed.timetuple())) + parsed.microsecond / 1e6
        return parsed.timestamp()
    except (ValueError, OverflowError):  # OverflowError: year 1 with a positive offset, say.
        raise SsoError(f"the SAML response's {what} is not a valid time") from None


def peek_response_untrusted(encoded: str) -> ET.Element:
    """The root element of a base64 ``SAMLResponse``, unverified.

    A first look before pysaml2 verifies anything, so a response for another login or URL gets
    a clear refusal; it never accepts (the checks after verification decide).

    :raises SsoError: not base64, not XML (no DTD, no entities: defusedxml), not a SAML Response.
    """
    try:
        xml = binascii.a2b_base64(encoded.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SsoError("the SAML response is not base64") from None
    try:
        root = defusedxml.ElementTree.fromstring(xml)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError, LookupError, RecursionError):
        # LookupError: an XML declaration naming an encoding Python does not know (fuzz_saml).
        raise SsoError("the SAML response is not well-formed XML") from None
    if root.tag != _RESPONSE_TAG:
        raise SsoError("the identity provider's reply is not a SAML Response")
    return root


def _diagnose_untrusted(root: ET.Element, sp_entity_id: str, now: float, skew: int) -> str | None:
    """Why pysaml2 refused without saying: the first assertion's times or audience, unverified.

    Only picks the message of a refusal that is already decided; it never accepts anything.
    """
    try:
        assertion = root.find(f"{{{_SAML_NS}}}Assertion")
        conditions = assertion.find(f"{{{_SAML_NS}}}Conditions") if assertion is not None else None
        if conditions is None:
            return None
        not_on_or_after = conditions.get("NotOnOrAfter")
        if not_on_or_after and now - skew >= _instant(not_on_or_after, "NotOnOrAfter"):
            return "the SAML assertion has expired"
        not_before = conditions.get("NotBefore")
        if not_before and now + skew < _instant(not_before, "NotBefore"):
            return "the SAML assertion is not valid yet (check the clocks)"
        audiences = [(a.text or "").strip() for a in conditions.iter(f"{{{_SAML_NS}}}Audience")]
        if audiences and sp_entity_id not in audiences:
            return "the SAML assertion is meant for another service (audience)"
    except SsoError as exc:
        return str(exc)
    return None
