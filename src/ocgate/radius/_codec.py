"""Encoding RADIUS requests and checking replies, over pyrad's packet code (no I/O here).

Theory of operation: a request is built once per server (the secret differs) and retransmitted
unchanged, so a retry keeps its Identifier and Request Authenticator (RFC 5080 section 2.2.1).
pyrad hides User-Password (RFC 2865 section 5.2), computes the accounting Request Authenticator
(RFC 2866 section 3) and the Message-Authenticator (RFC 3579 section 3.2) that every
Access-Request carries as the BlastRADIUS countermeasure (CVE-2024-3596). A reply is accepted
only if its code answers the request and pyrad's ``VerifyReply`` passes (Identifier, Response
Authenticator, and the Message-Authenticator when the reply has one); its attributes are then
walked here from the raw bytes, in packet order, and nothing is decoded through the dictionary.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ocgate.errors import RemoteProtocolError
from ocgate.radius._attrs import AttrKey, split_gigawords
from ocgate.radius._constants import (
    MAX_ATTRIBUTE_VALUE,
    AcctAuthentic,
    AcctStatusType,
    Attr,
    FramedProtocol,
    NasPortType,
    PacketCode,
    ServiceType,
    TerminateCause,
)
from ocgate.radius._dictionary import pyrad, radius_dictionary
from ocgate.radius._results import AccountingSession, SessionStats

__all__ = [
    "EncodedRequest",
    "NasInfo",
    "RadiusReply",
    "clip_text",
    "decode_reply_untrusted",
    "encode_access_request",
    "encode_accounting_request",
]

_HEADER = struct.Struct("!BBH16s")  # Code (1) | Identifier (1) | Length (2) | Authenticator (16)
_ATTR_HEADER = struct.Struct("!BB")  # Type (1) | Length (1), RFC 2865 section 5
_VENDOR_ID = struct.Struct("!I")  # Vendor-Id (4) opens a Vendor-Specific value, section 5.26
_ANSWERS = {
    PacketCode.ACCESS_REQUEST: frozenset(
        {PacketCode.ACCESS_ACCEPT, PacketCode.ACCESS_REJECT, PacketCode.ACCESS_CHALLENGE}
    ),
    PacketCode.ACCOUNTING_REQUEST: frozenset({PacketCode.ACCOUNTING_RESPONSE}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NasInfo:
    """What identifies the NAS in every request.

    :param identifier: NAS-Identifier, if configured.
    :param ip: NAS-IP-Address or NAS-IPv6-Address, if known.
    """

    identifier: str | None = None
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class RadiusReply:
    """A verified reply: its code and raw attributes in packet order (``(vendor, type)`` keys for
    vendor attributes)."""

    code: int
    attributes: tuple[tuple[AttrKey, bytes], ...]


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """A request ready to send, and what is needed to check its reply."""

    data: bytes
    code: PacketCode
    packet: Any = field(repr=False, compare=False)
    """The pyrad packet (holds the secret and the Request Authenticator)."""


def clip_text(text: str, limit: int = MAX_ATTRIBUTE_VALUE) -> str:
    """``text`` cut to at most ``limit`` UTF-8 octets, on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _add_nas(pkt: Any, nas: NasInfo) -> None:
    if nas.identifier:
        pkt["NAS-Identifier"] = clip_text(nas.identifier)
    if isinstance(nas.ip, ipaddress.IPv4Address):
        pkt["NAS-IP-Address"] = str(nas.ip)
    elif isinstance(nas.ip, ipaddress.IPv6Address):
        pkt["NAS-IPv6-Address"] = str(nas.ip)


