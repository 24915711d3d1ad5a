"""Detail blocks shared by the text and JSON outputs (pure).

occtl prints a detail block through one sequence of ``print_*`` calls that write either
``\\tLabel: value`` lines or JSON members (ocserv ``src/occtl/print.c``). This module keeps that
design: a block builder (:func:`user_block`, :func:`status_block`, :func:`session_block`) drives
an emitter, and :class:`TextEmitter` / :class:`JsonEmitter` decide the form, so the key order of
``--json`` always matches the line order of the text.

Text rules (``print.c``): empty values are skipped; a pair shares one line, the second member
after three spaces (``print_pair_value``; when only the second value is set the line starts with
those three spaces, as in ocserv); list values continue on ``\\t\\t`` lines; a port list is one
comma-separated line, and an *empty* port list still ends its line (``print_fwport_entries``),
which leaves a blank line at the end of each user block, exactly like occtl.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from typing import Protocol

from ocgate.control._model import NO_GROUP, NO_USER, SessionInfo, StatusInfo, UserInfo
from ocgate.control._units import format_bytes, format_date, format_interval, interval_between

__all__ = [
    "Emitter",
    "JsonEmitter",
    "TextEmitter",
    "session_block",
    "status_block",
    "user_block",
]

JsonValue = str | int | list[str]


class Emitter(Protocol):
    json: bool

    def single(self, label: str, value: str) -> None: ...
    def integer(self, label: str, value: int) -> None: ...
    def timed(self, label: str, date: str, interval: str) -> None: ...
    def raw(self, key: str, value: int) -> None: ...
    def pair(self, label1: str, value1: str, label2: str, value2: str) -> None: ...
    def entries(self, label: str, values: Sequence[str]) -> None: ...
    def ports(self, label: str, values: Sequence[str]) -> None: ...
    def text(self, line: str) -> None: ...


class TextEmitter:
    """Collects occtl's text lines (each without its newline)."""

    json = False

    def __init__(self) -> None:
        self.lines: list[str] = []

    def single(self, label: str, value: str) -> None:
        if value:
            self.lines.append(f"\t{label}: {value}")

    def integer(self, label: str, value: int) -> None:
        self.lines.append(f"\t{label}: {value}")

    def timed(self, label: str, date: str, interval: str) -> None:
        if date:
            self.lines.append(f"\t{label}: {date} ({interval})")

    def raw(self, key: str, value: int) -> None:
        """Machine fields exist in JSON only."""

    def pair(self, label1: str, value1: str, label2: str, value2: str) -> None:
        line = f"\t{label1}: {value1}" if value1 else ""
        if value2:
            line += f"   {label2}: {value2}"
        if line:
            self.lines.append(line)

    def entries(self, label: str, values: Sequence[str]) -> None:
        for i, value in enumerate(values):
            self.lines.append(f"\t{label}: {value}" if i == 0 else f"\t\t{value}")

    def ports(self, label: str, values: Sequence[str]) -> None:
        self.lines.append(f"\t{label}: {', '.join(values)}" if values else "")

    def text(self, line: str) -> None:
        self.lines.append(line)


class JsonEmitter:
    """Collects one JSON object with occtl's keys, in occtl's order."""

    json = True

    def __init__(self) -> None:
        self.obj: dict[str, JsonValue] = {}

    def single(self, label: str, value: str) -> None:
        if value:
            self.obj[label] = value

    def integer(self, label: str, value: int) -> None:
        self.obj[label] = value

    def timed(self, label: str, date: str, interval: str) -> None:
        if date:
            self.obj[label] = date
            self.obj[f"_{label}"] = interval

    def raw(self, key: str, value: int) -> None:
        self.obj[key] = value

    def pair(self, label1: str, value1: str, label2: str, value2: str) -> None:
        self.single(label1, value1)
        self.single(label2, value2)

    def entries(self, label: str, values: Sequence[str]) -> None:
        self.obj[label] = list(values)

    def ports(self, label: str, values: Sequence[str]) -> None:
        self.obj[label] = list(values)

    def text(self, line: str) -> None:
        """Headings and notes exist in the text form only."""


def _bool(value: bool) -> str:
    return "True" if value else "False"


def _limits(e: Emitter, user: UserInfo) -> None:
    rx = format_bytes(user.limit_rx, "/s") if user.limit_rx else ""
    tx = format_bytes(user.limit_tx, "/s") if user.limit_tx else ""
    if rx and tx:
        e.pair("Limit RX", rx, "Limit TX", tx)
    else:
        e.single("Limit RX", rx)
        e.single("Limit TX", tx)


