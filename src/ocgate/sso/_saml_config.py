"""The SAML 2.0 service provider's configuration file (``auth = "saml[config=FILE]"``).

The file uses ocserv.conf's syntax (``key = value`` lines, ``#`` comments, read by
:func:`ocgate.config._lexer.tokenize`), so every error names ``FILE:LINE``. Keys::

    # Required: the identity provider's metadata, a file or an https:// URL fetched at load.
    idp-metadata = /etc/ocgate/idp-metadata.xml
    # The IdP's entityID, when the metadata describes more than one IdP.
    idp-entity-id = https://idp.example.com/saml2/idp/metadata.php
    # This gateway's SAML entityID (default: the SP metadata URL, BASE_URL/+CSCOE+/saml/metadata).
    sp-entity-id = https://vpn.example.com/saml
    # The SP key pair: signs AuthnRequests and LogoutRequests (RSA-SHA256). Both or neither.
    sp-key = /etc/ocgate/saml-sp.key
    sp-cert = /etc/ocgate/saml-sp.crt
    # Which signature the gateway requires: either (default), assertion, response or both.
    # There is no way to accept an unsigned response.
    require-signature = either
    # The user name: the NameID (default) or an attribute's first value.
    username-attribute = NameID
    # The attribute holding the user's groups (default: none; every user gets the default group).
    groups-attribute = http://schemas.microsoft.com/ws/2008/06/identity/claims/groups
    # IdP group value -> VPN group (repeatable). With at least one line, only mapped groups count.
    group-map = 5e1c3f36-0000-4000-8000-000000000001 -> engineering
    # Allowed clock difference with the IdP, in seconds (0-600, default 120).
    clock-skew = 120
    # Where the xmlsec1 binary is (default: found on PATH).
    xmlsec1 = /usr/bin/xmlsec1

Theory of operation: the file is read once, at configuration load, into a frozen
:class:`SamlConfig`; relative paths are resolved against the file's directory. Keys are checked
for form here; whether the metadata and key files make sense is checked when the provider is built
(:func:`ocgate.sso._saml.load_saml_provider`), which reports the key's line too.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ocgate.config._lexer import Assignment, tokenize
from ocgate.errors import ConfigError

__all__ = ["SIGNATURE_POLICIES", "SamlConfig", "load_saml_config"]

log = logging.getLogger("ocgate.sso.saml")

SIGNATURE_POLICIES = ("either", "assertion", "response", "both")
MAX_CLOCK_SKEW = 600
MAX_CONFIG_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class SamlConfig:
    """The parsed SAML configuration file. ``lines`` maps each key to its line, for errors."""

    source: str
    idp_metadata: str
    idp_entity_id: str | None = None
    sp_entity_id: str | None = None
    sp_key: str | None = None
    sp_cert: str | None = None
    require_signature: str = "either"
    username_attribute: str = "NameID"
    groups_attribute: str | None = None
    group_map: tuple[tuple[str, str], ...] = ()
    clock_skew: int = 120
    xmlsec1: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def idp_metadata_is_url(self) -> bool:
        return self.idp_metadata.startswith("https://")

    def error(self, key: str, message: str, expected: str | None = None) -> ConfigError:
        """A :class:`ConfigError` naming this file and the line of ``key``."""
        return ConfigError(
            message, file=self.source, line=self.lines.get(key), key=key, expected=expected
        )


def _path(base: str) -> Callable[[Assignment, str], str]:
    def parse(item: Assignment, source: str) -> str:
        if not item.value:
            raise ConfigError(
                "empty file name", file=source, line=item.line, key=item.key, expected="a file path"
            )
        return os.path.normpath(os.path.join(base, item.value))

    return parse


def _text(item: Assignment, source: str) -> str:
    if not item.value or any(ord(c) < 0x20 for c in item.value):
        raise ConfigError(
            "empty or not printable", file=source, line=item.line, key=item.key, expected="text"
        )
    return item.value


def _entity_id(item: Assignment, source: str) -> str:
    value = _text(item, source)
    if len(value) > 1024:
        raise ConfigError(
            "longer than 1024 characters",
            file=source,
            line=item.line,
            key=item.key,
            expected="a URI of at most 1024 characters (SAML core 8.3.6)",
        )
    return value


def _metadata(base: str) -> Callable[[Assignment, str], str]:
    def parse(item: Assignment, source: str) -> str:
        value = _text(item, source)
        if "://" in value:
            parts = urlsplit(value)
            if parts.scheme != "https" or not parts.hostname:
                raise ConfigError(
                    f"metadata URL must be https: {value!r}",
                    file=source,
                    line=item.line,
                    key=item.key,
                    expected="a file path or an https:// URL",
                )
            return value
        return _path(base)(item, source)

    return parse


def _policy(item: Assignment, source: str) -> str:
    if item.value not in SIGNATURE_POLICIES:
        raise ConfigError(
            f"unknown signature policy {item.value!r} (an unsigned response is never accepted)",
            file=source,
            line=item.line,
            key=item.key,
            expected=" | ".join(SIGNATURE_POLICIES),
        )
    return item.value


def _skew(item: Assignment, source: str) -> int:
    if not item.value.isdigit() or int(item.value) > MAX_CLOCK_SKEW:
        raise ConfigError(
            f"not a number of seconds from 0 to {MAX_CLOCK_SKEW}: {item.value!r}",
            file=source,
            line=item.line,
            key=item.key,
            expected=f"0-{MAX_CLOCK_SKEW}",
        )
    return int(item.value)


def _group_map(item: Assignment, source: str) -> tuple[str, str]:
    idp, sep, vpn = item.value.rpartition("->")
    idp, vpn = idp.strip(), vpn.strip()
    if not sep or not idp or not vpn or any(ord(c) < 0x20 for c in item.value):
        raise ConfigError(
            f"not a group mapping: {item.value!r}",
            file=source,
            line=item.line,
            key=item.key,
            expected="IDP-GROUP -> VPN-GROUP",
        )
    return idp, vpn


def _executable(item: Assignment, source: str) -> str:
    value = _text(item, source)
    if not os.path.isfile(value) or not os.access(value, os.X_OK):
        raise ConfigError(
            f"not an executable file: {value!r}",
            file=source,
            line=item.line,
            key=item.key,
            expected="the path of the xmlsec1 program (Debian package xmlsec1)",
        )
    return value


def _parsers(base: str) -> dict[str, Callable[[Assignment, str], object]]:
    return {
        "idp-metadata": _metadata(base),
        "idp-entity-id": _entity_id,
        "sp-entity-id": _entity_id,
        "sp-key": _path(base),
        "sp-cert": _path(base),
        "require-signature": _policy,
        "username-attribute": _text,
        "groups-attribute": _text,
        "group-map": _group_map,
        "clock-skew": _skew,
        "xmlsec1": _executable,
    }


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the SAML config: {exc.strerror}", file=path, key="auth"
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("file too large", file=path, expected=f"at most {MAX_CONFIG_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=path, expected="a UTF-8 text file") from None


def load_saml_config(path: str) -> SamlConfig:
    """Read and check the SAML configuration file at ``path``.

    :raises ConfigError: naming ``FILE:LINE``, the key and the expected form.
    """
    parsers = _parsers(os.path.dirname(os.path.abspath(path)))
    values: dict[str, object] = {}
    lines: dict[str, int] = {}
    group_map: list[tuple[str, str]] = []
    for item in tokenize(_read(path), source=path):
        if not isinstance(item, Assignment):
            raise ConfigError(
                "sections are not used here", file=path, line=item.line, expected="key = value"
            )
        parser = parsers.get(item.key)
        if parser is None:
            raise ConfigError(
                f"unknown key {item.key!r}",
                file=path,
                line=item.line,
                key=item.key,
                expected="one of " + ", ".join(parsers),
            )
        value = parser(item, path)
        if item.key == "group-map":
            group_map.append(value)  # type: ignore[arg-type]
        elif item.key in values:
            raise ConfigError(
                f"given twice (first on line {lines[item.key]})",
                file=path,
                line=item.line,
                key=item.key,
                expected="one line per key (only group-map repeats)",
            )
        values[item.key] = value
        lines.setdefault(item.key, item.line)
    return _build(path, values, lines, tuple(group_map))


def _build(
    path: str,
    values: dict[str, object],
    lines: dict[str, int],
    group_map: tuple[tuple[str, str], ...],
) -> SamlConfig:
    if "idp-metadata" not in values:
        raise ConfigError(
            "no idp-metadata",
            file=path,
            key="idp-metadata",
            expected="idp-metadata = FILE or https://URL of the IdP's SAML metadata",
        )
    if ("sp-key" in values) != ("sp-cert" in values):
        key = "sp-cert" if "sp-key" in values else "sp-key"
        raise ConfigError(
            "sp-key and sp-cert go together", file=path, key=key, expected="both lines or neither"
        )
    xmlsec1 = values.get("xmlsec1") or shutil.which("xmlsec1")
    config = SamlConfig(
        source=path,
        idp_metadata=str(values["idp-metadata"]),
        idp_entity_id=_opt(values, "idp-entity-id"),
        sp_entity_id=_opt(values, "sp-entity-id"),
        sp_key=_opt(values, "sp-key"),
        sp_cert=_opt(values, "sp-cert"),
        require_signature=str(values.get("require-signature", "either")),
        username_attribute=str(values.get("username-attribute", "NameID")),
        groups_attribute=_opt(values, "groups-attribute"),
        group_map=group_map,
        clock_skew=int(values.get("clock-skew", 120)),  # type: ignore[call-overload]
        xmlsec1=str(xmlsec1) if xmlsec1 else None,
        lines=lines,
    )
    if config.xmlsec1 is None:
        raise config.error(
            "xmlsec1",
            "the xmlsec1 program is not installed (SAML signatures are checked with it)",
            "apt-get install xmlsec1, or xmlsec1 = PATH",
        )
    if config.groups_attribute is not None and not group_map:
        log.warning("event=saml-config file=%s reason='no group-map: every group the IdP sends "
                    "is taken as a VPN group name (one a user can create there could name a "
                    "config-per-group file)'", path)  # fmt: skip
    return config


def _opt(values: dict[str, object], key: str) -> str | None:
    value = values.get(key)
    return None if value is None else str(value)
