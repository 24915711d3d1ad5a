"""Parsing of client AggAuth bodies: XML ``config-auth`` and legacy urlencoded forms.

Theory of operation:

- The body format is sniffed like ocserv does (``src/worker-auth.c``): a body that starts with
  ``<`` (after an optional BOM and whitespace) is XML, anything else is urlencoded (reference
  §2.5). The Content-Type header is not trusted for this: clients label bodies loosely, and ocserv
  ignores it too. An empty body is a GET-like start and reads as an all-``None`` InitRequest.
- XML goes through :func:`ocgate.aggauth._xml.parse_xml_untrusted` (size, UTF-8, no DTD or
  entities, depth).
- Every string taken from the peer is length-capped in UTF-8 bytes and refused, never truncated,
  when longer: usernames and groups at 64 bytes (ocserv ``MAX_USERNAME_SIZE``), passwords at 256
  (ocserv ``MAX_PASSWORD_SIZE``). NUL is refused everywhere, and control characters in names.
- Only :class:`ocgate.errors.BadAuthXml` escapes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from types import MappingProxyType
from urllib.parse import parse_qsl

from ocgate.aggauth._messages import (
    AuthReply,
    ClientMessage,
    DeviceId,
    InitRequest,
    LogoutRequest,
)
from ocgate.aggauth._xml import MAX_BODY_BYTES, parse_xml_untrusted
from ocgate.errors import BadAuthXml

__all__ = ["parse_client_message_untrusted"]

# Caps in UTF-8 bytes (ocserv src/vpn.h: MAX_USERNAME_SIZE 64, MAX_PASSWORD_SIZE 256).
MAX_USERNAME_BYTES = 64
MAX_GROUP_BYTES = 64
MAX_PASSWORD_BYTES = 256
MAX_FIELD_BYTES = 1024
MAX_FIELD_NAME_BYTES = 64
MAX_FIELDS = 64
MAX_VERSION_BYTES = 128
MAX_DEVICE_ID_BYTES = 128
MAX_GROUP_ACCESS_BYTES = 2048
MAX_SESSION_TOKEN_BYTES = 256
MAX_OPAQUE_BYTES = 16 * 1024

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_ROOT_TAG = "config-auth"
_PASSWORD_SUFFIX = "password"
_SECONDARY_PASSWORD = "secondary_password"


def _checked(value: str, what: str, cap: int, *, name_like: bool = False) -> str:
    """Return ``value`` if it fits ``cap`` UTF-8 bytes and holds no forbidden characters."""
    if len(value.encode("utf-8", "surrogatepass")) > cap:
        raise BadAuthXml(f"{what} longer than {cap} bytes")
    if "\x00" in value:
        raise BadAuthXml(f"{what} contains NUL")
    if name_like and _CONTROL_RE.search(value):
        raise BadAuthXml(f"{what} contains control characters")
    return value


def _maybe(value: str | None, what: str, cap: int, *, name_like: bool = False) -> str | None:
    return None if value is None else _checked(value, what, cap, name_like=name_like)


def _child_text(parent: ET.Element, tag: str) -> str | None:
    """Text of the first direct child ``tag``: ``None`` if absent, ``""`` if empty."""
    child = parent.find(tag)
    if child is None:
        return None
    return child.text or ""


def _stripped(value: str | None) -> str | None:
    return None if value is None else value.strip()


# -- XML ----------


_DEVICE_ATTRIBUTES = (
    ("computer-name", "computer_name"),
    ("device-type", "device_type"),
    ("platform-version", "platform_version"),
    ("unique-id", "unique_id"),
    ("unique-id-global", "unique_id_global"),
)


def device_claim(value: str | None) -> str:
    """A device claim as kept (from the XML or a header): stripped, or empty when over
    :data:`MAX_DEVICE_ID_BYTES` or holding control characters (a login is not refused for what it
    says about the machine, only that part is not kept)."""
    value = (value or "").strip()
    if len(value.encode("utf-8", "surrogatepass")) > MAX_DEVICE_ID_BYTES or _CONTROL_RE.search(
        value
    ):
        return ""
    return value


def _parse_device(root: ET.Element) -> DeviceId | None:
    """``<device-id attr="…">text</device-id>`` (Cisco Secure Client's attributes)."""
    element = root.find("device-id")
    if element is None:
        return None
    values = {field: device_claim(element.get(name)) for name, field in _DEVICE_ATTRIBUTES}
    return DeviceId(platform=device_claim(element.text), **values)


def _parse_init(root: ET.Element) -> InitRequest:
    return InitRequest(
        version=_maybe(_stripped(_child_text(root, "version")), "version", MAX_VERSION_BYTES),
        device_id=_maybe(
            _stripped(_child_text(root, "device-id")), "device-id", MAX_DEVICE_ID_BYTES
        ),
        device=_parse_device(root),
        group_access=_maybe(
            _stripped(_child_text(root, "group-access")), "group-access", MAX_GROUP_ACCESS_BYTES
        ),
        group_select=_maybe(
            _child_text(root, "group-select"), "group-select", MAX_GROUP_BYTES, name_like=True
        ),
        client_cert_fail=root.find("client-cert-fail") is not None,
        capabilities=_capabilities(root),
    )


def _capabilities(root: ET.Element) -> tuple[str, ...]:
    """``<capabilities><auth-method>`` texts (at most :data:`MAX_FIELDS`, names only)."""
    element = root.find("capabilities")
    if element is None:
        return ()
    methods = [child.text or "" for child in element.findall("auth-method")][:MAX_FIELDS]
    return tuple(
        _checked(m.strip(), "auth-method", MAX_FIELD_NAME_BYTES, name_like=True) for m in methods
    )


def _auth_fields(root: ET.Element) -> dict[str, str]:
    """Every child of ``<auth>`` by tag (first wins); an absent ``<auth>`` gives no fields."""
    auth = root.find("auth")
    fields: dict[str, str] = {}
    if auth is None:
        return fields
    children = list(auth)
    if len(children) > MAX_FIELDS:
        raise BadAuthXml(f"more than {MAX_FIELDS} fields in <auth>")
    for child in children:
        name = _checked(child.tag, "field name", MAX_FIELD_NAME_BYTES, name_like=True)
        fields.setdefault(name, child.text or "")
    return fields


def _serialize_opaque(root: ET.Element) -> bytes | None:
    opaque = root.find("opaque")
    if opaque is None:
        return None
    # The tail is the whitespace after </opaque>, which belongs to the parent, not the element.
    opaque.tail = None
    raw = ET.tostring(opaque, encoding="unicode").encode("utf-8")
    if len(raw) > MAX_OPAQUE_BYTES:
        raise BadAuthXml(f"<opaque> longer than {MAX_OPAQUE_BYTES} bytes")
    return raw


def _parse_auth_reply(root: ET.Element) -> AuthReply:
    return _auth_reply_from_fields(
        _auth_fields(root),
        group_select=_child_text(root, "group-select"),
        opaque=_serialize_opaque(root),
    )


def _parse_logout(root: ET.Element) -> LogoutRequest:
    token = _stripped(_child_text(root, "session-token"))
    return LogoutRequest(
        session_token=_maybe(token, "session-token", MAX_SESSION_TOKEN_BYTES, name_like=True)
    )


_XML_TYPES: Mapping[str, Callable[[ET.Element], ClientMessage]] = MappingProxyType(
    {"init": _parse_init, "auth-reply": _parse_auth_reply, "logout": _parse_logout}
)


def _parse_xml(body: bytes) -> ClientMessage:
    root = parse_xml_untrusted(body)
    if root.tag != _ROOT_TAG:
        raise BadAuthXml(f"root element is not <{_ROOT_TAG}>")
    msg_type = root.get("type")
    handler = _XML_TYPES.get(msg_type) if msg_type is not None else None
    if handler is None:
        raise BadAuthXml(f"unsupported config-auth type {msg_type!r}")
    return handler(root)


# -- Shared field mapping ----------


def _pick_password(fields: Mapping[str, str]) -> str | None:
    """``password``, else the first other ``…password`` field (ocserv reads any ``<…password>``)."""
    if "password" in fields:
        return fields["password"]
    for name, value in fields.items():
        if name.endswith(_PASSWORD_SUFFIX) and name != _SECONDARY_PASSWORD:
            return value
    return None


def _auth_reply_from_fields(
    fields: dict[str, str], *, group_select: str | None, opaque: bytes | None
) -> AuthReply:
    for name, value in fields.items():
        _checked(value, f"field {name!r}", MAX_FIELD_BYTES)
    secondary = fields.get(_SECONDARY_PASSWORD, fields.get("answer"))
    group = group_select if group_select is not None else fields.get("group_list")
    return AuthReply(
        username=_maybe(fields.get("username"), "username", MAX_USERNAME_BYTES, name_like=True),
        password=_maybe(_pick_password(fields), "password", MAX_PASSWORD_BYTES),
        secondary_password=_maybe(secondary, "secondary password", MAX_PASSWORD_BYTES),
        group_select=_maybe(group, "group", MAX_GROUP_BYTES, name_like=True),
        opaque=opaque,
        fields=MappingProxyType(fields),
    )


# -- Legacy urlencoded ----------


def _parse_urlencoded(text: str) -> AuthReply:
    """``username=…&password=…&group_list=…`` (§2.5); ``group%5flist`` decodes the same."""
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too.
        raise BadAuthXml(f"bad urlencoded body: {exc}") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        _checked(name, "field name", MAX_FIELD_NAME_BYTES, name_like=True)
        fields.setdefault(name, value)
    return _auth_reply_from_fields(fields, group_select=None, opaque=None)


# -- Entry point ----------


def parse_client_message_untrusted(body: bytes, content_type: str | None) -> ClientMessage:
    """Parse a client's POST body on the authentication paths.

    :param body: the request body as received.
    :param content_type: the request's Content-Type, if any. Accepted for the record only: the
        format is sniffed from the body like ocserv does (see the module docstring).
    :returns: an :class:`InitRequest`, :class:`AuthReply` or :class:`LogoutRequest`.
    :raises BadAuthXml: for anything unacceptable; no other exception escapes.
    """
    del content_type  # Sniffed from the body instead; see the module docstring.
    if len(body) > MAX_BODY_BYTES:
        raise BadAuthXml(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadAuthXml("body is not valid UTF-8") from exc
    head = text.lstrip("\ufeff \t\r\n")
    if not head:
        return InitRequest()
    if head.startswith("<"):
        return _parse_xml(body)
    return _parse_urlencoded(text)
