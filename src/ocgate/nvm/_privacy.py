"""Privacy policy for NVM records, applied before anything is stored (nvm-ipfix.md §5).

Theory of operation
-------------------
A :class:`PrivacyPolicy` maps normalised field names to an :class:`Action`: keep, drop (set to
``None`` / empty) or hash (HMAC-SHA256 with the configured key, hex, truncated to 32 hex digits,
so equal inputs still join). Fields not named are kept. Configuration speaks in field *groups*
(:data:`FIELD_GROUPS`: user names, hostnames, process paths, process arguments, modules); process
arguments (and location coordinates) are dropped by default because they may carry secrets.

Sensitive elements that have no column of their own (image paths, command lines, coordinates,
undecoded raw nvzFlow ids) are found in ``extra`` / generic ``values`` by IE name and follow the
action of the field they resemble (:data:`EXTRA_ALIASES`). ``vpn_user`` is the gateway's own
record of who held the address and is never altered.

After the actions, every remaining string (including inside ``extra``) is matched against the
redaction patterns; matches become ``[redacted]``. With ``drop_private_destinations``, flows whose
destination is RFC 1918 or a unique local IPv6 address (RFC 4193) are dropped: ``apply`` returns
``None``. This module is pure (no I/O besides the injectable key-file reader of
:meth:`PrivacyPolicy.from_settings`, no clock).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ocgate.errors import ConfigError
from ocgate.nvm._records import (
    FIELD_MAP,
    EndpointRecord,
    FlowRecord,
    GenericRecord,
    InterfaceRecord,
    JsonValue,
    Module,
    Normalised,
)

__all__ = [
    "EXTRA_ALIASES",
    "FIELD_GROUPS",
    "PRIVACY_KEYS",
    "Action",
    "PrivacyPolicy",
    "parse_privacy_setting",
]

REDACTED: Final = "[redacted]"
_HASH_HEX_LEN: Final = 32
_MIN_KEY_LEN: Final = 16


class Action(enum.StrEnum):
    """What happens to one field before storage."""

    KEEP = "keep"
    DROP = "drop"
    HASH = "hash"


FIELD_GROUPS: Final[Mapping[str, tuple[str, ...]]] = {
    "user": (
        "user",
        "user_authority",
        "user_principal",
        "process_account",
        "parent_process_account",
    ),
    "hostname": ("dst_hostname", "dns_suffix", "station_name"),
    "process-path": ("process_path", "parent_process_path"),
    "process-args": ("process_args", "parent_process_args"),
    "modules": ("modules",),
    "coordinates": ("coordinates",),
}
"""Configuration group → normalised fields it governs."""

EXTRA_ALIASES: Final[Mapping[str, str]] = {
    "nvzFlowProcessImagePath": "process_path",  # 9:12383
    "nvzFlowParentProcessImagePath": "parent_process_path",  # 9:12384
    "nvzFlowProcessCommandLine": "process_args",  # 9:12385
    "nvzFlowParentProcessCommandLine": "parent_process_args",  # 9:12386
    "nvzFlowCoordinatesList": "coordinates",  # 9:12373
    "nvzFlowDeviceName": "station_name",  # 9:12387
    "9:12367": "process_path",
    "9:12368": "parent_process_path",
    "9:12369": "process_args",
    "9:12370": "parent_process_args",
    "9:12373": "coordinates",
    "9:12383": "process_path",
    "9:12384": "parent_process_path",
    "9:12385": "process_args",
    "9:12386": "parent_process_args",
    "9:12387": "station_name",
}
"""Keys of ``extra`` (IE names, or ``PEN:ID`` of undecoded elements) → the field they follow."""

_DEFAULT_FIELDS: Final[Mapping[str, Action]] = {
    "process_args": Action.DROP,
    "parent_process_args": Action.DROP,
    "coordinates": Action.DROP,
}

_GROUP_KEYS: Final[Mapping[str, str]] = {
    "nvm-privacy-user": "user",
    "nvm-privacy-hostname": "hostname",
    "nvm-privacy-process-path": "process-path",
    "nvm-privacy-process-args": "process-args",
    "nvm-privacy-modules": "modules",
}
_KEY_FILE: Final = "nvm-privacy-hmac-key-file"
_DROP_PRIVATE: Final = "nvm-privacy-drop-private-destinations"
_REDACT: Final = "nvm-privacy-redact"

PRIVACY_KEYS: Final = frozenset({*_GROUP_KEYS, _KEY_FILE, _DROP_PRIVATE, _REDACT})
"""Config keys understood by :func:`parse_privacy_setting` (``nvm-privacy-redact`` repeats)."""

_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})
_PRIVATE_NETS: Final = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("fc00::/7"),
)
# Fields the IE-name table maps that a generic record keeps under the IE name.
_IE_FIELD: Final[Mapping[str, str]] = {
    name: "modules" if spec[0] in ("module_names", "module_hashes") else spec[0]
    for name, spec in FIELD_MAP.items()
}

SettingValue = Action | bool | str | re.Pattern[str]


def _str_fields(cls: type[object]) -> tuple[str, ...]:
    return tuple(
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.type in ("str | None", "str")
    )


_FLOW_FIELDS: Final = frozenset(FlowRecord.__dataclass_fields__)
_STRING_FIELDS: Final[Mapping[type[object], tuple[str, ...]]] = {
    cls: _str_fields(cls) for cls in (FlowRecord, EndpointRecord, InterfaceRecord)
}


def parse_privacy_setting(key: str, value: str) -> SettingValue:
    """Validate one ``nvm-privacy-*`` config value and convert it.

    Group keys give an :class:`Action`, ``…-drop-private-destinations`` a bool, ``…-redact`` a
    compiled pattern and ``…-hmac-key-file`` the path as given.

    :raises ConfigError: unknown key or invalid value (with ``key`` and ``expected`` set).
    """
    if key in _GROUP_KEYS:
        try:
            return Action(value.strip().lower())
        except ValueError:
            raise ConfigError(
                f"invalid action {value!r}", key=key, expected="keep|drop|hash"
            ) from None
    if key == _DROP_PRIVATE:
        word = value.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ConfigError(f"invalid boolean {value!r}", key=key, expected="true|false")
    if key == _REDACT:
        try:
            return re.compile(value)
        except re.error as exc:
            raise ConfigError(f"invalid regular expression: {exc}", key=key) from None
    if key == _KEY_FILE:
        if not value.strip():
            raise ConfigError("empty path", key=key, expected="a file path")
        return value.strip()
    raise ConfigError("unknown privacy setting", key=key)


def _read_key_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read key file: {exc.strerror}",
            key=_KEY_FILE,
            expected="a readable file of at least 16 bytes",
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyPolicy:
    """What to keep, drop or hash before NVM records are stored.

    :param fields: normalised field name → action; unnamed fields are kept.
    :param hmac_key: key of the HASH action; required if any field is hashed.
    :param drop_private_destinations: drop flows to RFC 1918 / ULA destinations.
    :param redact_patterns: matches in any string become ``[redacted]``.
    :raises ConfigError: a field is hashed but there is no key.
    """

    fields: Mapping[str, Action] = field(default_factory=lambda: dict(_DEFAULT_FIELDS))
    hmac_key: bytes | None = field(default=None, repr=False)
    drop_private_destinations: bool = False
    redact_patterns: tuple[re.Pattern[str], ...] = ()
    _active: tuple[tuple[str, Action], ...] = field(init=False, repr=False, compare=False)
    _flow_fast: tuple[str, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        active = tuple((name, act) for name, act in self.fields.items() if act is not Action.KEEP)
        if any(act is Action.HASH for _, act in active) and not self.hmac_key:
            raise ConfigError(
                "hashing a field needs an HMAC key",
                key=_KEY_FILE,
                expected="a key file of at least 16 bytes",
            )
        object.__setattr__(self, "_active", active)
        # A flow whose acted-on fields are all None and whose ``extra`` is empty comes out of
        # _apply_typed unchanged (when nothing is redacted or dropped by destination): the
        # names to check for that, or None when the shortcut does not apply.
        names = tuple(name for name, _ in active if name in _FLOW_FIELDS)
        simple = not self.redact_patterns and not self.drop_private_destinations
        object.__setattr__(self, "_flow_fast", names if simple and "modules" not in names else None)

    @classmethod
    def default(cls) -> PrivacyPolicy:
        """Keep everything except process arguments and coordinates; no redaction."""
        return cls()

    @classmethod
    def from_settings(
        cls,
        settings: Iterable[tuple[str, str]],
        *,
        read_file: Callable[[str], bytes] = _read_key_file,
    ) -> PrivacyPolicy:
        """Build a policy from ``(key, value)`` config pairs, starting from the defaults.

        Later values of a key win; ``nvm-privacy-redact`` accumulates.

        :param read_file: reads the HMAC key file (injectable for tests).
        :raises ConfigError: any invalid value, an unreadable or short key file, HASH without key.
        """
        fields = dict(_DEFAULT_FIELDS)
        key: bytes | None = None
        drop_private = False
        patterns: list[re.Pattern[str]] = []
        for name, raw in settings:
            value = parse_privacy_setting(name, raw)
            if isinstance(value, Action):
                fields.update(dict.fromkeys(FIELD_GROUPS[_GROUP_KEYS[name]], value))
            elif isinstance(value, bool):
                drop_private = value
            elif isinstance(value, re.Pattern):
                patterns.append(value)
            else:
                key = read_file(value).strip()
                if len(key) < _MIN_KEY_LEN:
                    raise ConfigError(
                        "key file too short", key=_KEY_FILE, expected="at least 16 bytes"
                    )
        return cls(
            fields=fields,
            hmac_key=key,
            drop_private_destinations=drop_private,
            redact_patterns=tuple(patterns),
        )

    def action(self, name: str) -> Action:
        """The action for one normalised field name."""
        return self.fields.get(name, Action.KEEP)

    def pseudonym(self, value: str) -> str:
        """HMAC-SHA256 of ``value`` under the policy key, 32 hex digits."""
        if not self.hmac_key:
            raise ConfigError("hashing a field needs an HMAC key", key=_KEY_FILE)
        digest = hmac.new(self.hmac_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return digest.hexdigest()[:_HASH_HEX_LEN]

    def apply(self, record: Normalised) -> Normalised | None:
        """The record as it may be stored, or ``None`` if it must not be stored at all."""
        fast = self._flow_fast
        if fast is not None and type(record) is FlowRecord and not record.extra:
            for name in fast:
                if getattr(record, name) is not None:
                    break
            else:
                return record
        if isinstance(record, GenericRecord):
            return self._apply_generic(record)
        if (
            isinstance(record, FlowRecord)
            and self.drop_private_destinations
            and _is_private(record.dst_addr)
        ):
            return None
        return self._apply_typed(record)

    def _apply_typed(
        self, record: FlowRecord | EndpointRecord | InterfaceRecord
    ) -> FlowRecord | EndpointRecord | InterfaceRecord:
        changes: dict[str, object] = {}
        for name, act in self._active:
            if not hasattr(record, name):
                continue
            value = getattr(record, name)
            if name == "modules":
                changes[name] = self._modules(value, act)
            elif value is not None:
                changes[name] = None if act is Action.DROP else self._hash_value(value)
        if self.redact_patterns:
            for name in _STRING_FIELDS[type(record)]:
                current = changes.get(name, getattr(record, name))
                if isinstance(current, str):
                    changes[name] = self._redact(current)
        extra = self._json_dict(record.extra)
        if extra is not record.extra:
            changes["extra"] = extra
        return dataclasses.replace(record, **changes) if changes else record  # type: ignore[arg-type]

    def _apply_generic(self, record: GenericRecord) -> GenericRecord:
        values = self._json_dict(record.values, names=_IE_FIELD)
        return record if values is record.values else dataclasses.replace(record, values=values)

    def _modules(self, modules: tuple[Module, ...], act: Action) -> tuple[Module, ...]:
        if act is Action.DROP:
            return ()
        return tuple(
            Module(name=None if m.name is None else self.pseudonym(m.name), hash=m.hash)
            for m in modules
        )

    def _hash_value(self, value: object) -> JsonValue:
        if isinstance(value, list):
            return [self._hash_value(item) for item in value]
        if isinstance(value, dict):
            return {key: self._hash_value(item) for key, item in value.items()}
        return self.pseudonym(str(value))

    def _json_dict(
        self, values: Mapping[str, JsonValue], *, names: Mapping[str, str] = EXTRA_ALIASES
    ) -> Mapping[str, JsonValue]:
        """Apply aliased field actions and redaction to ``extra`` / generic values.

        Returns the same object when nothing changes (the common case, kept allocation-free).
        """
        out: dict[str, JsonValue] | None = None
        for key, value in values.items():
            target = names.get(key) or EXTRA_ALIASES.get(key)
            act = self.action(target) if target else Action.KEEP
            new: JsonValue | None
            if key == "unknown" and isinstance(value, dict):
                new = self._json_dict_value(value)
            elif act is Action.DROP:
                new = None
            elif act is Action.HASH:
                new = self._hash_value(value)
            else:
                new = self._redact_json(value)
            if new is not value:
                if out is None:
                    out = dict(values)
                if new is None and act is Action.DROP:
                    del out[key]
                else:
                    out[key] = new
        return values if out is None else out

    def _redact(self, text: str) -> str:
        for pattern in self.redact_patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def _redact_json(self, value: JsonValue) -> JsonValue:
        if not self.redact_patterns:
            return value
        if isinstance(value, str):
            redacted = self._redact(value)
            return value if redacted == value else redacted
        if isinstance(value, list):
            items = [self._redact_json(item) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if isinstance(value, dict):
            return self._json_dict_value(value, names={})
        return value

    def _json_dict_value(
        self, value: dict[str, JsonValue], *, names: Mapping[str, str] = EXTRA_ALIASES
    ) -> JsonValue:
        result = self._json_dict(value, names=names)
        return value if result is value else dict(result)


def _is_private(address: str | None) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _PRIVATE_NETS)
