"""RADIUS protocol constants, named as in the RFCs that define them."""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "MAX_ATTRIBUTE_VALUE",
    "MAX_CHALLENGE_ROUNDS",
    "MAX_PASSWORD",
    "AcctAuthentic",
    "AcctStatusType",
    "Attr",
    "FramedProtocol",
    "NasPortType",
    "PacketCode",
    "ServiceType",
    "TerminateCause",
    "Vendor",
    "VendorAttr",
]

MAX_ATTRIBUTE_VALUE = 253
"""RFC 2865 section 5: an attribute value holds at most 253 octets."""

MAX_PASSWORD = 128
"""RFC 2865 section 5.2: User-Password is at most 128 octets."""

MAX_CHALLENGE_ROUNDS = 16
"""ocserv ``src/auth/radius.c``: at most 16 Access-Challenge rounds per login."""


class PacketCode(IntEnum):
    """RFC 2865 section 3, RFC 2866 section 3."""

    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11


class Attr(IntEnum):
    """Attribute types (RFC 2865 section 5, RFC 2866 section 5, RFC 2869, RFC 3162, RFC 4818,
    RFC 6911)."""

    USER_NAME = 1
    USER_PASSWORD = 2
    NAS_IP_ADDRESS = 4
    SERVICE_TYPE = 6
    FRAMED_PROTOCOL = 7
    FRAMED_IP_ADDRESS = 8
    FRAMED_IP_NETMASK = 9
    REPLY_MESSAGE = 18
    FRAMED_ROUTE = 22
    STATE = 24
    CLASS = 25
    VENDOR_SPECIFIC = 26
    SESSION_TIMEOUT = 27
    IDLE_TIMEOUT = 28
    CALLING_STATION_ID = 31
    NAS_IDENTIFIER = 32
    ACCT_STATUS_TYPE = 40
    ACCT_INPUT_OCTETS = 42
    ACCT_OUTPUT_OCTETS = 43
    ACCT_SESSION_ID = 44
    ACCT_AUTHENTIC = 45
    ACCT_SESSION_TIME = 46
    ACCT_INPUT_PACKETS = 47
    ACCT_OUTPUT_PACKETS = 48
    ACCT_TERMINATE_CAUSE = 49
    ACCT_INPUT_GIGAWORDS = 52
    ACCT_OUTPUT_GIGAWORDS = 53
    NAS_PORT_TYPE = 61
    CONNECT_INFO = 77
    MESSAGE_AUTHENTICATOR = 80
    ACCT_INTERIM_INTERVAL = 85
    NAS_IPV6_ADDRESS = 95
    FRAMED_IPV6_PREFIX = 97
    FRAMED_IPV6_ROUTE = 99
    DELEGATED_IPV6_PREFIX = 123
    FRAMED_IPV6_ADDRESS = 168
    DNS_SERVER_IPV6_ADDRESS = 169


class Vendor(IntEnum):
    """SMI private enterprise numbers of the vendor attributes ocserv uses."""

    MICROSOFT = 311
    ROARING_PENGUIN = 10055


class VendorAttr(IntEnum):
    """Vendor attribute types: RFC 2548 section 2.6 (Microsoft), Roaring Penguin dictionary."""

    MS_PRIMARY_DNS_SERVER = 28
    MS_SECONDARY_DNS_SERVER = 29
    RP_UPSTREAM_SPEED_LIMIT = 1
    RP_DOWNSTREAM_SPEED_LIMIT = 2


class ServiceType(IntEnum):
    """RFC 2865 section 5.6."""

    FRAMED = 2
    AUTHENTICATE_ONLY = 8


class FramedProtocol(IntEnum):
    """RFC 2865 section 5.7."""

    PPP = 1


class NasPortType(IntEnum):
    """RFC 2865 section 5.41."""

    ASYNC = 0


class AcctStatusType(IntEnum):
    """RFC 2866 section 5.1."""

    START = 1
    STOP = 2
    INTERIM_UPDATE = 3


class AcctAuthentic(IntEnum):
    """RFC 2866 section 5.6."""

    RADIUS = 1


class TerminateCause(IntEnum):
    """Acct-Terminate-Cause values, RFC 2866 section 5.10.

    ocserv ``src/acct/radius.c`` maps its disconnect reasons as: user disconnect ->
    ``USER_REQUEST``, server (occtl) disconnect -> ``ADMIN_RESET``, idle timeout ->
    ``IDLE_TIMEOUT``, DPD timeout -> ``LOST_CARRIER``, error -> ``USER_ERROR``, anything else ->
    ``LOST_SERVICE``; ``SESSION_TIMEOUT`` is for ``session-timeout``.
    """

    USER_REQUEST = 1
    LOST_CARRIER = 2
    LOST_SERVICE = 3
    IDLE_TIMEOUT = 4
    SESSION_TIMEOUT = 5
    ADMIN_RESET = 6
    ADMIN_REBOOT = 7
    PORT_ERROR = 8
    NAS_ERROR = 9
    NAS_REQUEST = 10
    NAS_REBOOT = 11
    PORT_UNNEEDED = 12
    PORT_PREEMPTED = 13
    PORT_SUSPENDED = 14
    SERVICE_UNAVAILABLE = 15
    CALLBACK = 16
    USER_ERROR = 17
    HOST_REQUEST = 18
