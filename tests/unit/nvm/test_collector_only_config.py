"""The collector-only configuration: ``ocgate.config.parse_collector_config`` and its checks.

The same rules run inside ``parse_config`` when a collector listener is set, so ``ocgate serve``
reports a bad collector key with the same ``file:line: key: problem (expected: …)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import sys
from pathlib import Path

import pytest

from ocgate._cli import main as ocgate_main
from ocgate.config import (
    COLLECTOR_KEYS,
    CollectorConfig,
    load_collector_config,
    parse_collector_config,
    parse_config,
)
from ocgate.config._options import OPTIONS
from ocgate.errors import ConfigError
from ocgate.nvm._collector import CollectorStats
from ocgate.nvm._config import ListenAddress, NvmSettings
from ocgate.nvm._metrics import CollectorMetrics
from ocgate.nvm._privacy import Action
from ocgate.nvm._serve import open_nvm_store, run_standalone

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pki import Pki, make_pki

TOKEN = "collector-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def parse(tmp_path: Path, text: str) -> CollectorConfig:
    return parse_collector_config(text, source=str(tmp_path / "nvm.conf"))


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, text)
    return info.value


def test_collector_keys_are_the_nvm_keys_and_metrics_listen() -> None:
    nvm = {name for name in OPTIONS if name.startswith("nvm-")}
    assert nvm | {"metrics-listen"} == COLLECTOR_KEYS
    # Each collector key's Config field nvm_X is the NvmSettings field X.
    settings_fields = {f.name for f in dataclasses.fields(NvmSettings)}
    for name in COLLECTOR_KEYS:
        field = OPTIONS[name].field
        assert field is not None
        assert field.removeprefix("nvm_") in settings_fields


def test_a_collector_only_file_needs_no_vpn_keys(tmp_path: Path, pki: Pki) -> None:
    write(tmp_path, "api.tokens", TOKEN + "\n")
    write(tmp_path, "hmac.key", "0123456789abcdef0123")
    config = parse(
        tmp_path,
        "nvm-listen = udp://0.0.0.0:2055\n"
        "nvm-dtls-listen = dtls://0.0.0.0\n"
        f"nvm-dtls-cert = {pki.server.cert_path}\n"
        f"nvm-dtls-key = {pki.server.key_path}\n"
        f"nvm-dtls-ca = {pki.ca.cert_path}\n"
        "nvm-store = sqlite://nvm.sqlite\n"
        "nvm-api-listen = 127.0.0.1:8443\n"
        "nvm-api-token-file = api.tokens\n"
        "nvm-allow = 10.0.0.0/8\n"
        "nvm-retention-days = 7\n"
        "nvm-syslog = udp://siem.example\n"
        "nvm-privacy-user = hash\n"
        "nvm-privacy-hmac-key-file = hmac.key\n"
        "metrics-listen = 127.0.0.1:9099\n",
    )
    settings = config.settings
    assert config.source == str(tmp_path / "nvm.conf")
    assert config.warnings == ()
    assert settings.listen == (ListenAddress("udp", "0.0.0.0", 2055),)
    assert settings.dtls_listen == (ListenAddress("dtls", "0.0.0.0", 4740),)
    assert settings.dtls_ca == str(pki.ca.cert_path)
    assert settings.store == f"sqlite://{tmp_path / 'nvm.sqlite'}"
    assert settings.api_token_file == str(tmp_path / "api.tokens")
    assert settings.allow == (ipaddress.ip_network("10.0.0.0/8"),)
    assert settings.retention_days == 7
    assert settings.privacy.action("user") is Action.HASH
    assert settings.metrics_listen == "127.0.0.1:9099"
    assert config.lines["nvm-api-listen"] == 7


def test_vpn_keys_are_neither_required_nor_checked(tmp_path: Path) -> None:
    config = parse(
        tmp_path,
        "auth = nonsense[\n"
        "server-cert = /no/such/cert.pem\n"
        "ipv4-network = not-a-network\n"
        "nvm-listen = udp://127.0.0.1:2055\n"
        "[vhost:other]\n"
        "nvm-listen = udp://127.0.0.1:9\n",
    )
    # The collector's keys are global: a [vhost:] section is the gateway's business.
    assert config.settings.listen == (ListenAddress("udp", "127.0.0.1", 2055),)
    assert [w.message for w in config.warnings] == []


def test_an_ocserv_conf_with_both_works_for_both_loaders(tmp_path: Path) -> None:
    write(tmp_path, "api.tokens", TOKEN + "\n")
    cert = write(tmp_path, "c.pem", "x")
    text = (
        f"auth = plain[passwd={cert}]\nserver-cert = {cert}\nserver-key = {cert}\n"
        "nvm-listen = udp://0.0.0.0:2055\n"
        "nvm-api-listen = 127.0.0.1:8443\nnvm-api-token-file = api.tokens\n"
        "metrics-listen = 127.0.0.1:9099\n"
    )
    source = str(tmp_path / "ocserv.conf")
    gateway = parse_config(text, source=source)
    collector = parse_collector_config(text, source=source)
    assert NvmSettings.from_config(gateway).listen == collector.settings.listen
    assert gateway.metrics_listen == collector.settings.metrics_listen
    assert NvmSettings.from_config(gateway).metrics_listen is None  # The gateway serves it.


def test_unknown_keys_are_still_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, "nvm-listen = udp://0.0.0.0\nnvm-lisen = udp://0.0.0.0\n")
    assert (error.line, error.key) == (2, "nvm-lisen")
    assert "did you mean 'nvm-listen'" in error.message


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("nvm-listen = sctp://0.0.0.0\n", 1, "nvm-listen", "not a valid URL"),
        ("nvm-listen = udp://x\nnvm-json-http = ftp://x\n", 2, "nvm-json-http", "not an http"),
        ("nvm-privacy-user = scramble\n", 1, "nvm-privacy-user", "invalid action"),
        (
            "nvm-listen = udp://x\nnvm-dtls-listen = dtls://x\nnvm-dtls-key = k.pem\n",
            3,
            "nvm-dtls-key",
            "file not found",
        ),
        (
            "nvm-listen = udp://x\nnvm-dtls-listen = dtls://x\n",
            2,
            "nvm-dtls-listen",
            "needs a certificate and a key",
        ),
        ("nvm-api-listen = 127.0.0.1:1\n", 1, "nvm-api-listen", "needs bearer tokens"),
        (
            "nvm-api-listen = 127.0.0.1:1\nnvm-api-token-file = absent\n",
            2,
            "nvm-api-token-file",
            "cannot read API token file",
        ),
        (
            "nvm-privacy-user = hash\nnvm-privacy-hostname = hash\nnvm-privacy-user = keep\n",
            2,
            "nvm-privacy-hostname",
            "hashing a field needs an HMAC key",
        ),
        (
            "nvm-privacy-user = hash\nnvm-privacy-hmac-key-file = absent\n",
            2,
            "nvm-privacy-hmac-key-file",
            "cannot read key file",
        ),
    ],
)
def test_errors_name_file_line_key_and_expected_form(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    error = refused(tmp_path, text)
    assert (error.file, error.line, error.key) == (str(tmp_path / "nvm.conf"), line, key)
    assert message in error.message
    assert error.expected
    assert str(error).startswith(f"{tmp_path / 'nvm.conf'}:{line}: {key}: ")
    assert "\n" not in str(error)


def test_a_bad_token_is_reported_at_its_line_of_the_token_file(tmp_path: Path) -> None:
    write(tmp_path, "api.tokens", f"{TOKEN}\n\ntiny-tok\n")
    error = refused(tmp_path, "nvm-api-listen = 127.0.0.1:1\nnvm-api-token-file = api.tokens\n")
    assert str(error) == (
        f"{tmp_path / 'api.tokens'}:3: nvm-api-token-file: API token is too short"
        " (expected: at least 16 characters (e.g. `openssl rand -hex 32`))"
    )
    assert "tiny-tok" not in str(error)  # Never the token itself.


def test_a_short_hmac_key_is_reported_at_the_key_file_line(tmp_path: Path) -> None:
    write(tmp_path, "hmac.key", "short")
    error = refused(tmp_path, "nvm-privacy-user = hash\nnvm-privacy-hmac-key-file = hmac.key\n")
    assert (error.line, error.key, error.message) == (
        2,
        "nvm-privacy-hmac-key-file",
        "key file too short",
    )


def test_unusable_dtls_files_name_the_key_of_the_file(tmp_path: Path, pki: Pki) -> None:
    garbage = write(tmp_path, "garbage.pem", "not PEM\n")
    head = "nvm-dtls-listen = dtls://127.0.0.1\n"
    cases = [
        (f"nvm-dtls-cert = {garbage}\nnvm-dtls-key = {pki.server.key_path}\n", 2, "nvm-dtls-cert"),
        (f"nvm-dtls-cert = {pki.server.cert_path}\nnvm-dtls-key = {garbage}\n", 3, "nvm-dtls-key"),
        (
            f"nvm-dtls-cert = {pki.server.cert_path}\nnvm-dtls-key = {pki.alice.key_path}\n",
            3,
            "nvm-dtls-key",
        ),
        (
            f"nvm-dtls-cert = {pki.server.cert_path}\nnvm-dtls-key = {pki.server.key_path}\n"
            f"nvm-dtls-ca = {garbage}\n",
            4,
            "nvm-dtls-ca",
        ),
    ]
    for text, line, key in cases:
        error = refused(tmp_path, head + text)
        assert (error.line, error.key) == (line, key), error
        assert "DTLS" in error.message


def test_ocgate_serve_checks_the_collector_keys_with_their_lines(tmp_path: Path) -> None:
    write(tmp_path, "api.tokens", "short\n")
    cert = write(tmp_path, "c.pem", "x")
    vpn = f"auth = plain[passwd={cert}]\nserver-cert = {cert}\nserver-key = {cert}\n"
    api = "nvm-api-listen = 127.0.0.1:1\nnvm-api-token-file = api.tokens\n"
    with pytest.raises(ConfigError, match=r"api\.tokens:1: nvm-api-token-file: API token is too"):
        parse_config(vpn + "nvm-listen = udp://0.0.0.0\n" + api, source=str(tmp_path / "x.conf"))
    # Without a collector listener the collector does not run, and its files are not read.
    assert parse_config(vpn + api, source=str(tmp_path / "ocserv.conf")).nvm_api_listen


def test_located_errors_keep_their_own_file(tmp_path: Path) -> None:
    config = parse(tmp_path, "nvm-listen = udp://0.0.0.0\n")
    moved = config.locate(ConfigError("boom", key="nvm-listen", expected="less boom"))
    assert str(moved) == f"{tmp_path / 'nvm.conf'}:1: nvm-listen: boom (expected: less boom)"
    kept = ConfigError("bad", file="other", line=3, key="nvm-api-token-file")
    assert config.locate(kept) is kept
    assert config.locate(ConfigError("x", key="nvm-store")).line is None


def test_load_collector_config_reads_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "nvm.conf", "nvm-listen = udp://0.0.0.0\n")
    assert load_collector_config(path).settings.listen[0].port == 2055
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_collector_config(tmp_path / "absent.conf")


def test_standalone_without_a_listener_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "nvm.conf", "nvm-store = sqlite://nvm.sqlite\n")
    assert run_standalone(str(path)) == 1
    err = capsys.readouterr().err
    assert err == (
        f"ocgate nvm: error: {path}: nvm-listen: no collector listener is configured"
        " (expected: nvm-listen = udp://0.0.0.0:2055 or nvm-dtls-listen = dtls://0.0.0.0:4740)\n"
    )


def test_nvm_query_takes_the_store_of_a_collector_only_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "nvm.conf", "nvm-listen = udp://0.0.0.0\nnvm-store = none.sqlite\n")
    assert ocgate_main(["nvm", "query", "-c", str(path)]) == 1
    assert f"no NVM database at {tmp_path / 'none.sqlite'}" in capsys.readouterr().err


def test_collector_metrics_name_every_pipeline_counter() -> None:
    stats = CollectorStats(messages=3, records_written=2, rejected=1)
    text = CollectorMetrics(lambda: stats).render().decode()
    for field in dataclasses.fields(CollectorStats):
        value = float(getattr(stats, field.name))
        assert f"ocgate_nvm_{field.name}_total {value}" in text


def test_the_readme_collector_only_configuration_is_valid(tmp_path: Path, pki: Pki) -> None:
    readme = Path(__file__).resolve().parents[3] / "README.md"
    section = readme.read_text().split("\n## Collector only\n", 1)[1]
    text = section.split("```\n", 2)[1]
    text = text.replace("sqlite:////var/lib/ocgate-nvm/", f"sqlite://{tmp_path}/")
    text = text.replace("/etc/ocgate/", f"{tmp_path}/")
    write(tmp_path, "nvm-collector.crt", pki.server.cert_path.read_text())
    write(tmp_path, "nvm-collector.key", pki.server.key_path.read_text())
    write(tmp_path, "nvm-api.token", "0123456789abcdef" * 4 + "\n")
    write(tmp_path, "nvm-privacy.key", "fedcba9876543210" * 4 + "\n")
    settings = parse(tmp_path, text).settings
    assert [str(a) for a in (*settings.listen, *settings.dtls_listen)] == [
        "udp://0.0.0.0:2055",
        "dtls://0.0.0.0:4740",
    ]
    assert settings.store == f"sqlite://{tmp_path}/nvm.sqlite"
    assert settings.api_listen == "127.0.0.1:8443"
    assert settings.metrics_listen == "127.0.0.1:9099"
    assert settings.privacy.action("user") is Action.HASH


def test_a_store_that_cannot_be_opened_is_a_config_error_of_nvm_store(tmp_path: Path) -> None:
    write(tmp_path, "file", "")
    (tmp_path / "dir.sqlite").mkdir()
    for url, message in [
        (f"sqlite://{tmp_path}/file/nvm.sqlite", "cannot create"),
        (f"sqlite://{tmp_path}/dir.sqlite", "cannot open the NVM store"),
    ]:
        with pytest.raises(ConfigError, match=message) as info:
            asyncio.run(open_nvm_store(url))
        assert (info.value.key, info.value.expected) == (
            "nvm-store",
            "a writable SQLite path or a reachable PostgreSQL database",
        )
