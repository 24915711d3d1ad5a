"""The collector keys on their own: what ``ocgate nvm serve -c FILE`` reads and checks.

Theory of operation
-------------------
Many sites already have a VPN headend and want only the NVM collector. The collector therefore
reads the same file syntax (:mod:`ocgate.config._lexer`) and the same option rows
(:data:`~ocgate.config._options.OPTIONS`) as the gateway, with one difference: only the rows
marked ``collector`` (the ``nvm-*`` keys and ``metrics-listen``, :data:`COLLECTOR_KEYS`) are
parsed. Every other key ocserv knows is skipped unread, so a collector-only file needs no
``auth`` or ``server-cert``, and an ocserv.conf that holds both runs both ``ocgate serve`` and
``ocgate nvm serve``. A key nobody knows is still an error: a typo must not pass silently.

:func:`collector_settings` then applies the rules that involve several keys or the files they
name, the same for both commands (``ocgate serve`` runs it when a collector listener is set):

* a DTLS listener needs ``nvm-dtls-cert`` and ``nvm-dtls-key``, and the files must load;
* the API needs the ``ocgate[api]`` extra and an ``nvm-api-token-file`` whose tokens pass;
* the privacy policy must build (hashing needs a key file of at least 16 bytes).

Every error is one :class:`~ocgate.errors.ConfigError` that names the file, the line of the key
it is about and the expected form; a bad token names its own line in the token file instead.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ocgate.config._draft import Draft
from ocgate.config._model import ConfigWarning
from ocgate.config._options import COLLECTOR_KEYS, OPTIONS
from ocgate.errors import ConfigError
from ocgate.nvm._config import NvmSettings, parse_privacy
from ocgate.nvm._privacy import PRIVACY_KEYS

__all__ = ["CollectorConfig", "build_collector_config", "collector_settings", "locate"]

_API_MODULES: Final = ("starlette", "uvicorn")
"""What the ``ocgate[api]`` extra brings and :mod:`ocgate.nvm.api` imports."""
_KEY_FILE: Final = "nvm-privacy-hmac-key-file"


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorConfig:
    """The collector keys of one file, checked: what ``ocgate nvm serve`` runs on.

    Build it with :func:`ocgate.config.load_collector_config`.

    :param source: the file it was read from.
    :param settings: the collector's settings; the files they name were read and found usable.
    :param warnings: non-fatal findings (empty values, skipped sections).
    :param lines: the last line of each collector key in the file (see :meth:`locate`).
    """

    source: str
    settings: NvmSettings
    warnings: tuple[ConfigWarning, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)

    def locate(self, error: ConfigError) -> ConfigError:
        """``error`` (raised later, e.g. at start) placed at its key's line in this file."""
        return locate(error, self.source, self.lines)


def locate(error: ConfigError, source: str, lines: Mapping[str, int]) -> ConfigError:
    """``error`` with ``source`` and the line of its key, unless it already names a file.

    :param lines: key → line, as :meth:`Draft.lines` gives.
    """
    if error.file is not None:
        return error
    line = None if error.key is None else lines.get(error.key)
    return ConfigError(
        error.message, file=source, line=line, key=error.key, expected=error.expected
    )


def _locate_in(draft: Draft, error: ConfigError) -> ConfigError:
    lines = draft.lines()
    if error.key == _KEY_FILE and _KEY_FILE not in lines:
        # "Hashing needs a key": point at the last line that asks for hashing.
        asks = [
            (line, key)
            for key in PRIVACY_KEYS
            for line, (_, value) in draft.all(key, tuple)
            if str(value).strip().lower() == "hash"
        ]
        if asks:
            line, key = max(asks)
            return ConfigError(
                error.message,
                file=draft.source,
                line=line,
                key=key,
                expected=f"an {_KEY_FILE} line naming a key file of at least 16 bytes",
            )
    return locate(error, draft.source, lines)


def _check_files(settings: NvmSettings) -> None:
    """Read the files the settings name, as the collector will at start."""
    if settings.dtls_listen:
        from ocgate.nvm._credentials import check_dtls_credentials

        assert settings.dtls_cert is not None  # NvmSettings checks both.
        assert settings.dtls_key is not None
        check_dtls_credentials(settings.dtls_cert, settings.dtls_key, settings.dtls_ca)
    if settings.api_listen:
        from ocgate.nvm._tokens import load_tokens

        missing = [name for name in _API_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(
                f"the NVM API needs the ocgate[api] extra (missing: {', '.join(missing)})",
                key="nvm-api-listen",
                expected="pip install 'ocgate[api]', or no nvm-api-listen line",
            )
        assert settings.api_token_file is not None  # NvmSettings checks it.
        load_tokens(settings.api_token_file)


def collector_settings(draft: Draft) -> NvmSettings:
    """The collector's settings from the collector keys of ``draft``, with the files checked.

    :raises ConfigError: the first problem, at the line of the key concerned (module docstring).
    """
    values = draft.fields(OPTIONS[key] for key in COLLECTOR_KEYS)
    # Config field nvm_X is NvmSettings field X; metrics_listen is the same in both.
    kwargs = {name.removeprefix("nvm_"): value for name, value in values.items()}
    try:
        kwargs["privacy"] = parse_privacy(kwargs.pop("privacy", ()))
        settings = NvmSettings(**kwargs)
        _check_files(settings)
    except ConfigError as exc:
        raise _locate_in(draft, exc) from None
    return settings


def build_collector_config(draft: Draft) -> CollectorConfig:
    """The :class:`CollectorConfig` of a draft that recorded only collector keys.

    :raises ConfigError: as :func:`collector_settings`.
    """
    settings = collector_settings(draft)
    warnings = tuple(sorted(draft.warnings, key=lambda warning: warning.line))
    return CollectorConfig(
        source=draft.source, settings=settings, warnings=warnings, lines=draft.lines()
    )
