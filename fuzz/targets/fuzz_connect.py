"""CONNECT time: the client's ``X-CSTP-*`` / ``X-DTLS-*`` headers through the tunnel planning.

Covers ``negotiate_dtls`` (``X-DTLS-Master-Secret``, ``X-DTLS(12)-CipherSuite``),
``plan_tunnel`` with ``parse_mtu_headers_untrusted``, ``valid_hostname_untrusted`` and the
``X-CSTP-Address`` reconnect hint, the ``200 CONNECTED`` headers, and the script environment
built from the request (user agent, device type, platform, host name).

Input: operations; each is one CONNECT: the payload is its header block (after the request
line), the tag's low bits pick which of two sessions sends it and the DTLS settings.

Oracle: only ``ResourceError`` (no address left) may escape the planning; the reply is a valid
``200 CONNECTED`` the front door accepts; the host name is a host name label or absent; two
sessions never hold the same address, and every address lies in the configured pools; the
script environment is text without NUL; a legacy DTLS offer carries the client's master secret.
"""

from __future__ import annotations

import ipaddress
import random

import _harness
import atheris

with atheris.instrument_imports(include=["ocgate"]):
    from _gateway import gateway_config

    from ocgate.daemon._tunnel import TunnelMeta
    from ocgate.dtls import LegacyMode, negotiate_dtls
    from ocgate.errors import ResourceError
    from ocgate.gateway import ScriptContext, connect_headers, plan_tunnel, script_environment
    from ocgate.gateway._plan import _HOSTNAME_LABEL
    from ocgate.http import FrontDoor, Request, Response
    from ocgate.session import Ipv4Pool, Ipv6Pool, MemorySessionStore

CONFIG = gateway_config(
    "mtu = 1400\nroute = 10.10.0.0/16\nroute = fd10::/64\ndns = 10.77.0.1\ndns = fd77::1\n"
    "default-domain = example.com\nmobile-dpd = 300\nmobile-idle-timeout = 2400\n"
)
NET4 = ipaddress.ip_network("10.77.0.0/24")
NET6 = ipaddress.ip_network("fd77::/64")
CIPHERS = (None, "ECDHE-RSA-AES256-GCM-SHA384", "TLS_CHACHA20_POLY1305_SHA256", "AES128-SHA")


def _request(head: bytes) -> Request | None:
    door = FrontDoor(now=0.0)
    door.receive_data(b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n" + head + b"\r\n\r\n", 0.0)
    event = door.next_event()
    return event if isinstance(event, Request) else None


def _reply(request: Request, headers: list[tuple[str, str]]) -> None:
    door = FrontDoor(now=0.0)
    raw = "".join(f"{n}: {v}\r\n" for n, v in request.headers).encode("latin-1")
    door.receive_data(b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n" + raw + b"\r\n", 0.0)
    assert isinstance(door.next_event(), Request)
    door.send_response(Response(200, "CONNECTED", tuple(headers), b""))
    assert door.data_to_send().startswith(b"HTTP/1.1 200 CONNECTED\r\n")


def test_one_input(data: bytes) -> None:
    rng = random.Random(0)
    store = MemorySessionStore(random_bytes=rng.randbytes)
    pool4 = Ipv4Pool(NET4, predictable=True)
    pool6 = Ipv6Pool(NET6, 128, predictable=True)
    sessions = [
        store.create(
            username=name,
            groups=(),
            group=None,
            now=0.0,
            user_agent="",
            remote_addr="198.18.0.2",
            cookie_timeout=300,
            session_timeout=3600,
        )[1]
        for name in ("alice", "bob")
    ]
    for tag, payload in _harness.ops(data):
        request = _request(payload)
        if request is None:
            continue
        session = sessions[tag & 1]
        headers = {name: value for name, value in reversed(request.headers)}
        offer = negotiate_dtls(
            headers,
            psk_enabled=bool(tag & 2),
            legacy_enabled=bool(tag & 4),
            tls_cipher_hint=CIPHERS[tag >> 3 & 3],
            random_bytes=rng.randbytes,
            psk=bytes(32),
        )
        if offer is not None and isinstance(offer.mode, LegacyMode):
            secret = headers["x-dtls-master-secret"].strip()
            assert offer.mode.master_secret == bytes.fromhex(secret)
        try:
            plan = plan_tunnel(
                config=CONFIG,
                session=session,
                request=request,
                now=10.0,
                offer=offer,
                pool4=pool4,
                pool6=pool6,
                sessions=store.sessions(),
            )
        except ResourceError:
            continue
        assert plan.hostname is None or _HOSTNAME_LABEL.fullmatch(plan.hostname)
        assert plan.ipv4 is None or plan.ipv4 in NET4
        assert plan.ipv6 is None or plan.ipv6.network_address in NET6
        assert 576 <= plan.mtu <= plan.base_mtu <= 16384
        _reply(request, connect_headers(CONFIG, plan))
        meta = TunnelMeta.from_request(1, request, "198.18.0.2", "198.18.0.1", 0.0)
        env = script_environment(
            CONFIG,
            ScriptContext(
                reason="connect",
                tunnel_id=meta.id,
                username=session.username,
                groupname=session.group or "",
                hostname=session.hostname or "",
                device="vpns0",
                user_agent=meta.user_agent,
                device_type=meta.device_type,
                device_platform=meta.platform,
                remote_ip=meta.remote_ip,
                local_ip=meta.local_ip,
                ipv4=plan.ipv4,
                server_ipv4=ipaddress.IPv4Address("10.77.0.1"),
                ipv6=plan.ipv6,
                server_ipv6=None,
            ),
        )
        for key, value in env.items():
            assert isinstance(value, str)
            assert "\x00" not in key + value, f"NUL in script environment {key}"
            assert "=" not in key
    held = [s.ipv4 for s in sessions if s.ipv4 is not None]
    assert len(held) == len(set(held)), "two sessions hold the same IPv4 address"
    held6 = [s.ipv6 for s in sessions if s.ipv6 is not None]
    assert len(held6) == len(set(held6)), "two sessions hold the same IPv6 address"


def seeds() -> list[bytes]:
    """openconnect 9.01's CONNECT (tests/vectors/cstp), with the DTLS headers it adds when UDP
    is allowed (anyconnect-protocol.md §5.1), and a reconnect naming the other session's lease."""
    text = (_harness.VECTORS / "cstp" / "connect_request.txt").read_text()
    lines = [line for line in text.splitlines()[1:] if line.strip()]
    head = "\r\n".join(lines).encode()
    dtls = (
        b"\r\nX-DTLS-Master-Secret: "
        + bytes(range(48)).hex().upper().encode()
        + b"\r\nX-DTLS-CipherSuite: PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC-DTLS1_2-AES128-GCM:"
        b"AES256-SHA:AES128-SHA:DES-CBC3-SHA"
        + b"\r\nX-DTLS12-CipherSuite: ECDHE-RSA-AES256-GCM-SHA384:AES128-GCM-SHA256"
        + b"\r\nX-DTLS-Accept-Encoding: lzs\r\nX-DTLS-Header-Pad: 0000"
    )
    mobile = b"\r\nX-AnyConnect-Identifier-Platform: android\r\nX-CSTP-Address: 10.77.0.2"
    return [
        _harness.op(0, head),
        _harness.op(6, head + dtls) + _harness.op(5, head + dtls + mobile),
        _harness.op(12, head + dtls) + _harness.op(13, head + mobile) + _harness.op(0, head),
        _harness.op(4, head.replace(b"65535", b"1300").replace(b"65425", b"1200") + dtls),
    ]


if __name__ == "__main__":
    _harness.main(test_one_input)
