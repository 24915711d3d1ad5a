"""Value parsers for ocserv.conf options: one function per value form.

Theory of operation: every parser takes the value exactly as the lexer produced it (whitespace
and surrounding double quotes already stripped, never empty) plus a :class:`ParseContext`, and
returns the typed value or raises :class:`~ocgate.errors.ConfigError` carrying only ``message``
and ``expected``. The loader fills in the file, line and key, so the parsers need no locations.

The rules follow ocserv ``src/config.c``: booleans are ``true``/``yes`` (any case) and everything
else is false (``READ_TF``); numbers are decimal, but where ocserv's ``strtol`` would silently read
garbage as 0 we refuse it, and negative numbers are refused everywhere.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from ocgate.errors import ConfigError

__all__ = [
    "BANNER_MAX",
    "INT_MAX",
    "ParseContext",
    "Parser",
    "parse_banner",
    "parse_bool",
    "parse_compression_priority",
    "parse_device",
    "parse_domain",
    "parse_existing_file",
    "parse_http_header",
    "parse_net_priority",
    "parse_node_name",
    "parse_optional_uint",
    "parse_path",
    "parse_port",
    "parse_realm",
    "parse_rekey_method",
    "parse_strap",
    "parse_string",
    "parse_tls_priorities",
    "parse_udp_port",
    "parse_uint",
    "parse_word",
    "redact_store_url",
]

INT_MAX = 2**31 - 1
"""ocserv stores numbers in C ``int``/``unsigned``; larger values are refused."""

BANNER_MAX = 256
"""ocserv ``MAX_BANNER_SIZE`` (``src/vpn.h``): a longer ``banner`` is a fatal error."""


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a parser may need besides the value.

    :param base_dir: directory that relative file names are resolved against.
    """

    base_dir: str


Parser = Callable[[str, ParseContext], object]


def parse_string(value: str, ctx: ParseContext) -> str:
    """Any text, kept as written (``READ_STRING``)."""
    return value


def parse_word(value: str, ctx: ParseContext) -> str:
    """A single token without whitespace (user names, host names, OIDs)."""
    if any(ch.isspace() for ch in value):
        raise ConfigError(f"must not contain whitespace: {value!r}", expected="a single word")
    return value


# RFC 9110 §5.6.2 token and §5.5 field-value (visible characters, inner spaces and tabs).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[ \t]*[\x21-\x7e])*")
# Set by the HTTP front door itself; a second copy would make the response ambiguous.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


def parse_http_header(value: str, ctx: ParseContext) -> tuple[str, str]:
    """``Name: value`` (``included-http-headers``): one response header line, kept as written.

    ocserv copies the line verbatim into every response (``add_owasp_headers``); here it is split
    once so the front door can check it, and refused if it could not go on the wire as one line.
    """
    expected = "a header line 'Name: value', e.g. 'X-Frame-Options: deny'"
    name, sep, rest = value.partition(":")
    name, rest = name.strip(), rest.strip()
    if not sep or not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(rest):
        raise ConfigError(f"not an HTTP header line: {value!r}", expected=expected)
    if name.lower() in _FRAMING_HEADERS:
        raise ConfigError(f"{name} is set by the server itself", expected=expected)
    return name, rest


def parse_realm(value: str, ctx: ParseContext) -> str:
    """An HTTP Basic realm (``camouflage_realm``): printable, without ``"`` or ``\\``, as it
    goes inside ``WWW-Authenticate: Basic realm="..."``."""
    if not _HEADER_VALUE.fullmatch(value) or '"' in value or "\\" in value:
        raise ConfigError(
            f"not usable as an HTTP realm: {value!r}",
            expected="printable ASCII text without double quotes or backslashes",
        )
    return value


def parse_bool(value: str, ctx: ParseContext) -> bool:
    """``true``/``yes`` (case-insensitive) are true, anything else is false (ocserv ``READ_TF``)."""
    return value.lower() in ("true", "yes")


_DECIMAL = re.compile(r"[+-]?[0-9]+")


def _integer(value: str, what: str, expected: str) -> int:
    if _DECIMAL.fullmatch(value) is None:
        raise ConfigError(f"not {what}: {value!r}", expected=expected)
    number = int(value)
    if number < 0:
        raise ConfigError(f"must not be negative: {value!r}", expected=expected)
    if number > INT_MAX:
        raise ConfigError(f"too large: {value!r}", expected=expected)
    return number


def parse_uint(value: str, ctx: ParseContext) -> int:
    """A non-negative decimal integer."""
    return _integer(value, "an integer", f"an integer 0-{INT_MAX}")


def parse_workers(value: str, ctx: ParseContext) -> int:
    """``auto`` (one worker per core, returned as 0) or a count 1-256 (ocgate's ``workers``)."""
    if value.strip().lower() == "auto":
        return 0
    number = _integer(value, "a worker count", "auto, or an integer 1-256")
    if not 1 <= number <= 256:
        raise ConfigError(f"{number} workers", expected="auto, or an integer 1-256")
    return number