def _traffic(e: Emitter, user: UserInfo, now: float) -> None:
    """RX/TX and average bandwidth (ocserv ``src/occtl/nl.c`` ``print_iface_stats()``)."""
    if not user.device:
        return
    elapsed = max(int(now) - int(user.connected_at), 1)
    rx_h, tx_h = format_bytes(user.rx), format_bytes(user.tx)
    avg_rx = format_bytes(user.rx // elapsed, "/s")
    avg_tx = format_bytes(user.tx // elapsed, "/s")
    if e.json:
        e.pair("RX", str(user.rx), "TX", str(user.tx))
        e.pair("_RX", rx_h, "_TX", tx_h)
        e.pair("Average RX", avg_rx, "Average TX", avg_tx)
    else:
        e.text(f"\tRX: {user.rx} ({rx_h})   TX: {user.tx} ({tx_h})")
        e.text(f"\tAverage bandwidth RX: {avg_rx}  TX: {avg_tx}")


def _user_times(e: Emitter, user: UserInfo, now: float, tz: tzinfo | None) -> None:
    e.timed(
        "Connected at",
        format_date(user.connected_at, tz),
        interval_between(now, user.connected_at),
    )
    e.raw("raw_connected_at", int(user.connected_at))
    if user.session_started_at > 0:
        e.timed(
            "Session started at",
            format_date(user.session_started_at, tz),
            interval_between(now, user.session_started_at),
        )
        e.raw("raw_session_started_at", int(user.session_started_at))


def _user_network(e: Emitter, user: UserInfo) -> None:
    e.entries("DNS", user.dns)
    e.entries("NBNS", user.nbns)
    e.entries("Split-DNS-Domains", user.split_dns)
    if user.routes:
        e.entries("Routes", user.routes)
    else:
        # ocserv prints an empty "Routes" list and then "Routes": "defaultroute" (a duplicate
        # JSON key); only the second one is kept here, which is what JSON parsers keep anyway.
        e.single("Routes", "defaultroute")
    e.entries("No-routes", user.no_routes)
    e.entries("iRoutes", user.iroutes)
    e.single("Restricted to routes", _bool(user.restrict_to_routes))
    e.ports("Restricted to ports", user.restrict_to_ports)


def _dropped(e: Emitter, user: UserInfo) -> None:
    """ocgate's addition: packets from the client its filter dropped, by reason.

    Text: one line after the traffic lines (``Dropped packets: 3 (spoofed-source 2, …)``);
    JSON: ``"Dropped packets"`` (the total) and one ``dropped_<reason>`` integer per reason.
    """
    if not user.dropped:
        return
    total = sum(count for _, count in user.dropped)
    detail = ", ".join(f"{reason} {count}" for reason, count in user.dropped)
    e.text(f"\tDropped packets: {total} ({detail})")
    e.raw("Dropped packets", total)
    for reason, count in user.dropped:
        e.raw("dropped_" + reason.replace("-", "_"), count)


def user_block(e: Emitter, user: UserInfo, *, now: float, tz: tzinfo | None) -> None:
    """One user's detail block (ocserv ``src/occtl/unix.c`` ``common_info_cmd()``)."""
    e.integer("ID", user.id)
    e.single("Node", user.node)  # ocgate: the gateway serving it (empty: not printed).
    e.pair("Username", user.username or NO_USER, "Groupname", user.groupname or NO_GROUP)
    e.single("State", user.state)
    e.single("vhost", user.vhost)
    if user.mtu is not None:
        e.pair("Device", user.device, "MTU", str(user.mtu))
    else:
        e.single("Device", user.device)
    e.pair("Remote IP", user.remote_ip, "Location", user.location)
    e.single("Local Device IP", user.local_device_ip)
    if user.ipv4 and user.ptp_ipv4:
        e.pair("IPv4", user.ipv4, "P-t-P IPv4", user.ptp_ipv4)
    if user.ipv6 and user.ptp_ipv6:
        e.pair("IPv6", user.ipv6, "P-t-P IPv6", user.ptp_ipv6)
    e.single("User-Agent", user.user_agent)
    _limits(e, user)
    _traffic(e, user, now)
    _dropped(e, user)
    e.pair("DPD", str(user.dpd), "KeepAlive", str(user.keepalive))
    e.single("Hostname", user.hostname)
    e.pair("Platform", user.platform, "Platform version", user.platform_version)
    e.pair("Device type", user.device_type, "Computer name", user.computer_name)
    e.single("Unique ID", user.unique_id)
    _user_times(e, user, now, tz)
    if e.json:
        e.single("Full session", user.session_id)
    e.single("Session", user.session)
    e.single("TLS ciphersuite", user.tls_ciphersuite)
    e.single("DTLS cipher", user.dtls_cipher)
    e.pair("CSTP compression", user.cstp_compression, "DTLS compression", user.dtls_compression)
    e.text("")
    _user_network(e, user)


def _latency(us: int) -> str:
    return "<1ms" if us < 1000 else f"{us // 1000}ms"


def _status_general(e: Emitter, st: StatusInfo, now: float, tz: tzinfo | None, debug: bool) -> None:
    e.text("General info:")
    e.single("Status", "online")
    e.single("Node", st.node)
    e.single("State", st.state)
    if st.drain_deadline > 0:
        e.timed(
            "Drain deadline",
            format_date(st.drain_deadline, tz),
            interval_between(st.drain_deadline, now),
        )
        e.raw("raw_drain_deadline", int(st.drain_deadline))
    e.integer("Server PID", st.server_pid)
    e.integer("Sec-mod PID", st.sec_mod_pid)
    e.integer("Sec-mod instance count", st.sec_mod_instances)
    e.timed("Up since", format_date(st.up_since, tz), interval_between(now, st.up_since))
    e.raw("raw_up_since", int(st.up_since))
    e.raw("uptime", int(now) - int(st.up_since))
    e.integer("Active sessions", st.active_sessions)
    e.integer("Total sessions", st.total_sessions)
    e.integer("Total authentication failures", st.total_auth_failures)
    e.integer("IPs in ban list", st.ips_in_ban_list)
    if debug:
        e.integer("Sec-mod client entries", st.sec_mod_client_entries)
        e.integer("TLS DB entries", st.tls_db_entries)
    if st.median_latency_us is not None:
        e.single("Median latency", _latency(st.median_latency_us))
        e.raw("raw_median_latency", st.median_latency_us)
    if st.stdev_latency_us is not None:
        e.single("STDEV latency", _latency(st.stdev_latency_us))
        e.raw("raw_stdev_latency", st.stdev_latency_us)


def _status_period(e: Emitter, st: StatusInfo, now: float, tz: tzinfo | None) -> None:
    e.text("Current stats period:")
    if st.last_stats_reset > 0:
        e.timed(
            "Last stats reset",
            format_date(st.last_stats_reset, tz),
            interval_between(now, st.last_stats_reset),
        )
        e.raw("raw_last_stats_reset", int(st.last_stats_reset))
    e.integer("Sessions handled", st.sessions_handled)
    e.integer("Timed out sessions", st.timed_out)
    e.integer("Timed out (idle) sessions", st.timed_out_idle)
    e.integer("Closed due to error sessions", st.closed_due_to_error)
    e.integer("Authentication failures", st.auth_failures)
    for label, raw, seconds in (
        ("Average auth time", "raw_avg_auth_time", st.avg_auth_time),
        ("Max auth time", "raw_max_auth_time", st.max_auth_time),
        ("Average session time", "raw_avg_session_time", st.avg_session_time),
        ("Max session time", "raw_max_session_time", st.max_session_time),
    ):
        e.single(label, format_interval(seconds))
        e.raw(raw, seconds)
    if st.min_mtu > 0:
        e.integer("Min MTU", st.min_mtu)
    if st.max_mtu > 0:
        e.integer("Max MTU", st.max_mtu)
    e.single("RX", format_bytes(st.rx))
    e.raw("raw_rx", st.rx)
    e.single("TX", format_bytes(st.tx))
    e.raw("raw_tx", st.tx)


def status_block(
    e: Emitter, st: StatusInfo, *, now: float, tz: tzinfo | None, debug: bool = False
) -> None:
    """``show status`` (ocserv 1.3 ``src/occtl/unix.c`` ``handle_status_cmd()``)."""
    e.text("Note: the printed statistics are not real-time; session time")
    e.text("as well as RX and TX data are updated on user disconnect")
    e.text("")
    _status_general(e, st, now, tz, debug)
    e.text("")
    _status_period(e, st, now, tz)


def session_block(e: Emitter, s: SessionInfo, *, tz: tzinfo | None) -> None:
    """One cookie session (ocserv ``src/occtl/unix.c`` ``session_info_cmd()``)."""
    e.single("Session", s.session)
    e.single("Full session" if e.json else "Full session ID", s.session_id)
    created = format_date(s.created, tz) if s.created > 0 else ""
    expires = format_date(s.expires, tz) if s.expires > 0 else ""
    e.pair("Created", created, "Expires", expires)
    e.single("State", s.state)
    e.pair("Username", s.username or NO_USER, "Groupname", s.groupname or NO_GROUP)
    e.pair("vhost", s.vhost, "User-Agent", s.user_agent)
    e.pair("Remote IP", s.remote_ip, "Location", s.location)
    if e.json:
        e.integer("session_is_open", int(s.activated))
        e.integer("tls_auth_ok", int(s.certificate_auth))
        e.integer("in_use", int(s.in_use))
    else:
        e.pair("In use", _bool(s.in_use), "Activated", _bool(s.activated))
        e.single("Certificate auth", _bool(s.certificate_auth))
    if s.last_modified is not None:
        e.single("Last Modified", format_date(s.last_modified, tz))
