"""ocserv.conf, read with ocserv's syntax, meanings and defaults.

:func:`load_config` reads a file; :func:`parse_config` parses text. Both return a frozen
:class:`Config` or raise :class:`~ocgate.errors.ConfigError` naming the file, line, key and the
expected form. :func:`load_collector_config` / :func:`parse_collector_config` read only the NVM
collector's keys of the same file (``ocgate nvm serve``) into a :class:`CollectorConfig`. A key
ocserv knows that grants or restricts access in a way ocgate cannot honour is refused (a
``ConfigError``); one that only tunes a feature ocgate lacks is accepted with one
:class:`ConfigWarning` in ``Config.warnings``. :data:`KNOWN_OCSERV_KEYS` lists every known key;
``docs/ocserv-keys.md`` gives each one's status and reason.
"""

from __future__ import annotations

from ocgate.config._collector import CollectorConfig
from ocgate.config._load import (
    load_collector_config,
    load_config,
    parse_collector_config,
    parse_config,
)
from ocgate.config._model import AuthMethod, Config, ConfigWarning, IPAddress, IPNetwork
from ocgate.config._options import COLLECTOR_KEYS, KNOWN_OCSERV_KEYS
from ocgate.config._peruser import (
    PER_USER_KEYS,
    UserConfig,
    apply_layers,
    check_name_component,
    load_session_layers,
    load_user_config_file,
    parse_user_config,
)
from ocgate.config._values import redact_store_url

__all__ = [
    "COLLECTOR_KEYS",
    "KNOWN_OCSERV_KEYS",
    "PER_USER_KEYS",
    "AuthMethod",
    "CollectorConfig",
    "Config",
    "ConfigWarning",
    "IPAddress",
    "IPNetwork",
    "UserConfig",
    "apply_layers",
    "check_name_component",
    "load_collector_config",
    "load_config",
    "load_session_layers",
    "load_user_config_file",
    "parse_collector_config",
    "parse_config",
    "parse_user_config",
    "redact_store_url",
]