_STORE_FORMS = "sqlite:///ABSOLUTE/PATH, redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://..."


def parse_store_url(value: str, ctx: ParseContext) -> str:
    """ocgate's ``session-store``: ``sqlite:///ABSOLUTE/PATH``, or a Redis/Valkey server shared by
    several gateways, ``redis://`` or ``rediss://`` (TLS) with an optional password and database
    number. A URL that is refused is named without its password."""
    if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return value
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in ("redis", "rediss"):
        raise ConfigError(f"unsupported store {_no_password(value)!r}", expected=_STORE_FORMS)
    try:
        url = urllib.parse.urlsplit(value)
        port = url.port
        host = url.hostname
    except ValueError:
        raise ConfigError(f"bad store URL {_no_password(value)!r}", expected=_STORE_FORMS) from None
    database = url.path.strip("/")
    if (
        not host
        or (port is not None and not 1 <= port <= 65535)
        or (database and not (database.isdigit() and int(database) <= 65535))
    ):
        raise ConfigError(f"bad store URL {_no_password(value)!r}", expected=_STORE_FORMS)
    return value


def _no_password(url: str) -> str:
    """``url`` without its secrets: the password of the user part and every query value are
    ``***``; a URL that does not parse is only its scheme and ``***``."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    try:
        parts = urllib.parse.urlsplit(url)
        host, port, user, password = parts.hostname, parts.port, parts.username, parts.password
    except ValueError:
        return f"{scheme}://***"
    if host is None:
        return f"{scheme}://***"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if user or password is not None:
        netloc = f"{user or ''}{':***' if password is not None else ''}@{netloc}"
    query = "&".join(
        f"{name}=***" for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_store_url(url: str) -> str:
    """A ``session-store`` URL fit for a log line (no password)."""
    return _no_password(url)


def parse_optional_uint(value: str, ctx: ParseContext) -> int | None:
    """A non-negative integer where 0 means "unset" (``idle-timeout``, ``mtu`` …)."""
    number = _integer(value, "an integer", f"an integer 0-{INT_MAX} (0 = unset)")
    return number or None


def parse_port(value: str, ctx: ParseContext) -> int:
    """A TCP/UDP port number 1-65535."""
    expected = "an integer 1-65535"
    port = _integer(value, "a port number", expected)
    if not 1 <= port <= 65535:
        raise ConfigError(f"not a port number: {value!r}", expected=expected)
    return port


def parse_udp_port(value: str, ctx: ParseContext) -> int | None:
    """Like :func:`parse_port`, but 0 means "no UDP" as in ocserv."""
    expected = "an integer 1-65535 (0 = no UDP)"
    port = _integer(value, "a port number", expected)
    if port > 65535:
        raise ConfigError(f"not a port number: {value!r}", expected=expected)
    return port or None


def _resolve(value: str, ctx: ParseContext) -> str:
    if os.path.isabs(value):
        return os.path.normpath(value)
    return os.path.normpath(os.path.join(ctx.base_dir, value))


def parse_path(value: str, ctx: ParseContext) -> str:
    """A file name, made absolute against the config file's directory; it need not exist."""
    return _resolve(value, ctx)


_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def parse_existing_file(value: str, ctx: ParseContext) -> str:
    """A file that must exist now (certificates, keys, password files)."""
    if _URL_SCHEME.match(value) is not None:
        raise ConfigError(
            f"URLs such as PKCS #11 or TPM key URLs are not supported by ocgate: {value!r}",
            expected="the path of a PEM file",
        )
    path = _resolve(value, ctx)
    if not os.path.isfile(path):
        raise ConfigError(
            f"file not found: {path!r}",
            expected=f"an existing file (relative names are resolved against {ctx.base_dir})",
        )
    return path


_DEVICE = re.compile(r"[A-Za-z0-9_-]{1,12}")


def parse_device(value: str, ctx: ParseContext) -> str:
    """The tun device name prefix: at most 12 characters so ``<prefix><index>`` fits IFNAMSIZ."""
    if _DEVICE.fullmatch(value) is None:
        raise ConfigError(
            f"not a usable device name prefix: {value!r}",
            expected="1-12 characters from A-Z a-z 0-9 _ -",
        )
    return value


def parse_domain(value: str, ctx: ParseContext) -> str:
    """A DNS domain name (``split-dns``)."""
    if len(value) > 253 or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError(f"not a domain name: {value!r}", expected="a domain such as example.com")
    return value


def parse_banner(value: str, ctx: ParseContext) -> str:
    """The post-login banner, at most :data:`BANNER_MAX` characters (ocserv ``check_cfg``)."""
    if len(value) > BANNER_MAX:
        raise ConfigError(
            f"banner is too long ({len(value)} characters)",
            expected=f"at most {BANNER_MAX} characters",
        )
    return value


_COMPRESSION_NAMES = ("lz4", "lzs", "deflate")


