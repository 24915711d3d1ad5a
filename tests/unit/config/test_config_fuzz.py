"""Arbitrary config text raises only ConfigError (the lexer, the parsers and the finishers)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocgate.config import Config, parse_config
from ocgate.config._options import OPTIONS
from ocgate.errors import ConfigError

BASE = (
    'auth = "plain[passwd=ocpasswd]"\nserver-cert = server-cert.pem\nserver-key = server-key.pem\n'
)
KEYS = sorted(OPTIONS)
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "0",
            "-1",
            "true",
            "default",
            "10.0.0.0/8",
            "10.0.0.1/255.0.0.0",
            "fd00::/48",
            "::/0",
            "pam[gid-min=1]",
            "plain[ocpasswd]",
            "certificate",
            "NORMAL:%COMPAT",
            "ocpasswd",
        ]
    ),
)
LINES = st.lists(
    st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]} = {kv[1]}"), max_size=8
)


def _check(text: str, base_dir: Path) -> None:
    error: ConfigError | None = None
    try:
        config = parse_config(text, source="fuzz.conf", base_dir=str(base_dir))
    except ConfigError as exc:
        error = exc
    if error is not None:
        assert error.file == "fuzz.conf"
    else:
        assert isinstance(config, Config)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(lines=LINES)
def test_fuzz_known_keys(tmp_path: Path, lines: list[str]) -> None:
    for name in ("ocpasswd", "server-cert.pem", "server-key.pem"):
        (tmp_path / name).write_text("x\n")
    _check(BASE + "\n".join(lines) + "\n", tmp_path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_fuzz_any_text(tmp_path: Path, text: str) -> None:
    _check(text, tmp_path)
