"""The RADIUS dictionary ocgate encodes requests with, and the guarded import of pyrad.

Theory of operation: radcli reads the dictionary named by the ``dictionary`` key of its config;
ocgate does not, because every attribute ocserv sends or uses is fixed (ocserv
``doc/README-radius.md``). The dictionary is embedded here in FreeRADIUS format instead of being
a data file, so it needs no package data. Replies are decoded by attribute code, not through it.
"""

from __future__ import annotations

import io
from functools import cache

try:
    import pyrad.dictionary  # type: ignore[import-untyped]
    import pyrad.packet  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the installed extras, not on the code.
    raise ImportError(
        "RADIUS support needs pyrad: install the extra with pip install 'ocgate[radius]'"
    ) from exc

__all__ = ["DICTIONARY_TEXT", "pyrad", "radius_dictionary"]

DICTIONARY_TEXT = """\
# RFC 2865
ATTRIBUTE	User-Name		1	string
ATTRIBUTE	User-Password		2	string	encrypt=1
ATTRIBUTE	NAS-IP-Address		4	ipaddr
ATTRIBUTE	NAS-Port		5	integer
ATTRIBUTE	Service-Type		6	integer
ATTRIBUTE	Framed-Protocol		7	integer
ATTRIBUTE	Framed-IP-Address	8	ipaddr
ATTRIBUTE	Framed-IP-Netmask	9	ipaddr
ATTRIBUTE	Reply-Message		18	string
ATTRIBUTE	Framed-Route		22	string
ATTRIBUTE	State			24	octets
ATTRIBUTE	Class			25	octets
ATTRIBUTE	Session-Timeout		27	integer
ATTRIBUTE	Idle-Timeout		28	integer
ATTRIBUTE	Calling-Station-Id	31	string
ATTRIBUTE	NAS-Identifier		32	string
ATTRIBUTE	Proxy-State		33	octets
ATTRIBUTE	NAS-Port-Type		61	integer
# RFC 2866
ATTRIBUTE	Acct-Status-Type	40	integer
ATTRIBUTE	Acct-Delay-Time		41	integer
ATTRIBUTE	Acct-Input-Octets	42	integer
ATTRIBUTE	Acct-Output-Octets	43	integer
ATTRIBUTE	Acct-Session-Id		44	string
ATTRIBUTE	Acct-Authentic		45	integer
ATTRIBUTE	Acct-Session-Time	46	integer
ATTRIBUTE	Acct-Input-Packets	47	integer
ATTRIBUTE	Acct-Output-Packets	48	integer
ATTRIBUTE	Acct-Terminate-Cause	49	integer
# RFC 2869
ATTRIBUTE	Acct-Input-Gigawords	52	integer
ATTRIBUTE	Acct-Output-Gigawords	53	integer
ATTRIBUTE	Connect-Info		77	string
ATTRIBUTE	Message-Authenticator	80	octets
ATTRIBUTE	Acct-Interim-Interval	85	integer
# RFC 3162, RFC 4818, RFC 6911
ATTRIBUTE	NAS-IPv6-Address	95	ipv6addr
ATTRIBUTE	Framed-IPv6-Prefix	97	ipv6prefix
ATTRIBUTE	Framed-IPv6-Route	99	string
ATTRIBUTE	Delegated-IPv6-Prefix	123	ipv6prefix
ATTRIBUTE	Framed-IPv6-Address	168	ipv6addr
ATTRIBUTE	DNS-Server-IPv6-Address	169	ipv6addr
# RFC 2548
VENDOR		Microsoft		311
BEGIN-VENDOR	Microsoft
ATTRIBUTE	MS-Primary-DNS-Server	28	ipaddr
ATTRIBUTE	MS-Secondary-DNS-Server	29	ipaddr
END-VENDOR	Microsoft
# FreeRADIUS dictionary.rp
VENDOR		Roaring-Penguin		10055
BEGIN-VENDOR	Roaring-Penguin
ATTRIBUTE	RP-Upstream-Speed-Limit		1	integer
ATTRIBUTE	RP-Downstream-Speed-Limit	2	integer
END-VENDOR	Roaring-Penguin
"""


@cache
def radius_dictionary() -> object:
    """The parsed dictionary (a ``pyrad.dictionary.Dictionary``), built once."""
    return pyrad.dictionary.Dictionary(io.StringIO(DICTIONARY_TEXT))
