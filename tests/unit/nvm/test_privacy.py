"""Privacy policy applied to NVM records before storage (nvm-ipfix.md §5)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import ConfigError
from ocgate.nvm._privacy import (
    PRIVACY_KEYS,
    Action,
    PrivacyPolicy,
    parse_privacy_setting,
)
from ocgate.nvm._records import (
    EndpointRecord,
    FlowRecord,
    GenericRecord,
    InterfaceRecord,
    Module,
)

KEY = b"k" * 32


def pseudo(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()[:32]


def flow(**fields: object) -> FlowRecord:
    values: dict[str, object] = {
        "src_addr": "10.8.0.2",
        "dst_addr": "198.51.100.1",
        "user": "MYNVM\\dummy11",
        "user_authority": "MYNVM",
        "user_principal": "dummy11",
        "process_account": "NT AUTHORITY\\NETWORK SERVICE",
        "parent_process_account": "NT AUTHORITY\\SYSTEM",
        "process_name": "curl",
        "process_path": "/home/alice/bin/curl",
        "parent_process_path": "/bin/bash",
        "process_args": "curl -u alice:hunter2 https://x",
        "parent_process_args": "bash -c x",
        "dst_hostname": "x.example.com",
        "dns_suffix": "corp.example",
        "vpn_user": "alice",
        "modules": (Module("libc.so", "aa" * 32),),
        "extra": {
            "nvzFlowProcessCommandLine": "curl secret",
            "nvzFlowProcessImagePath": "/home/alice/bin/curl",
            "nvzFlowCoordinatesList": [1.0, 2.0],
            "unknown": {"9:12369": "6869", "9:99999": "00"},
            "nvzFlowProcessIntegrityLevel": 3,
        },
    }
    values.update(fields)
    return FlowRecord(time_start=1.0, time_end=2.0, **values)  # type: ignore[arg-type]


def test_default_drops_arguments_and_coordinates_only() -> None:
    policy = PrivacyPolicy.default()
    got = policy.apply(flow())
    assert isinstance(got, FlowRecord)
    assert got.process_args is None
    assert got.parent_process_args is None
    assert got.user == "MYNVM\\dummy11"
    assert got.process_path == "/home/alice/bin/curl"
    assert got.dst_hostname == "x.example.com"
    assert got.modules == (Module("libc.so", "aa" * 32),)
    assert got.extra == {
        "nvzFlowProcessImagePath": "/home/alice/bin/curl",
        "unknown": {"9:99999": "00"},
        "nvzFlowProcessIntegrityLevel": 3,
    }
    # Nothing to change: the same object comes back (no copy on the ingest path).
    clean = flow(process_args=None, parent_process_args=None, extra={})
    assert policy.apply(clean) is clean


def test_hash_with_key() -> None:
    policy = PrivacyPolicy(
        fields={"user": Action.HASH, "user_principal": Action.HASH, "modules": Action.HASH},
        hmac_key=KEY,
    )
    got = policy.apply(flow())
    assert isinstance(got, FlowRecord)
    assert got.user == pseudo("MYNVM\\dummy11")
    assert len(got.user) == 32
    assert got.user_principal == pseudo("dummy11")
    assert got.user_authority == "MYNVM"
    assert got.vpn_user == "alice"  # The gateway's own record is never altered.
    assert got.modules == (Module(pseudo("libc.so"), "aa" * 32),)
    assert got.process_args == "curl -u alice:hunter2 https://x"  # Not named: kept.
    assert policy.pseudonym("x") == pseudo("x")


def test_hash_without_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="HMAC key"):
        PrivacyPolicy(fields={"user": Action.HASH})
    with pytest.raises(ConfigError, match="HMAC key"):
        PrivacyPolicy().pseudonym("x")


def test_key_is_not_in_repr() -> None:
    policy = PrivacyPolicy(fields={"user": Action.HASH}, hmac_key=b"topsecret-key-123")
    assert "topsecret" not in repr(policy)


def test_group_settings_drop_and_hash() -> None:
    keyfile = {"/etc/ocgate/nvm.key": KEY + b"\n"}
    policy = PrivacyPolicy.from_settings(
        [
            ("nvm-privacy-hmac-key-file", "/etc/ocgate/nvm.key"),
            ("nvm-privacy-user", "hash"),
            ("nvm-privacy-hostname", "DROP"),
            ("nvm-privacy-process-path", "drop"),
            ("nvm-privacy-process-args", "keep"),
            ("nvm-privacy-modules", "drop"),
        ],
        read_file=keyfile.__getitem__,
    )
    got = policy.apply(flow())
    assert isinstance(got, FlowRecord)
    assert got.user == pseudo("MYNVM\\dummy11")
    assert got.user_authority == pseudo("MYNVM")
    assert got.process_account == pseudo("NT AUTHORITY\\NETWORK SERVICE")
    assert got.parent_process_account == pseudo("NT AUTHORITY\\SYSTEM")
    assert (got.dst_hostname, got.dns_suffix) == (None, None)
    assert (got.process_path, got.parent_process_path) == (None, None)
    assert got.process_args == "curl -u alice:hunter2 https://x"
    assert got.modules == ()
    assert got.extra == {
        "nvzFlowProcessCommandLine": "curl secret",
        "unknown": {"9:12369": "6869", "9:99999": "00"},
        "nvzFlowProcessIntegrityLevel": 3,
    }
    endpoint = EndpointRecord(udid="ab", station_name="LAPTOP-1", first_seen=1, last_seen=1)
    assert policy.apply(endpoint) == EndpointRecord(udid="ab", first_seen=1, last_seen=1)
    iface = InterfaceRecord(udid="ab", interface_uid=1, first_seen=1, last_seen=1)
    assert policy.apply(iface) is iface


def test_generic_records_follow_the_ie_names() -> None:
    policy = PrivacyPolicy(
        fields={"user": Action.HASH, "process_args": Action.DROP, "modules": Action.DROP},
        hmac_key=KEY,
    )
    record = GenericRecord(
        time=1.0,
        exporter="x",
        odid=1,
        template_id=300,
        values={
            "nvzFlowLoggedInUser": "D\\u",
            "nvzFlowProcessArgs": "--password x",
            "nvzFlowModuleNameList": ["a"],
            "nvzFlowOSName": "Linux",
        },
    )
    got = policy.apply(record)
    assert isinstance(got, GenericRecord)
    assert got.values == {"nvzFlowLoggedInUser": pseudo("D\\u"), "nvzFlowOSName": "Linux"}
    plain = GenericRecord(time=1.0, exporter="x", odid=1, template_id=300, values={"a": 1})
    assert policy.apply(plain) is plain


def test_drop_private_destinations() -> None:
    policy = PrivacyPolicy(drop_private_destinations=True)
    for private in ("10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.0.11", "fd00::1"):
        assert policy.apply(flow(dst_addr=private)) is None, private
    for public in ("8.8.8.8", "172.32.0.1", "2001:db8::1", "100.64.0.1"):
        assert policy.apply(flow(dst_addr=public)) is not None, public
    assert policy.apply(flow(dst_addr=None)) is not None
    assert PrivacyPolicy().apply(flow(dst_addr="192.168.0.11")) is not None
    endpoint = EndpointRecord(udid="ab", first_seen=1, last_seen=1)
    assert policy.apply(endpoint) is endpoint


def test_regex_redaction_of_every_string() -> None:
    email = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
    policy = PrivacyPolicy(fields={}, redact_patterns=(email, re.compile("hunter2")))
    record = flow(
        process_args="mail bob@example.com pw hunter2",
        dst_hostname="alice@example.com",
        extra={"note": ["to carol@example.org", 1, {"deep": "dave@example.net"}], "n": 5},
    )
    got = policy.apply(record)
    assert isinstance(got, FlowRecord)
    assert got.process_args == "mail [redacted] pw [redacted]"
    assert got.dst_hostname == "[redacted]"
    assert got.user == "MYNVM\\dummy11"
    assert got.extra["note"] == ["to [redacted]", 1, {"deep": "[redacted]"}]
    assert got.extra["n"] == 5
    generic = GenericRecord(
        time=1.0, exporter="x", odid=1, template_id=1, values={"s": "x@example.com"}
    )
    redacted = policy.apply(generic)
    assert isinstance(redacted, GenericRecord)
    assert redacted.values == {"s": "[redacted]"}


def test_parse_privacy_setting() -> None:
    assert parse_privacy_setting("nvm-privacy-user", " Hash ") is Action.HASH
    assert parse_privacy_setting("nvm-privacy-drop-private-destinations", "yes") is True
    assert parse_privacy_setting("nvm-privacy-drop-private-destinations", "false") is False
    pattern = parse_privacy_setting("nvm-privacy-redact", r"\d+")
    assert isinstance(pattern, re.Pattern)
    assert parse_privacy_setting("nvm-privacy-hmac-key-file", " /k ") == "/k"
    assert {
        "nvm-privacy-user",
        "nvm-privacy-hostname",
        "nvm-privacy-process-path",
        "nvm-privacy-process-args",
        "nvm-privacy-hmac-key-file",
        "nvm-privacy-drop-private-destinations",
        "nvm-privacy-redact",
    } <= PRIVACY_KEYS


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("nvm-privacy-user", "scramble", "keep|drop|hash"),
        ("nvm-privacy-drop-private-destinations", "maybe", "true|false"),
        ("nvm-privacy-redact", "(", "regular expression"),
        ("nvm-privacy-hmac-key-file", " ", "empty path"),
        ("nvm-privacy-colour", "red", "unknown"),
    ],
)
def test_parse_privacy_setting_errors(key: str, value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_privacy_setting(key, value)
    assert info.value.key == key


def test_from_settings_errors(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="HMAC key"):
        PrivacyPolicy.from_settings([("nvm-privacy-user", "hash")])
    with pytest.raises(ConfigError, match="too short"):
        PrivacyPolicy.from_settings(
            [("nvm-privacy-hmac-key-file", "/k")], read_file=lambda path: b"short\n"
        )
    with pytest.raises(ConfigError, match="cannot read key file"):
        PrivacyPolicy.from_settings([("nvm-privacy-hmac-key-file", "/nonexistent/nvm.key")])
    policy = PrivacyPolicy.from_settings(
        [
            ("nvm-privacy-drop-private-destinations", "on"),
            ("nvm-privacy-redact", "a"),
            ("nvm-privacy-redact", "b"),
        ]
    )
    assert policy.drop_private_destinations
    assert [p.pattern for p in policy.redact_patterns] == ["a", "b"]
    assert policy.action("process_args") is Action.DROP
    assert policy.action("user") is Action.KEEP


@given(
    st.text(max_size=30),
    st.sampled_from(list(Action)),
    st.sampled_from(["user", "dst_hostname", "process_path", "process_args", "modules"]),
)
def test_apply_never_leaks_dropped_or_hashed_values(text: str, action: Action, name: str) -> None:
    policy = PrivacyPolicy(fields={name: action}, hmac_key=KEY)
    value: object = (Module(text, None),) if name == "modules" else text
    got = policy.apply(flow(**{name: value}))
    assert isinstance(got, FlowRecord)
    out = getattr(got, name)
    if action is Action.KEEP:
        assert out == value
    elif action is Action.DROP:
        assert out in (None, ())
    elif name == "modules":
        assert out == (Module(pseudo(text), None),)
    else:
        assert out == pseudo(text)


def test_flow_shortcut_matches_the_full_path() -> None:
    # Plain flows (no acted-on value, empty extra) skip the per-field work; the result is the
    # record itself, as the full path gives when nothing changes.
    plain = FlowRecord(time_start=1.0, time_end=2.0, src_addr="10.0.0.1", dst_addr="10.0.0.2")
    policy = PrivacyPolicy.default()
    assert policy.apply(plain) is plain
    assert policy._apply_typed(plain) == plain
    args = dataclasses.replace(plain, process_args="--secret")
    assert policy.apply(args) == dataclasses.replace(plain, process_args=None)
    extra = dataclasses.replace(plain, extra={"nvzFlowProcessCommandLine": "x"})
    assert policy.apply(extra) == plain
    redacting = PrivacyPolicy(redact_patterns=(re.compile("10"),))
    assert redacting.apply(plain) == dataclasses.replace(
        plain, src_addr="[redacted].0.0.1", dst_addr="[redacted].0.0.2"
    )
    private = PrivacyPolicy(drop_private_destinations=True)
    assert private.apply(plain) is None
