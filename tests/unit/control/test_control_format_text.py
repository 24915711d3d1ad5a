"""Golden occtl text outputs built from ocserv-compatibility.md §7 and ocserv ``src/occtl``
(``unix.c`` ``common_user_list()``, ``common_info_cmd()``, ``session_list()``,
``session_info_cmd()``, ``handle_list_banned_cmd()``, ``handle_list_iroutes_cmd()``,
``handle_status_cmd()``; ``print.c`` ``print_pair_value()``; ``nl.c`` ``print_iface_stats()``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC

from ocgate.control import (
    BanInfo,
    Event,
    SessionInfo,
    StatusInfo,
    UserInfo,
    fix_ciphersuite,
    format_ban_points,
    format_bans,
    format_event,
    format_iroutes,
    format_session,
    format_sessions,
    format_status,
    format_status_offline,
    format_user,
    format_users,
)

NOW = 1_700_000_000.0
TZ = UTC

USER_BLOCK = (
    "\tID: 7\n"
    "\tUsername: alice   Groupname: staff\n"
    "\tState: connected\n"
    "\tvhost: default\n"
    "\tDevice: vpns0   MTU: 1400\n"
    "\tRemote IP: 198.51.100.7   Location: unknown\n"
    "\tLocal Device IP: 203.0.113.1\n"
    "\tIPv4: 10.10.0.2   P-t-P IPv4: 10.10.0.1\n"
    "\tIPv6: fd00::2   P-t-P IPv6: fd00::1\n"
    "\tUser-Agent: Open AnyConnect VPN Agent v9.01\n"
    "\tLimit RX: 16.0 kB/s   Limit TX: 2.0 MB/s\n"
    "\tRX: 12345 (12.3 kB)   TX: 2500000 (2.5 MB)\n"
    "\tAverage bandwidth RX: 98 bytes/s  TX: 20.0 kB/s\n"
    "\tDPD: 90   KeepAlive: 32400\n"
    "\tHostname: laptop\n"
    "\tConnected at: 2023-11-14 22:11 ( 2m:05s)\n"
    "\tSession started at: 2023-11-14 20:13 ( 2h:00m)\n"
    "\tSession: AbCdEf\n"
    "\tTLS ciphersuite: (TLS1.3)-(ECDHE-SECP256R1)-(RSA-PSS-RSAE-SHA256)-(AES-256-GCM)\n"
    "\tDTLS cipher: (DTLS1.2)-(RSA)-(AES-256-GCM)\n"
    "\tCSTP compression: lzs   DTLS compression: oc-lz4\n"
    "\n"
    "\tDNS: 10.10.0.1\n"
    "\t\tfd00::1\n"
    "\tNBNS: 10.10.0.3\n"
    "\tSplit-DNS-Domains: corp.example\n"
    "\tRoutes: 10.0.0.0/255.0.0.0\n"
    "\t\tfd00::/48\n"
    "\tNo-routes: 10.9.0.0/255.255.0.0\n"
    "\tiRoutes: 192.168.5.0/255.255.255.0\n"
    "\tRestricted to routes: True\n"
    "\tRestricted to ports: tcp(443), !udp()\n"
)

# Empty values are omitted; no device means no RX/TX lines (print_iface_stats returns early);
# no routes prints "defaultroute"; an empty port list still ends its line (print_fwport_entries).
MINIMAL_BLOCK = (
    "\tID: 8\n"
    "\tUsername: bob   Groupname: (none)\n"
    "\tState: authenticating\n"
    "\tvhost: default\n"
    "\tRemote IP: 192.0.2.9   Location: unknown\n"
    "\tDPD: 0   KeepAlive: 0\n"
    "\tConnected at: 2023-11-14 22:12 (   30s)\n"
    "\tSession: ZyXwVu\n"
    "\n"
    "\tRoutes: defaultroute\n"
    "\tRestricted to routes: False\n"
    "\n"
)


def test_show_user_detail_block(user: UserInfo) -> None:
    assert format_user([user], now=NOW, tz=TZ) == USER_BLOCK


def test_show_user_minimal_block(minimal_user: UserInfo) -> None:
    assert format_user([minimal_user], now=NOW, tz=TZ) == MINIMAL_BLOCK


def test_show_user_several_blocks_are_separated(user: UserInfo, minimal_user: UserInfo) -> None:
    assert format_user([user, minimal_user], now=NOW, tz=TZ) == USER_BLOCK + "\n" + MINIMAL_BLOCK


def test_show_user_not_found() -> None:
    assert format_user([], now=NOW, tz=TZ) == "user or ID not found\n"


def test_single_limit_and_lone_second_pair_member(user: UserInfo) -> None:
    text = format_user([replace(user, limit_rx=None, remote_ip="")], now=NOW, tz=TZ)
    assert "\tLimit TX: 2.0 MB/s\n" in text
    assert "Limit RX" not in text
    # print_pair_value() with only the second value: three spaces, no tab (as ocserv).
    assert "\n   Location: unknown\n" in text


def test_ipv4_pair_needs_both_addresses(user: UserInfo) -> None:
    text = format_user([replace(user, ptp_ipv4="", mtu=None)], now=NOW, tz=TZ)
    assert "IPv4" not in text.replace("IPv6", "")
    assert "\tDevice: vpns0\n" in text


def test_average_bandwidth_right_after_connect(user: UserInfo) -> None:
    text = format_user([replace(user, connected_at=NOW)], now=NOW, tz=TZ)
    assert "\tAverage bandwidth RX: 12.3 kB/s  TX: 2.5 MB/s\n" in text


USERS_TABLE = (
    "      id     user    vhost             ip         vpn-ip device   since"
    "    dtls-cipher    status\n"
    "       7    alice  default   198.51.100.7      10.10.0.2  vpns0  2m:05s"
    "  (AES-256-GCM) connected\n"
    "       8      bob  default      192.0.2.9" + " " * 26 + "30s      (no-dtls) authenticating\n"
)


def test_show_users_table(user: UserInfo, minimal_user: UserInfo) -> None:
    assert format_users([user, minimal_user], now=NOW, tz=TZ) == USERS_TABLE


def test_show_users_of_several_nodes_name_each_row_s_node(
    user: UserInfo, minimal_user: UserInfo
) -> None:
    rows = [replace(user, node="gw-a"), replace(minimal_user, node="gw-b")]
    lines = format_users(rows, now=NOW, tz=TZ).splitlines()
    assert lines[0] == USERS_TABLE.splitlines()[0] + "       node"
    assert lines[1] == USERS_TABLE.splitlines()[1] + "       gw-a"
    assert lines[2].endswith("authenticating       gw-b")
    # One node's listing stays occtl's, whatever its node name.
    same = [replace(user, node="gw-a"), replace(minimal_user, node="gw-a")]
    assert format_users(same, now=NOW, tz=TZ) == USERS_TABLE


def test_show_users_empty_prints_nothing() -> None:
    assert format_users([], now=NOW) == ""


def test_show_users_ipv6_only_and_no_username(minimal_user: UserInfo) -> None:
    text = format_users([replace(minimal_user, username="", ipv6="fd00::9")], now=NOW)
    assert text.splitlines()[1].split()[1:4] == ["(none)", "default", "192.0.2.9"]
    assert " fd00::9 " in text


def test_fix_ciphersuite() -> None:
    assert fix_ciphersuite("(DTLS1.2)-(RSA)-(AES-256-GCM)") == "(AES-256-GCM)"
    assert fix_ciphersuite("(DTLS1.2)-(RSA)-(AES-128-GCM)") == "(AES-128-GCM)"
    assert fix_ciphersuite("(DTLS0.9)-(RSA)-(AES-256-CBC)-(SHA1)") == "(AES-256-CBC)-(SHA1)"
    assert fix_ciphersuite("(DTLS1.2)-(PSK)-(AES-256-GCM)") == "(AES-256-GCM)"
    assert fix_ciphersuite("(DTLS1.2)-(PSK)") == "(no-dtls)"  # too short, as occtl
    assert fix_ciphersuite("") == "(no-dtls)"
    assert fix_ciphersuite("(TLS1.3)-(ECDHE-RSA)-(AES-256-GCM)") == "(no-dtls)"


STATUS_TEXT = (
    "Note: the printed statistics are not real-time; session time\n"
    "as well as RX and TX data are updated on user disconnect\n"
    "\n"
    "General info:\n"
    "\tStatus: online\n"
    "\tServer PID: 4242\n"
    "\tSec-mod PID: 4242\n"
    "\tSec-mod instance count: 1\n"
    "\tUp since: 2023-10-23 21:13 (22days)\n"
    "\tActive sessions: 50\n"
    "\tTotal sessions: 15760\n"
    "\tTotal authentication failures: 1308\n"
    "\tIPs in ban list: 2\n"
    "\n"
    "Current stats period:\n"
    "\tLast stats reset: 2023-11-13 05:07 (41h:06m)\n"
    "\tSessions handled: 2570\n"
    "\tTimed out sessions: 1\n"
    "\tTimed out (idle) sessions: 17\n"
    "\tClosed due to error sessions: 2196\n"
    "\tAuthentication failures: 131\n"
    "\tAverage auth time:     0s\n"
    "\tMax auth time:    39s\n"
    "\tAverage session time:  2m:00s\n"
    "\tMax session time:  7days\n"
    "\tMin MTU: 576\n"
    "\tMax MTU: 1354\n"
    "\tRX: 20.4 GB\n"
    "\tTX: 31.0 GB\n"
)


def test_show_status(status: StatusInfo) -> None:
    assert format_status(status, now=NOW, tz=TZ) == STATUS_TEXT


def test_show_status_debug_and_latency(status: StatusInfo) -> None:
    st = replace(status, median_latency_us=400, stdev_latency_us=2500)
    text = format_status(st, now=NOW, tz=TZ, debug=True)
    assert (
        "\tIPs in ban list: 2\n"
        "\tSec-mod client entries: 3\n"
        "\tTLS DB entries: 4\n"
        "\tMedian latency: <1ms\n"
        "\tSTDEV latency: 2ms\n"
        "\n"
        "Current stats period:\n"
    ) in text


def test_show_status_without_reset_or_mtu(status: StatusInfo) -> None:
    text = format_status(replace(status, last_stats_reset=0, min_mtu=0, max_mtu=0), now=NOW)
    assert "Last stats reset" not in text
    assert "MTU" not in text


def test_show_status_offline() -> None:
    assert format_status_offline() == STATUS_TEXT.split("\n\n")[0] + "\n\tStatus: offline\n"


SESSIONS_ALL = (
    "session     user    vhost             ip               user agent  created   status\n"
    "AbCdEf    alice  default   198.51.100.7 Open AnyConnect VPN Agen   2h:00m authenticated\n"
    "QwErTy   (none)  default      192.0.2.9    1m:01s pre-auth\n"
)


def test_show_sessions_all(sessions: tuple[SessionInfo, ...]) -> None:
    assert format_sessions(sessions, now=NOW, tz=TZ) == SESSIONS_ALL


def test_show_sessions_valid(sessions: tuple[SessionInfo, ...]) -> None:
    text = format_sessions(sessions, now=NOW, tz=TZ, valid_only=True)
    assert text == "".join(SESSIONS_ALL.splitlines(keepends=True)[:2])
    assert format_sessions(sessions[1:], now=NOW, valid_only=True) == ""


SESSION_BLOCK = (
    "\tSession: AbCdEf\n"
    "\tFull session ID: AbCdEfGhIjKlMnOpQrStUvWxYz0=\n"
    "\tCreated: 2023-11-14 20:13   Expires: 2023-11-14 23:13\n"
    "\tState: authenticated\n"
    "\tUsername: alice   Groupname: staff\n"
    "\tvhost: default   User-Agent: Open AnyConnect VPN Agent v9.01 (Linux x86_64)\n"
    "\tRemote IP: 198.51.100.7   Location: unknown\n"
    "\tIn use: True   Activated: True\n"
    "\tCertificate auth: False\n"
)


def test_show_session(sessions: tuple[SessionInfo, ...]) -> None:
    assert format_session(sessions[:1], tz=TZ) == SESSION_BLOCK
    second = format_session(sessions[1:], tz=TZ)
    assert "\tCreated: 2023-11-14 22:12\n" in second  # no expiry: the pair's second half is omitted
    assert "User-Agent" not in second
    both = format_session(sessions, tz=TZ)
    assert both.startswith(SESSION_BLOCK + "\n\tSession: QwErTy\n")


def test_show_session_last_modified(sessions: tuple[SessionInfo, ...]) -> None:
    text = format_session([replace(sessions[0], last_modified=NOW)], tz=TZ)
    assert text.endswith("\tLast Modified: 2023-11-14 22:13\n")


def test_show_session_not_found() -> None:
    assert format_session([], tz=TZ) == "Session ID not found or expired\n"


def test_show_ip_bans_lists_only_running_bans(bans: tuple[BanInfo, ...]) -> None:
    assert format_bans(bans, now=NOW, tz=TZ) == (
        "             IP      score                        expires\n"
        "     192.0.2.66         80               2023-11-14 22:18 ( 5m:00s)\n"
    )
    assert format_bans(bans[1:], now=NOW, tz=TZ) == ""


def test_show_ip_ban_points(bans: tuple[BanInfo, ...]) -> None:
    assert format_ban_points(bans) == (
        "             IP      score\n"
        "     192.0.2.66         80\n"
        "   2001:db8::66         10\n"
        "     192.0.2.67         90\n"
    )
    assert format_ban_points([]) == ""


def test_show_iroutes(user: UserInfo, minimal_user: UserInfo) -> None:
    two = replace(user, iroutes=(*user.iroutes, "fd01::/64"))
    assert format_iroutes([two, minimal_user]) == (
        "    id     user    vhost device           vpn-ip                       iroute\n"
        "     7    alice  default  vpns0        10.10.0.2    192.168.5.0/255.255.255.0\n"
        "     7    alice  default  vpns0        10.10.0.2                    fd01::/64\n"
    )
    assert format_iroutes([minimal_user]).count("\n") == 1  # header only, as occtl
    assert format_iroutes([]) == ""


def test_events_lines(user: UserInfo) -> None:
    assert format_event(Event("connect", user), now=NOW) == (
        "default: connected user 'alice' (7) from 198.51.100.7 with IP 10.10.0.2\n"
    )
    assert format_event(Event("disconnect", user, "user disconnected"), now=NOW) == (
        "default: disconnect user 'alice' (7) from 198.51.100.7 with IP 10.10.0.2 "
        "(reason: user disconnected, time:  2m:05s)\n"
    )
    assert "(reason: unknown," in format_event(Event("disconnect", user), now=NOW)
