"""Checks of everything an administrator's browser sends (request bodies and path parts).

Every ``*_untrusted`` function raises only :class:`~ocgate.errors.BadHttpRequest` (answered as
400 with its message). User names and groups follow the password file's rules
(:mod:`ocgate.passwd`: no ``:``, NUL or line breaks; groups of two characters or more, without
``,``) and are stricter where the console needs it: no control characters, no ``/`` (the name is
a path segment of the API), no ``#`` at the start (the file would read the line as a comment), no
surrounding spaces, and bounded lengths.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any, Final

from ocgate.errors import BadHttpRequest

__all__ = [
    "MAX_BODY_BYTES",
    "parse_body_untrusted",
    "parse_groups_untrusted",
    "parse_ip_untrusted",
    "parse_otp_untrusted",
    "parse_password_untrusted",
    "parse_session_id_untrusted",
    "parse_username_untrusted",
]

MAX_BODY_BYTES: Final = 16384
MAX_USERNAME: Final = 64
MAX_GROUP: Final = 64
MAX_GROUPS: Final = 32
MAX_PASSWORD: Final = 512
# Control characters include C1 and the Unicode line separators: str.splitlines() breaks on them.
_BAD_NAME_CHARS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029:/\\,]")
_BAD_GROUP_CHARS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029:,]")
_OTP: Final = re.compile(r"[0-9]{6,8}")
_ID: Final = re.compile(r"[0-9]{1,18}")


def parse_body_untrusted(raw: bytes, allowed: Iterable[str]) -> dict[str, Any]:
    """A JSON object body with only ``allowed`` keys."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadHttpRequest("request body too large", status_hint=413)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadHttpRequest("request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadHttpRequest("request body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadHttpRequest(f"unknown field {unknown[0]!r}")
    return body


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BadHttpRequest(f"{what}: expected a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadHttpRequest(f"{what}: not valid Unicode") from None
    return value


def parse_username_untrusted(value: object, what: str = "username") -> str:
    """A VPN or administrator user name."""
    name = _string(value, what)
    if not name:
        raise BadHttpRequest(f"{what}: must not be empty")
    if len(name) > MAX_USERNAME:
        raise BadHttpRequest(f"{what}: at most {MAX_USERNAME} characters")
    if _BAD_NAME_CHARS.search(name) or name != name.strip() or name.startswith("#"):
        raise BadHttpRequest(
            f"{what}: no ':', '/', '\\', ',', control characters, surrounding spaces or leading '#'"
        )
    if name in (".", ".."):
        raise BadHttpRequest(f"{what}: not a valid name")
    return name


def parse_groups_untrusted(value: object) -> tuple[str, ...]:
    """A list of group names (a JSON array of strings, or one comma-separated string)."""
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        items = list(value)
    else:
        raise BadHttpRequest("groups: expected a list of strings")
    if len(items) > MAX_GROUPS:
        raise BadHttpRequest(f"groups: at most {MAX_GROUPS}")
    groups: list[str] = []
    for item in items:
        group = _string(item, "groups")
        if len(group) < 2 or len(group) > MAX_GROUP:
            raise BadHttpRequest(f"groups: each name has 2 to {MAX_GROUP} characters")
        if _BAD_GROUP_CHARS.search(group) or group != group.strip():
            raise BadHttpRequest(
                "groups: no ':', ',', control characters or surrounding spaces in a name"
            )
        if group not in groups:
            groups.append(group)
    return tuple(groups)


def parse_password_untrusted(value: object, what: str = "password") -> str:
    """A new or presented password (never echoed in a message)."""
    password = _string(value, what)
    if not password:
        raise BadHttpRequest(f"{what}: must not be empty")
    if len(password) > MAX_PASSWORD:
        raise BadHttpRequest(f"{what}: at most {MAX_PASSWORD} characters")
    if "\x00" in password:
        raise BadHttpRequest(f"{what}: must not contain NUL")
    return password


def parse_otp_untrusted(value: object) -> str:
    """A TOTP code: 6 to 8 ASCII digits."""
    code = _string(value, "otp")
    if _OTP.fullmatch(code) is None:
        raise BadHttpRequest("otp: 6 to 8 digits")
    return code


def parse_session_id_untrusted(value: str) -> str:
    """A connection id of ``show users`` (decimal)."""
    if _ID.fullmatch(value) is None:
        raise BadHttpRequest("id: expected a decimal connection id")
    return str(int(value))


def parse_ip_untrusted(value: str) -> str:
    """An IPv4 or IPv6 address, in compressed form."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadHttpRequest("ip: not an IP address") from None
