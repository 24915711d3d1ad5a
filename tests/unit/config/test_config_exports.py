"""The public surface of ocgate.config (STYLE rule 10)."""

from __future__ import annotations

import ocgate.config


def test_all() -> None:
    assert sorted(ocgate.config.__all__) == sorted(
        [
            "Config",
            "CollectorConfig",
            "AuthMethod",
            "ConfigWarning",
            "IPNetwork",
            "IPAddress",
            "load_config",
            "parse_config",
            "load_collector_config",
            "parse_collector_config",
            "COLLECTOR_KEYS",
            "KNOWN_OCSERV_KEYS",
            "PER_USER_KEYS",
            "UserConfig",
            "apply_layers",
            "check_name_component",
            "load_session_layers",
            "load_user_config_file",
            "parse_user_config",
            "redact_store_url",
        ]
    )
    for name in ocgate.config.__all__:
        assert getattr(ocgate.config, name) is not None
