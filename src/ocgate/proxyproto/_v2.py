"""The version 2 (binary) header (proxy-protocol.txt §2.2).

Theory of operation. The header is 16 fixed bytes, then ``length`` more::

    0               12        13        14       16                 16 + length
    | signature (12) | ver|cmd | fam|prot | length | addresses | TLVs |

* The signature is :data:`~ocgate.proxyproto._header.V2_SIGNATURE`; a mismatch in any byte that
  has arrived refuses the connection at once.
* Version must be 2; the command LOCAL (0) or PROXY (1); anything else is refused (§2.2:
  "Receivers must drop connections presenting unexpected values here").
* ``length`` over :data:`~ocgate.proxyproto._header.V2_MAX_PAYLOAD` (520) is refused as soon as
  the 16 fixed bytes are in, before waiting for the rest. The whole header is then awaited.
* LOCAL: family, addresses and TLVs are skipped (§2.2: "discard the protocol block including the
  family which is ignored").
* PROXY: a family over UNIX (3) or a transport over DGRAM (2) is refused. The address block of a
  family/transport pair the specification sizes (TCP or UDP over IPv4: 12 bytes; over IPv6: 36;
  UNIX: 216) must fit in ``length``, and the bytes after it must be well-formed TLVs (type, 16-bit
  length, value), which are skipped: ocgate uses none of them. Only TCP over IPv4 (``\\x11``) and
  IPv6 (``\\x21``) yield an address; every other valid pair falls back to the connection's own
  endpoints, as the specification allows a receiver to.
"""

from __future__ import annotations

import ipaddress
import struct

from ocgate.errors import BadProxyHeader
from ocgate.proxyproto._header import (
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    Command,
    Family,
    ProxyHeader,
    Transport,
)

__all__ = ["pull_v2_untrusted"]

FIXED = struct.Struct("!12sBBH")
"""Signature (12), version << 4 | command, family << 4 | transport, length of the rest."""

_VERSION = 2
_ADDRESS_BLOCK = {
    (Family.INET, Transport.STREAM): 12,
    (Family.INET, Transport.DGRAM): 12,
    (Family.INET6, Transport.STREAM): 36,
    (Family.INET6, Transport.DGRAM): 36,
    (Family.UNIX, Transport.STREAM): 216,
    (Family.UNIX, Transport.DGRAM): 216,
}
"""§2.2 "In practice, the following protocol bytes are expected": the address block's size."""
_TLV = struct.Struct("!BH")


def pull_v2_untrusted(data: bytes | bytearray) -> ProxyHeader | None:
    """Parse the version 2 header at the start of ``data``.

    :returns: the header, or ``None`` while it has not all arrived.
    :raises BadProxyHeader: anything but a valid version 2 header of at most 536 bytes.
    """
    seen = bytes(data[: len(V2_SIGNATURE)])
    if seen != V2_SIGNATURE[: len(seen)]:
        raise BadProxyHeader("no PROXY protocol header: the v2 signature does not match")
    if len(data) < FIXED.size:
        return None
    _signature, version_command, family_transport, length = FIXED.unpack_from(data)
    if version_command >> 4 != _VERSION:
        raise BadProxyHeader(f"PROXY v2: version {version_command >> 4}, not 2")
    command = version_command & 0x0F
    if command not in (Command.LOCAL, Command.PROXY):
        raise BadProxyHeader(f"PROXY v2: unassigned command {command}")
    if length > V2_MAX_PAYLOAD:
        raise BadProxyHeader(f"PROXY v2: {length} bytes after the header, over {V2_MAX_PAYLOAD}")
    total = FIXED.size + length
    if len(data) < total:
        return None
    if command == Command.LOCAL:
        return _header(Command.LOCAL, Family.UNSPEC, Transport.UNSPEC, total)
    family_number, transport_number = family_transport >> 4, family_transport & 0x0F
    if family_number > Family.UNIX or transport_number > Transport.DGRAM:
        raise BadProxyHeader(f"PROXY v2: unknown family/transport 0x{family_transport:02x}")
    family, transport = Family(family_number), Transport(transport_number)
    payload = bytes(data[FIXED.size : total])
    block = _ADDRESS_BLOCK.get((family, transport))
    if block is None:  # UNSPEC family or transport: the layout is unknown, all of it is skipped.
        return _header(Command.PROXY, family, transport, total)
    if length < block:
        raise BadProxyHeader(f"PROXY v2: {length} address bytes, the family needs {block}")
    _check_tlvs_untrusted(payload[block:])
    if transport is not Transport.STREAM or family is Family.UNIX:
        return _header(Command.PROXY, family, transport, total)
    size = 4 if family is Family.INET else 16
    source, destination = payload[:size], payload[size : 2 * size]
    source_port, destination_port = struct.unpack_from("!HH", payload, 2 * size)
    return ProxyHeader(
        version=2,
        command=Command.PROXY,
        family=family,
        transport=transport,
        source=_text(source),
        destination=_text(destination),
        source_port=source_port,
        destination_port=destination_port,
        length=total,
    )


def _header(command: Command, family: Family, transport: Transport, total: int) -> ProxyHeader:
    """A header without an address: the connection's own endpoints stand."""
    return ProxyHeader(
        version=2,
        command=command,
        family=family,
        transport=transport,
        source=None,
        destination=None,
        source_port=None,
        destination_port=None,
        length=total,
    )


def _check_tlvs_untrusted(tlvs: bytes) -> None:
    """The TLVs after the addresses (§2.2.x) must tile the rest exactly; their values are skipped.

    At most 520 bytes, so at most 173 TLVs: the walk is bounded.
    """
    offset = 0
    while offset < len(tlvs):
        if len(tlvs) - offset < _TLV.size:
            raise BadProxyHeader("PROXY v2: a truncated TLV after the addresses")
        _type, length = _TLV.unpack_from(tlvs, offset)
        offset += _TLV.size + length
        if offset > len(tlvs):
            raise BadProxyHeader("PROXY v2: a TLV longer than the header")


def _text(packed: bytes) -> str:
    address = ipaddress.ip_address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
