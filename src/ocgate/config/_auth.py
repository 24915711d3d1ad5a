"""``auth`` / ``enable-auth`` values: ``NAME`` or ``NAME[key=value,key=value]``.

Theory of operation: the bracket options are parsed generically into :class:`AuthMethod` params,
so a new backend needs no parser change. Only three things are method-specific, following ocserv
``src/config.c`` (``avail_auth_types``) and the ``*_get_brackets_string`` functions of
``src/auth/*.c``: the legacy positional form (``plain[FILE]`` = ``passwd=FILE``,
``radius[FILE]`` = ``config=FILE``), which parameters are file names (resolved against the config
directory and required to exist), and which parameters are mandatory.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence

from ocgate.config._model import AuthMethod
from ocgate.config._values import ParseContext, parse_existing_file, parse_path, parse_uint
from ocgate.errors import ConfigError

__all__ = [
    "AUTH_METHODS",
    "MAX_AUTH_METHODS",
    "PASSWORD_METHODS",
    "check_auth",
    "parse_auth_method",
]

AUTH_METHODS = frozenset({"plain", "certificate", "pam", "radius", "gssapi", "oidc", "saml"})
"""Method names ocserv 1.5 knows (``avail_auth_types``), and ocgate's ``saml``."""

SSO_METHODS = frozenset({"oidc", "saml"})
"""Single sign-on methods (docs/SSO.md): at most one may be configured."""

PASSWORD_METHODS = frozenset({"plain", "pam", "radius"})
"""Methods of ocserv type ``AUTH_TYPE_USERNAME_PASS``: at most one may be configured."""

MAX_AUTH_METHODS = 4
"""ocserv ``MAX_AUTH_METHODS``."""

_LEGACY_PARAM = {"plain": "passwd", "radius": "config"}
_REQUIRED_PARAM = {"plain": "passwd", "radius": "config", "oidc": "config", "saml": "config"}
_EXISTING_FILE_PARAMS = frozenset({"passwd", "otp", "config"})
_PATH_PARAMS = frozenset({"keytab"})
_INTEGER_PARAMS = frozenset({"gid-min", "tgt-freshness-time"})

_SYNTAX = re.compile(r"([A-Za-z]+)\s*(?:\[(.*)\])?")
_EXPECTED = 'METHOD or METHOD[key=value,...], e.g. "plain[passwd=/etc/ocserv/ocpasswd]"'


def _split_params(name: str, inner: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(part.strip() for part in inner.split(",")):
        if not item:
            continue
        key, eq, val = item.partition("=")
        if not eq:
            if index == 0 and name in _LEGACY_PARAM:
                pairs.append((_LEGACY_PARAM[name], item))
                continue
            raise ConfigError(f"{name}: option without a value: {item!r}", expected=_EXPECTED)
        key, val = key.strip().lower(), val.strip()
        if not key or not val:
            raise ConfigError(f"{name}: empty option in {item!r}", expected=_EXPECTED)
        pairs.append((key, val))
    return pairs


def _convert(name: str, key: str, val: str, ctx: ParseContext) -> str:
    try:
        if key in _EXISTING_FILE_PARAMS:
            return parse_existing_file(val, ctx)
        if key in _PATH_PARAMS:
            return parse_path(val, ctx)
        if key in _INTEGER_PARAMS:
            return str(parse_uint(val, ctx))
    except ConfigError as exc:
        raise ConfigError(f"{name}[{key}]: {exc.message}", expected=exc.expected) from None
    if key == "base-url":
        parts = urllib.parse.urlsplit(val)
        if parts.scheme != "https" or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"{name}[base-url]: not an https://HOST[:PORT] URL: {val!r}",
                              expected="base-url=https://vpn.example.com")  # fmt: skip
        return f"https://{parts.netloc}"
    return val


def parse_auth_method(value: str, ctx: ParseContext) -> AuthMethod:
    """Parse one ``auth``/``enable-auth`` value.

    :param value: e.g. ``plain[passwd=./ocpasswd,otp=./users.otp]``, ``certificate`` or
        ``pam[gid-min=1000]``.
    :raises ConfigError: unknown method, malformed brackets, missing mandatory or missing file.
    """
    match = _SYNTAX.fullmatch(value)
    if match is None:
        raise ConfigError(f"not an authentication method: {value!r}", expected=_EXPECTED)
    name = match.group(1).lower()
    if name not in AUTH_METHODS:
        known = ", ".join(sorted(AUTH_METHODS))
        raise ConfigError(f"unknown authentication method: {name!r}", expected=f"one of {known}")
    params: dict[str, str] = {}
    for key, val in _split_params(name, match.group(2) or ""):
        if key in params:
            raise ConfigError(f"{name}: option {key!r} given twice", expected=_EXPECTED)
        params[key] = _convert(name, key, val, ctx)
    required = _REQUIRED_PARAM.get(name)
    if required is not None and required not in params:
        raise ConfigError(
            f"{name}: the {required!r} option is missing",
            expected=f'{name}[{required}=FILE], e.g. "{name}[{required}=/etc/ocserv/{required}]"',
        )
    return AuthMethod(name=name, params=params)


def check_auth(primary: Sequence[AuthMethod], alternatives: Sequence[AuthMethod]) -> None:
    """Check the combination rules of ocserv ``figure_auth_funcs``.

    ``auth`` lines are ANDed: among them at most one method other than ``certificate``. Over
    ``auth`` and ``enable-auth`` together there is at most one password method and at most
    :data:`MAX_AUTH_METHODS` entries.

    :raises ConfigError: naming the offending method (the caller adds the location).
    """
    non_certificate = [m.name for m in primary if m.name != "certificate"]
    if len(non_certificate) > 1:
        raise ConfigError(
            f"cannot combine {non_certificate[0]!r} and {non_certificate[1]!r} in 'auth'",
            expected="at most one method besides 'certificate' in the auth lines",
        )
    sso = [m.name for m in (*primary, *alternatives) if m.name in SSO_METHODS]
    if len(sso) > 1:
        raise ConfigError(
            f"cannot configure {sso[0]!r} and {sso[1]!r} together",
            expected="at most one of oidc and saml",
        )
    passwords = [m.name for m in (*primary, *alternatives) if m.name in PASSWORD_METHODS]
    if len(passwords) > 1:
        raise ConfigError(
            f"cannot mix password methods {passwords[0]!r} and {passwords[1]!r}",
            expected="at most one of plain, pam and radius",
        )
    if len(primary) + len(alternatives) > MAX_AUTH_METHODS:
        raise ConfigError(
            "too many authentication methods",
            expected=f"at most {MAX_AUTH_METHODS} auth and enable-auth lines together",
        )
