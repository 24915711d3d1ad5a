"""The nvm-* configuration keys, the settings built from them, and the ``ocgate nvm`` CLI."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from pathlib import Path

import pytest
from nvm_collector_lib import DATA_267, FLOW_TIME, TEMPLATES, opened_store

from ocgate._cli import main as ocgate_main
from ocgate.config import parse_config
from ocgate.errors import ConfigError
from ocgate.nvm._cli import format_table, parse_time
from ocgate.nvm._collector import Collector
from ocgate.nvm._config import (
    DEFAULT_STORE,
    ListenAddress,
    NvmSettings,
    SinkAddress,
    nvm_configured,
    parse_http_url,
    parse_listen_url,
    parse_store_url,
    parse_syslog_url,
)
from ocgate.nvm._privacy import Action
from ocgate.nvm.ipfix import ExporterKey

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pki import make_pki


def config_text(tmp_path: Path, extra: str) -> str:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    return f"auth = plain[passwd={cert}]\nserver-cert = {cert}\nserver-key = {cert}\n" + extra


def test_nvm_keys_land_in_config_and_settings(tmp_path: Path) -> None:
    key = tmp_path / "hmac.key"
    key.write_text("0123456789abcdef0123")
    tokens = tmp_path / "api.tokens"
    tokens.write_text("0123456789abcdef0123\n")
    tokens.chmod(0o600)
    pki = make_pki(tmp_path / "pki")
    text = config_text(
        tmp_path,
        "nvm-listen = udp://0.0.0.0:2055\n"
        "nvm-listen = tcp://[::1]\n"
        "nvm-dtls-listen = dtls://0.0.0.0\n"
        f"nvm-dtls-cert = {pki.server.cert_path}\n"
        f"nvm-dtls-key = {pki.server.key_path}\n"
        "nvm-allow = 10.8.0.0/16\nnvm-allow = 2001:db8::1\n"
        "nvm-store = sqlite://nvm.sqlite\n"
        "nvm-api-listen = 127.0.0.1:8443\n"
        "nvm-api-token-file = api.tokens\n"
        "nvm-retention-days = 7\n"
        "nvm-syslog = udp://siem\nnvm-syslog = tls://siem:1514\n"
        "nvm-json-file = nvm.jsonl\n"
        "nvm-json-http = https://siem/ingest\n"
        "nvm-privacy-user = hash\n"
        "nvm-privacy-hmac-key-file = hmac.key\n",
    )
    config = parse_config(text, source=str(tmp_path / "ocserv.conf"))
    assert config.warnings == ()
    assert nvm_configured(config)
    settings = NvmSettings.from_config(config)
    assert settings.listen == (
        ListenAddress("udp", "0.0.0.0", 2055),
        ListenAddress("tcp", "::1", 4739),
    )
    assert str(settings.listen[1]) == "tcp://[::1]:4739"
    assert settings.dtls_listen == (ListenAddress("dtls", "0.0.0.0", 4740),)
    assert settings.allow == (
        ipaddress.ip_network("10.8.0.0/16"),
        ipaddress.ip_network("2001:db8::1/128"),
    )
    assert settings.store == f"sqlite://{tmp_path / 'nvm.sqlite'}"
    assert settings.retention_days == 7
    assert settings.syslog == (SinkAddress("udp", "siem", 514), SinkAddress("tls", "siem", 1514))
    assert settings.json_file == str(tmp_path / "nvm.jsonl")
    assert settings.api_listen == "127.0.0.1:8443"
    assert settings.privacy.action("user") is Action.HASH
    assert settings.privacy.action("process_args") is Action.DROP  # The default.


def test_defaults_and_not_configured(tmp_path: Path) -> None:
    config = parse_config(config_text(tmp_path, ""), source=str(tmp_path / "x.conf"))
    assert not nvm_configured(config)
    settings = NvmSettings.from_config(config)
    assert settings.store == DEFAULT_STORE
    assert settings.retention_days == 30


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("nvm-listen = sctp://0.0.0.0", "not a valid URL"),
        ("nvm-listen = udp://0.0.0.0:99999", "not a valid URL"),
        ("nvm-listen = udp://host/path", "unexpected path"),
        ("nvm-dtls-listen = udp://0.0.0.0", "not a valid URL"),
        ("nvm-allow = 10.0.0.0/33", "not a network"),
        ("nvm-syslog = http://siem", "not a valid URL"),
        ("nvm-json-http = ftp://x", "not an http"),
        ("nvm-retention-days = -1", "not a number of days"),
        ("nvm-privacy-user = scramble", "invalid action"),
        ("nvm-privacy-redact = (", "regular expression"),
    ],
)
def test_bad_values_name_file_line_and_key(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(config_text(tmp_path, line + "\n"), source="x.conf", base_dir=str(tmp_path))
    assert info.value.key == line.split(" = ")[0]
    assert info.value.line == 4


def test_dtls_listener_needs_certificate_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="certificate and a key") as info:
        parse_config(config_text(tmp_path, "nvm-dtls-listen = dtls://127.0.0.1\n"), source="x.conf")
    assert (info.value.file, info.value.line, info.value.key) == ("x.conf", 4, "nvm-dtls-listen")
    with pytest.raises(ConfigError, match="certificate and a key"):
        NvmSettings(dtls_listen=(ListenAddress("dtls", "127.0.0.1", 4740),))


def test_url_parsers_directly() -> None:
    assert parse_listen_url("udp://[2001:db8::1]:9995") == ListenAddress("udp", "2001:db8::1", 9995)
    assert parse_syslog_url("tcp://siem") == SinkAddress("tcp", "siem", 514)
    assert parse_store_url("postgresql://u@db/nvm") == "postgresql://u@db/nvm"
    assert parse_store_url("sqlite:////var/x.db") == "sqlite:////var/x.db"
    assert parse_http_url("http://x:8080/a") == "http://x:8080/a"
    with pytest.raises(ConfigError):
        parse_store_url("sqlite://")


def test_parse_time_forms() -> None:
    assert parse_time("1700000000") == 1700000000.0
    assert parse_time("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_time("2023-11-14T22:13:20") == 1700000000.0
    assert parse_time("2023-11-14T23:13:20+01:00") == 1700000000.0
    with pytest.raises(ValueError, match="isoformat"):
        parse_time("yesterday")


def test_nvm_query_cli_prints_a_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fill() -> None:
        async with opened_store(tmp_path / "nvm.db") as store:
            collector = Collector(store=store, linger=0.01)
            await collector.start()
            key = ExporterKey("udp", "10.0.0.1", 5)
            collector.receive_message(TEMPLATES, key, FLOW_TIME)
            collector.receive_message(DATA_267, key, FLOW_TIME)
            await collector.stop()

    asyncio.run(fill())
    url = f"sqlite://{tmp_path / 'nvm.db'}"
    assert ocgate_main(["nvm", "query", "--store", url, "--process", "svchost.exe"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "END",
        "(UTC)",
        "USER",
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "BYTES",
        "PROCESS",
        "HOST",
    ]
    assert table[1].split() == [
        "2017-04-05",
        "03:26:13",
        "MYNVM\\dummy11",
        "udp",
        "192.168.0.10:43879",
        "192.168.0.11:53",
        "100/41",
        "svchost.exe",
        "Unknown",
    ]
    assert ocgate_main(["nvm", "query", "--store", url, "--json", "--since", "1491362000"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["dst_port"] == 53
    assert ocgate_main(["nvm", "query", "--store", url, "--user", "nobody"]) == 0
    assert "(no flows)" in capsys.readouterr().out
    assert ocgate_main(["nvm", "query", "--store", f"sqlite://{tmp_path / 'none.db'}"]) == 1
    assert "no NVM database" in capsys.readouterr().err
    assert format_table([]).endswith("(no flows)")
