"""The web console's request parsers (``ocgate.console._validate``): JSON bodies, user names,
groups, passwords, TOTP codes, connection ids and IP addresses (only ``BadHttpRequest``).

Input: a selector byte (modulo 7: which parser), then the raw bytes: a request body for
``parse_body_untrusted`` (whose fields then go through the field parsers, as the API does), a
JSON value for the field parsers, or a path segment for the id and address parsers.

Oracle: only ``BadHttpRequest`` with a 4xx status escapes; what parses is what the password file
can hold unchanged (a ``PasswdEntry`` accepts the name and groups), a body holds only the allowed
keys, a code is 6-8 digits, an id is decimal, an address is in its compressed form.
"""

from __future__ import annotations

import ipaddress
import json

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.console._validate import (
        parse_body_untrusted,
        parse_groups_untrusted,
        parse_ip_untrusted,
        parse_otp_untrusted,
        parse_password_untrusted,
        parse_session_id_untrusted,
        parse_username_untrusted,
    )
    from ocgate.errors import BadHttpRequest
    from ocgate.passwd import PasswdEntry

ALLOWED = ("username", "password", "groups", "otp")


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")


def _fields(body: dict[str, object]) -> None:
    name = parse_username_untrusted(body.get("username"))
    groups = parse_groups_untrusted(body.get("groups", []))
    PasswdEntry(username=name, groups=groups, hash="$5$x$y")
    if "password" in body:
        assert parse_password_untrusted(body["password"])
    if "otp" in body:
        assert parse_otp_untrusted(body["otp"]).isdigit()


def _one(selector: int, raw: bytes) -> None:
    kind = selector % 7
    if kind == 0:
        body = parse_body_untrusted(raw, ALLOWED)
        assert set(body) <= set(ALLOWED)
        _fields(body)
    elif kind == 1:
        name = parse_username_untrusted(_json(raw))
        PasswdEntry(username=name)
    elif kind == 2:
        PasswdEntry(username="u", groups=parse_groups_untrusted(_json(raw)))
    elif kind == 3:
        assert parse_password_untrusted(_json(raw))
    elif kind == 4:
        code = parse_otp_untrusted(_json(raw))
        assert code.isascii()
        assert code.isdigit()
        assert 6 <= len(code) <= 8
    elif kind == 5:
        assert parse_session_id_untrusted(raw.decode("utf-8", "replace")).isdigit()
    else:
        text = parse_ip_untrusted(raw.decode("utf-8", "replace"))
        assert str(ipaddress.ip_address(text)) == text


def test_one_input(data: bytes) -> None:
    if not data:
        return
    try:
        _one(data[0], data[1:])
    except BadHttpRequest as exc:
        status = exc.status_hint
    else:
        return
    assert 400 <= status < 500, status


def seeds() -> list[bytes]:
    """Bodies and values like the console's API tests (tests/unit/console) send."""
    return [
        b'\x00{"username": "bob", "password": "s3cret", "groups": ["eng", "ops"]}',
        b'\x00{"username": "root", "password": "pw", "otp": "123456"}',
        b'\x00{"username": "bob", "groups": "eng, ops"}',
        b'\x01"alice"',
        b'\x02["eng", "ops"]',
        b'\x03"correct horse"',
        b'\x04"12345678"',
        b"\x0542000001",
        b"\x06" + b"2001:db8::1",
        b"\x06" + b"192.0.2.7",
    ]


if __name__ == "__main__":
    _harness.main(test_one_input)
