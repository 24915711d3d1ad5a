"""Request encoding and reply checking (``ocgate.radius._codec``), checked with pyrad's
server-side code."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pyrad.packet  # type: ignore[import-untyped]
import pytest
from _radius_fakeserver import reply
from hypothesis import given
from hypothesis import strategies as st

from ocgate.errors import RemoteProtocolError
from ocgate.radius import AccountingSession, SessionStats, TerminateCause
from ocgate.radius._codec import (
    NasInfo,
    clip_text,
    decode_reply_untrusted,
    encode_access_request,
    encode_accounting_request,
)
from ocgate.radius._constants import AcctStatusType, Attr, PacketCode
from ocgate.radius._dictionary import radius_dictionary

SECRET = b"s3cret"


def _counter(seed: int = 0):  # type: ignore[no-untyped-def]
    state = [seed]

    def random_bytes(n: int) -> bytes:
        out = bytes((state[0] + i) % 256 for i in range(n))
        state[0] += n
        return out

    return random_bytes


def _access(state: bytes | None = None, password: str = "pässword"):  # type: ignore[no-untyped-def]
    return encode_access_request(
        secret=SECRET,
        username="alice",
        password=password,
        nas=NasInfo(identifier="gw1", ip=ipaddress.IPv4Address("192.0.2.1")),
        client_ip="198.51.100.7",
        user_agent="Open AnyConnect VPN Agent v9.01",
        session_id="sid-1",
        state=state,
        random_bytes=_counter(),
    )


def _server_view(data: bytes):  # type: ignore[no-untyped-def]
    return pyrad.packet.AuthPacket(packet=data, secret=SECRET, dict=radius_dictionary())


def test_access_request_attributes() -> None:
    request = _access()
    seen = _server_view(request.data)
    assert seen.code == PacketCode.ACCESS_REQUEST
    assert seen.id == 0  # the first byte of the injected random source
    assert seen.authenticator == bytes(range(1, 17))
    assert seen["User-Name"] == ["alice"]
    assert seen.PwDecrypt(seen["User-Password"][0]) == "pässword"
    assert seen["NAS-Identifier"] == ["gw1"]
    assert seen["NAS-IP-Address"] == ["192.0.2.1"]
    assert seen["Calling-Station-Id"] == ["198.51.100.7"]
    assert seen["Connect-Info"] == ["Open AnyConnect VPN Agent v9.01"]
    assert seen["Acct-Session-Id"] == ["sid-1"]
    assert seen["Service-Type"] == [8]
    assert seen["NAS-Port-Type"] == [0]
    assert "NAS-Port" not in seen
    assert "State" not in seen
    assert seen.message_authenticator
    assert seen.verify_message_authenticator()


def test_access_request_state_and_ipv6_nas() -> None:
    request = encode_access_request(
        secret=SECRET,
        username="bob",
        password="123456",
        nas=NasInfo(ip=ipaddress.IPv6Address("2001:db8::1")),
        client_ip="2001:db8::7",
        user_agent=None,
        session_id=None,
        state=b"\x01\x02\x03",
    )
    seen = _server_view(request.data)
    assert seen["State"] == [b"\x01\x02\x03"]
    assert seen["NAS-IPv6-Address"] == ["2001:db8::1"]
    assert "NAS-Identifier" not in seen
    assert "Connect-Info" not in seen


def test_access_request_limits() -> None:
    with pytest.raises(ValueError, match="user name"):
        encode_access_request(
            secret=SECRET, username="u" * 254, password="p", nas=NasInfo(), client_ip="x",
            user_agent=None, session_id=None, state=None,
        )  # fmt: skip
    with pytest.raises(ValueError, match="password"):
        _access(password="p" * 129)
    long_agent = encode_access_request(
        secret=SECRET, username="u", password="p", nas=NasInfo(), client_ip="x",
        user_agent="ä" * 300, session_id=None, state=None,
    )  # fmt: skip
    assert _server_view(long_agent.data)["Connect-Info"] == ["ä" * 126]


def test_clip_text() -> None:
    assert clip_text("abc", 2) == "ab"
    assert clip_text("aä", 2) == "a"


@pytest.mark.parametrize(
    "code", [PacketCode.ACCESS_ACCEPT, PacketCode.ACCESS_REJECT, PacketCode.ACCESS_CHALLENGE]
)
def test_access_reply_roundtrip(code: PacketCode) -> None:
    request = _access()
    raw = reply(
        _server_view(request.data),
        code,
        Framed_IP_Address="10.0.0.5",
        Class=[b"OU=a", b"OU=b"],
        MS_Primary_DNS_Server="10.0.0.1",
    )
    decoded = decode_reply_untrusted(request, raw + b"\0padding")
    assert decoded.code == code
    assert (Attr.FRAMED_IP_ADDRESS, bytes([10, 0, 0, 5])) in decoded.attributes
    assert [v for k, v in decoded.attributes if k == Attr.CLASS] == [b"OU=a", b"OU=b"]
    assert ((311, 28), bytes([10, 0, 0, 1])) in decoded.attributes


def _resign(request_authenticator: bytes, body: bytes) -> bytes:
    import hashlib

    digest = hashlib.md5(body[:4] + request_authenticator + body[20:] + SECRET).digest()
    return body[:4] + digest + body[20:]


def test_reply_checks() -> None:
    request = _access()
    good = reply(_server_view(request.data), PacketCode.ACCESS_ACCEPT, Reply_Message="hi")
    decode_reply_untrusted(request, good)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(RemoteProtocolError, match="authenticator"):
        decode_reply_untrusted(request, tampered)
    # A correct Response Authenticator over a wrong Message-Authenticator is still refused.
    ma_at = good.index(bytes([80, 18]), 20)
    forged = bytearray(good)
    forged[ma_at + 2] ^= 1
    with pytest.raises(RemoteProtocolError):
        decode_reply_untrusted(request, _resign(request.packet.authenticator, bytes(forged)))
    wrong_id = bytearray(good)
    wrong_id[1] ^= 1
    with pytest.raises(RemoteProtocolError):
        decode_reply_untrusted(request, bytes(wrong_id))
    wrong_code = bytes([PacketCode.ACCOUNTING_RESPONSE]) + good[1:]
    with pytest.raises(RemoteProtocolError, match="does not answer"):
        decode_reply_untrusted(request, wrong_code)
    with pytest.raises(RemoteProtocolError, match="header"):
        decode_reply_untrusted(request, good[:10])
    with pytest.raises(RemoteProtocolError, match="length"):
        decode_reply_untrusted(request, good[:2] + struct.pack("!H", 5000) + good[4:])
    with pytest.raises(RemoteProtocolError, match="attribute"):
        decode_reply_untrusted(request, good[:2] + struct.pack("!H", 23) + good[4:23])


def test_vendor_attribute_forms() -> None:
    request = _access()
    base = reply(_server_view(request.data), PacketCode.ACCESS_ACCEPT, message_authenticator=False)
    assert bytes([80, 18]) not in base[20:]
    odd_vsa = bytes([26, 8]) + struct.pack("!I", 311) + bytes([28, 9])  # sub-length too long
    body = base[:2] + struct.pack("!H", len(base) + len(odd_vsa)) + base[4:] + odd_vsa
    decoded = decode_reply_untrusted(request, _resign(request.packet.authenticator, body))
    assert (26, odd_vsa[2:]) in decoded.attributes


def test_accounting_request() -> None:
    session = AccountingSession(
        username="alice",
        session_id="sid-9",
        client_ip="198.51.100.7",
        user_agent="AnyConnect",
        framed_ipv4=ipaddress.IPv4Address("10.77.0.2"),
        framed_ipv6=ipaddress.IPv6Address("fd77::2"),
        classes=(b"OU=eng",),
    )
    stats = SessionStats(
        bytes_in=5 * 2**32 + 7,
        bytes_out=2**32 - 1,
        packets_in=2**33,
        packets_out=3,
        session_time=99,
    )
    request = encode_accounting_request(
        secret=SECRET,
        status=AcctStatusType.STOP,
        session=session,
        nas=NasInfo(identifier="gw1"),
        stats=stats,
        cause=TerminateCause.IDLE_TIMEOUT,
    )
    seen = pyrad.packet.AcctPacket(packet=request.data, secret=SECRET, dict=radius_dictionary())
    assert seen.VerifyAcctRequest()
    assert seen["Acct-Status-Type"] == [2]
    assert seen["Acct-Terminate-Cause"] == [4]
    assert seen["Acct-Input-Octets"] == [7]
    assert seen["Acct-Input-Gigawords"] == [5]
    assert seen["Acct-Output-Octets"] == [2**32 - 1]
    assert seen["Acct-Output-Gigawords"] == [0]
    assert seen["Acct-Input-Packets"] == [2**32 - 1]
    assert seen["Acct-Output-Packets"] == [3]
    assert seen["Acct-Session-Time"] == [99]
    assert seen["Acct-Session-Id"] == ["sid-9"]
    assert seen["Service-Type"] == [2]
    assert seen["Framed-Protocol"] == [1]
    assert seen["Acct-Authentic"] == [1]
    assert seen["Framed-IP-Address"] == ["10.77.0.2"]
    assert seen["Framed-IPv6-Address"] == ["fd77::2"]
    assert seen["Class"] == [b"OU=eng"]
    response = seen.CreateReply()
    decoded = decode_reply_untrusted(request, response.ReplyPacket())
    assert decoded.code == PacketCode.ACCOUNTING_RESPONSE


@given(st.binary(max_size=200))
def test_fuzz_decode_reply(data: bytes) -> None:
    request = _access()
    with contextlib.suppress(RemoteProtocolError):
        decode_reply_untrusted(request, data)


@given(st.binary(max_size=120), st.sampled_from([2, 3, 11]))
def test_fuzz_decode_reply_with_valid_header(body: bytes, code: int) -> None:
    request = _access()
    head = struct.pack("!BBH", code, request.packet.id, 20 + len(body)) + bytes(16)
    with contextlib.suppress(RemoteProtocolError):
        decode_reply_untrusted(request, _resign(request.packet.authenticator, head + body))
