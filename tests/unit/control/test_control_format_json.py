"""``--json`` output: valid JSON, occtl's key names, order and value types (ocserv 1.3 ``unix.c``;
key list in ocserv-compatibility.md §7)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC
from typing import Any

from ocgate.control import (
    BanInfo,
    Event,
    SessionInfo,
    StatusInfo,
    UserInfo,
    format_ban_points_json,
    format_bans_json,
    format_event_json,
    format_iroutes_json,
    format_session_json,
    format_sessions_json,
    format_status_json,
    format_status_offline_json,
    format_user_json,
    format_users_json,
)

NOW = 1_700_000_000.0
TZ = UTC


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    return dict(pairs)


def load(text: str) -> Any:
    assert text.endswith("\n")
    return json.loads(text, object_pairs_hook=_no_duplicates)


USER_KEYS = [
    "ID", "Username", "Groupname", "State", "vhost", "Device", "MTU", "Remote IP", "Location",
    "Local Device IP", "IPv4", "P-t-P IPv4", "IPv6", "P-t-P IPv6", "User-Agent", "Limit RX",
    "Limit TX", "RX", "TX", "_RX", "_TX", "Average RX", "Average TX", "DPD", "KeepAlive",
    "Hostname", "Connected at", "_Connected at", "raw_connected_at",
    "Session started at", "_Session started at", "raw_session_started_at", "Full session",
    "Session", "TLS ciphersuite", "DTLS cipher", "CSTP compression", "DTLS compression", "DNS",
    "NBNS", "Split-DNS-Domains", "Routes", "No-routes", "iRoutes", "Restricted to routes",
    "Restricted to ports",
]  # fmt: skip


def test_user_keys_order_and_types(user: UserInfo) -> None:
    [obj] = load(format_users_json([user], now=NOW, tz=TZ))
    assert list(obj) == USER_KEYS
    assert obj["ID"] == 7
    assert obj["MTU"] == "1400"
    assert (obj["RX"], obj["TX"], obj["_RX"], obj["_TX"]) == (
        "12345",
        "2500000",
        "12.3 kB",
        "2.5 MB",
    )
    assert (obj["Average RX"], obj["Average TX"]) == ("98 bytes/s", "20.0 kB/s")
    assert (obj["DPD"], obj["KeepAlive"]) == ("90", "32400")
    assert obj["Connected at"] == "2023-11-14 22:11"
    assert obj["_Connected at"] == " 2m:05s"
    assert obj["raw_connected_at"] == int(NOW - 125)
    assert obj["raw_session_started_at"] == int(NOW - 7200)
    assert obj["Full session"] == user.session_id
    assert obj["Session"] == "AbCdEf"
    assert obj["DNS"] == ["10.10.0.1", "fd00::1"]
    assert obj["Routes"] == ["10.0.0.0/255.0.0.0", "fd00::/48"]
    assert obj["Restricted to routes"] == "True"
    assert obj["Restricted to ports"] == ["tcp(443)", "!udp()"]


def test_user_without_routes_has_one_routes_key(minimal_user: UserInfo) -> None:
    text = format_user_json([minimal_user], now=NOW, tz=TZ)
    [obj] = load(text)
    assert obj["Routes"] == "defaultroute"
    assert text.count('"Routes"') == 1
    assert obj["DNS"] == []
    assert obj["Restricted to ports"] == []
    assert "RX" not in obj
    assert "MTU" not in obj
    assert "Hostname" not in obj
    assert obj["Groupname"] == "(none)"


def test_user_not_found_is_empty_array() -> None:
    assert load(format_user_json([], now=NOW)) == []


def test_user_strings_are_escaped(user: UserInfo) -> None:
    nasty = replace(user, user_agent='a"b\\c\n\u00e9', hostname="\x01")
    [obj] = load(format_users_json([nasty], now=NOW))
    assert obj["User-Agent"] == 'a"b\\c\n\u00e9'
    assert obj["Hostname"] == "\x01"


STATUS_KEYS = [
    "Status", "Server PID", "Sec-mod PID", "Sec-mod instance count", "Up since", "_Up since",
    "raw_up_since", "uptime", "Active sessions", "Total sessions",
    "Total authentication failures", "IPs in ban list", "Last stats reset", "_Last stats reset",
    "raw_last_stats_reset", "Sessions handled", "Timed out sessions",
    "Timed out (idle) sessions", "Closed due to error sessions", "Authentication failures",
    "Average auth time", "raw_avg_auth_time", "Max auth time", "raw_max_auth_time",
    "Average session time", "raw_avg_session_time", "Max session time", "raw_max_session_time",
    "Min MTU", "Max MTU", "RX", "raw_rx", "TX", "raw_tx",
]  # fmt: skip


def test_status_object(status: StatusInfo) -> None:
    obj = load(format_status_json(status, now=NOW, tz=TZ))
    assert list(obj) == STATUS_KEYS
    assert obj["Status"] == "online"
    assert obj["Server PID"] == 4242
    assert obj["Active sessions"] == 50
    assert obj["_Up since"] == "22days"
    assert obj["uptime"] == 22 * 86400 + 3600
    assert obj["Average auth time"] == "    0s"
    assert obj["raw_max_auth_time"] == 39
    assert obj["RX"] == "20.4 GB"
    assert obj["raw_rx"] == 20_400_000_000
    assert obj["Min MTU"] == 576


def test_status_debug_and_latency(status: StatusInfo) -> None:
    st = replace(status, median_latency_us=400, stdev_latency_us=2500)
    obj = load(format_status_json(st, now=NOW, debug=True))
    assert obj["Sec-mod client entries"] == 3
    assert obj["TLS DB entries"] == 4
    assert obj["Median latency"] == "<1ms"
    assert obj["raw_median_latency"] == 400
    assert obj["STDEV latency"] == "2ms"
    assert obj["raw_stdev_latency"] == 2500


def test_status_offline() -> None:
    assert load(format_status_offline_json()) == {"Status": "offline"}


def test_sessions_array(sessions: tuple[SessionInfo, ...]) -> None:
    objs = load(format_sessions_json(sessions, tz=TZ))
    assert list(objs[0]) == [
        "Session", "Full session", "Created", "Expires", "State", "Username", "Groupname",
        "vhost", "User-Agent", "Remote IP", "Location", "session_is_open", "tls_auth_ok", "in_use",
    ]  # fmt: skip
    assert objs[0]["session_is_open"] == 1
    assert objs[0]["in_use"] == 1
    assert objs[0]["tls_auth_ok"] == 0
    assert objs[1]["State"] == "pre-auth"
    assert "Expires" not in objs[1]
    assert len(load(format_sessions_json(sessions, valid_only=True))) == 1
    assert load(format_session_json([], tz=TZ)) == []
    assert load(format_session_json(sessions[:1], tz=TZ))[0]["Session"] == "AbCdEf"


def test_bans_arrays(bans: tuple[BanInfo, ...]) -> None:
    assert load(format_bans_json(bans, now=NOW, tz=TZ)) == [
        {"IP": "192.0.2.66", "Since": "2023-11-14 22:18", "_Since": " 5m:00s", "Score": 80}
    ]
    assert load(format_ban_points_json(bans)) == [
        {"IP": "192.0.2.66", "Score": 80},
        {"IP": "2001:db8::66", "Score": 10},
        {"IP": "192.0.2.67", "Score": 90},
    ]
    assert load(format_bans_json([], now=NOW)) == []


def test_iroutes_array(user: UserInfo, minimal_user: UserInfo) -> None:
    assert load(format_iroutes_json([user, minimal_user])) == [
        {
            "ID": 7,
            "Username": "alice",
            "vhost": "default",
            "Device": "vpns0",
            "IP": "10.10.0.2",
            "iRoutes": ["192.168.5.0/255.255.255.0"],
        },
        {"ID": 8, "Username": "bob", "vhost": "default", "Device": "", "IP": "", "iRoutes": []},
    ]


def test_event_json(user: UserInfo) -> None:
    [obj] = load(format_event_json(Event("disconnect", user, "idle timeout"), now=NOW))
    assert obj["event"] == "disconnect"
    assert obj["reason"] == "idle timeout"
    assert obj["Username"] == "alice"
    [obj] = load(format_event_json(Event("connect", user), now=NOW))
    assert "reason" not in obj