def encode_access_request(
    *,
    secret: bytes,
    username: str,
    password: str,
    nas: NasInfo,
    client_ip: str,
    user_agent: str | None,
    session_id: str | None,
    state: bytes | None,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> EncodedRequest:
    """An Access-Request with the attributes ocserv sends (ocserv-compatibility §6).

    :raises ValueError: the user name or password does not fit into its attribute.
    """
    if len(username.encode("utf-8")) > MAX_ATTRIBUTE_VALUE:
        raise ValueError("user name too long")
    if len(password.encode("utf-8")) > 128:
        raise ValueError("password too long")
    pkt = pyrad.packet.AuthPacket(
        code=PacketCode.ACCESS_REQUEST,
        id=random_bytes(1)[0],
        secret=secret,
        authenticator=random_bytes(16),
        dict=radius_dictionary(),
    )
    pkt.add_message_authenticator()
    pkt["User-Name"] = username
    pkt["User-Password"] = pkt.PwCrypt(password)
    _add_nas(pkt, nas)
    pkt["Calling-Station-Id"] = clip_text(client_ip)
    if user_agent:
        pkt["Connect-Info"] = clip_text(user_agent)
    if session_id:
        pkt["Acct-Session-Id"] = clip_text(session_id)
    pkt["Service-Type"] = ServiceType.AUTHENTICATE_ONLY.value
    pkt["NAS-Port-Type"] = NasPortType.ASYNC.value
    if state is not None:
        pkt["State"] = state
    return EncodedRequest(pkt.RequestPacket(), PacketCode.ACCESS_REQUEST, pkt)


def _add_stats(pkt: Any, stats: SessionStats) -> None:
    pkt["Acct-Session-Time"] = min(max(stats.session_time, 0), 0xFFFFFFFF)
    giga_in, octets_in = split_gigawords(stats.bytes_in)
    giga_out, octets_out = split_gigawords(stats.bytes_out)
    pkt["Acct-Input-Octets"] = octets_in
    pkt["Acct-Output-Octets"] = octets_out
    pkt["Acct-Input-Gigawords"] = giga_in
    pkt["Acct-Output-Gigawords"] = giga_out
    # The packet counters have no gigawords (RFC 2866 section 5.8): they saturate.
    pkt["Acct-Input-Packets"] = min(stats.packets_in, 0xFFFFFFFF)
    pkt["Acct-Output-Packets"] = min(stats.packets_out, 0xFFFFFFFF)


def encode_accounting_request(
    *,
    secret: bytes,
    status: AcctStatusType,
    session: AccountingSession,
    nas: NasInfo,
    stats: SessionStats | None = None,
    cause: TerminateCause | None = None,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> EncodedRequest:
    """An Accounting-Request as ocserv ``src/acct/radius.c`` sends it.

    :param stats: counters (Interim-Update and Stop).
    :param cause: Acct-Terminate-Cause (Stop).
    """
    pkt = pyrad.packet.AcctPacket(
        code=PacketCode.ACCOUNTING_REQUEST,
        id=random_bytes(1)[0],
        secret=secret,
        dict=radius_dictionary(),
    )
    pkt["Acct-Status-Type"] = status.value
    if cause is not None:
        pkt["Acct-Terminate-Cause"] = cause.value
    _add_nas(pkt, nas)
    pkt["User-Name"] = clip_text(session.username)
    pkt["Service-Type"] = ServiceType.FRAMED.value
    pkt["Framed-Protocol"] = FramedProtocol.PPP.value
    if session.framed_ipv4 is not None:
        pkt["Framed-IP-Address"] = str(session.framed_ipv4)
    if session.framed_ipv6 is not None:
        pkt["Framed-IPv6-Address"] = str(session.framed_ipv6)
    pkt["Calling-Station-Id"] = clip_text(session.client_ip)
    pkt["Acct-Session-Id"] = clip_text(session.session_id)
    pkt["Acct-Authentic"] = AcctAuthentic.RADIUS.value
    if session.user_agent:
        pkt["Connect-Info"] = clip_text(session.user_agent)
    if session.classes:
        pkt["Class"] = list(session.classes)
    if stats is not None:
        _add_stats(pkt, stats)
    return EncodedRequest(pkt.RequestPacket(), PacketCode.ACCOUNTING_REQUEST, pkt)


def _vendor_attributes(value: bytes) -> list[tuple[AttrKey, bytes]] | None:
    # RFC 2865 section 5.26 suggested format: Vendor-Id (4) then Type (1) | Length (1) | Value.
    if len(value) < _VENDOR_ID.size + _ATTR_HEADER.size:
        return None
    (vendor,) = _VENDOR_ID.unpack_from(value)
    found: list[tuple[AttrKey, bytes]] = []
    offset = _VENDOR_ID.size
    while offset < len(value):
        if len(value) - offset < _ATTR_HEADER.size:
            return None
        kind, length = _ATTR_HEADER.unpack_from(value, offset)
        if length < _ATTR_HEADER.size or offset + length > len(value):
            return None
        found.append(((vendor, kind), value[offset + _ATTR_HEADER.size : offset + length]))
        offset += length
    return found


def _attributes_untrusted(data: bytes) -> tuple[tuple[AttrKey, bytes], ...]:
    found: list[tuple[AttrKey, bytes]] = []
    offset = _HEADER.size
    while offset < len(data):
        if len(data) - offset < _ATTR_HEADER.size:
            raise RemoteProtocolError("truncated attribute header")
        kind, length = _ATTR_HEADER.unpack_from(data, offset)
        if length < _ATTR_HEADER.size or offset + length > len(data):
            raise RemoteProtocolError("attribute length out of range")
        value = data[offset + _ATTR_HEADER.size : offset + length]
        vendor = _vendor_attributes(value) if kind == Attr.VENDOR_SPECIFIC else None
        found.extend(vendor if vendor is not None else [(kind, value)])
        offset += length
    return tuple(found)


def decode_reply_untrusted(request: EncodedRequest, data: bytes) -> RadiusReply:
    """Check that ``data`` is a genuine reply to ``request`` and return its attributes.

    :raises RemoteProtocolError: malformed, not an answer to this request, or failing the
        Response Authenticator or Message-Authenticator check.
    """
    if len(data) < _HEADER.size:
        raise RemoteProtocolError("shorter than a RADIUS header")
    code, _, length, _ = _HEADER.unpack_from(data)
    if not _HEADER.size <= length <= len(data) or length > 4096:
        raise RemoteProtocolError("bad RADIUS length")
    data = data[:length]  # RFC 2865 section 3: octets past Length are padding.
    if code not in _ANSWERS[request.code]:
        raise RemoteProtocolError(f"code {code} does not answer code {request.code}")
    attributes = _attributes_untrusted(data)
    try:
        reply = pyrad.packet.Packet(packet=data, secret=request.packet.secret)
        genuine = request.packet.VerifyReply(reply, data)
    except Exception as exc:  # pyrad raises assorted types on bad input; all mean "not genuine".
        raise RemoteProtocolError(f"undecodable reply: {exc.__class__.__name__}") from None
    if not genuine:
        raise RemoteProtocolError("reply failed the authenticator check")
    return RadiusReply(code, attributes)