def parse_compression_priority(value: str, ctx: ParseContext) -> tuple[str, ...]:
    """``compression-algo-priority``: method names joined by ``:`` (ocserv ``lz4:lzs``).

    ocgate also knows ``deflate`` (CSTP only, Cisco clients); an unknown or repeated name is an
    error.
    """
    names = tuple(part.strip().lower() for part in value.split(":"))
    expected = "method names joined by ':' from lz4, lzs, deflate (e.g. lz4:lzs)"
    for name in names:
        if name not in _COMPRESSION_NAMES:
            raise ConfigError(f"unknown compression method: {name!r}", expected=expected)
    if len(set(names)) != len(names):
        raise ConfigError("a compression method is listed twice", expected=expected)
    return names


def parse_strap(value: str, ctx: ParseContext) -> str:
    """``strap``: ``off``, ``optional`` or ``required`` (STRAP signatures on CONNECT)."""
    if value not in ("off", "optional", "required"):
        raise ConfigError(f"unknown strap policy: {value!r}", expected="off, optional or required")
    return value


def parse_rekey_method(value: str, ctx: ParseContext) -> str:
    """``ssl`` or ``new-tunnel`` (anything else is fatal in ocserv)."""
    if value not in ("ssl", "new-tunnel"):
        raise ConfigError(f"unknown rekey method: {value!r}", expected="ssl or new-tunnel")
    return value


_HEX = re.compile(r"0x[0-9A-Fa-f]{1,2}")


def parse_net_priority(value: str, ctx: ParseContext) -> int:
    """``net-priority``: a decimal SO_PRIORITY or ``0xNN`` IP TOS byte (ocserv ``READ_PRIO_TOS``).

    The value is returned as written in numbers; the caller decides which of the two it is.
    """
    if value.startswith("0x"):
        if _HEX.fullmatch(value) is None:
            raise ConfigError(f"not a TOS byte: {value!r}", expected="0x00-0xff or 0-6")
        return int(value, 16)
    return _integer(value, "a priority", "0x00-0xff or 0-6")


# GnuTLS priority strings (https://gnutls.org/manual/html_node/Priority-Strings.html).
_TLS_LEVELS = frozenset(
    {
        "PERFORMANCE",
        "NORMAL",
        "LEGACY",
        "PFS",
        "SECURE",
        "SECURE128",
        "SECURE192",
        "SECURE256",
        "SUITEB128",
        "SUITEB192",
        "NONE",
    }
)
_TLS_SYSTEM = re.compile(r"@[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*")
_TLS_MODIFIER = re.compile(r"%[A-Za-z0-9_=]+|[+!-][A-Za-z0-9_.-]+")
_TLS_EXPECTED = "a GnuTLS priority string such as NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0"


def parse_tls_priorities(value: str, ctx: ParseContext) -> str:
    """Check the syntax of a GnuTLS priority string and return it unchanged.

    The first element is a level keyword (``NORMAL``, ``SECURE256`` …) or ``@SYSTEM``-style
    keyword; each later element is ``%KEYWORD``, ``+NAME``, ``-NAME`` or ``!NAME``.
    Whether the names mean anything is for ``ocgate.tls`` to decide.
    """
    first, *rest = value.split(":")
    if first.upper() not in _TLS_LEVELS and _TLS_SYSTEM.fullmatch(first) is None:
        raise ConfigError(f"unknown priority level {first!r} in {value!r}", expected=_TLS_EXPECTED)
    for element in rest:
        if _TLS_MODIFIER.fullmatch(element) is None:
            raise ConfigError(f"bad element {element!r} in {value!r}", expected=_TLS_EXPECTED)
    return value


_NODE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_NODE_NAME_EXPECTED = (
    "1-63 characters from A-Z a-z 0-9 . _ -, starting and ending with a letter or digit, "
    "e.g. gw1 or vpn-a.example"
)


def default_node_name() -> str:
    """The node name when ``node-name`` is unset: the machine's host name (its first label when
    that is no valid node name as a whole), else ``ocgate``."""
    host = os.uname().nodename
    for candidate in (host, host.split(".", 1)[0]):
        if _NODE_NAME.fullmatch(candidate) is not None:
            return candidate
    return "ocgate"


def parse_node_name(value: str, ctx: ParseContext) -> str:
    """``node-name``: this gateway's name among several behind a balancer (a DNS label, or a few
    dotted ones); it labels metrics and ``ctl`` output, so it must be short and printable."""
    if _NODE_NAME.fullmatch(value) is None:
        raise ConfigError(f"not a node name: {value!r}", expected=_NODE_NAME_EXPECTED)
    return value


def parse_listen(value: str, ctx: ParseContext) -> str:
    """``HOST:PORT`` (``[::1]:9099`` for IPv6), e.g. for ``metrics-listen``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"not a listen address: {value!r}", expected="HOST:PORT, e.g. 127.0.0.1:9099"
        )
    return value
