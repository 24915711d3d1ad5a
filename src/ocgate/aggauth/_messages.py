"""The AggAuth ("config-auth") messages: what clients send and the forms the server renders.

Reference: anyconnect-protocol.md §3 (the dialog): §3.1 init, §3.4 auth-reply, §3.8 logout;
§2.5 legacy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeAlias

from ocgate.aggauth._xml import parse_xml_untrusted
from ocgate.errors import BadAuthXml, LocalProtocolError

__all__ = [
    "OPAQUE_CONTEXT_TAG",
    "AuthReply",
    "ClientMessage",
    "DeviceId",
    "FormInput",
    "GroupOption",
    "InitRequest",
    "LoginForm",
    "LogoutRequest",
    "is_valid_context_id",
]

#: Child of our ``<opaque is-for="sg">`` that carries the server-chosen context id. ASA uses
#: the same element to tie dialog rounds together (reference §3.2).
OPAQUE_CONTEXT_TAG = "aggauth-handle"

# Context ids are server-chosen tokens (base64, base64url or hex) of up to 128 characters.
_CONTEXT_ID_RE = re.compile(r"[A-Za-z0-9._~+/=-]{1,128}")


def is_valid_context_id(context_id: str) -> bool:
    """Whether ``context_id`` has the shape of a context id we could have issued."""
    return _CONTEXT_ID_RE.fullmatch(context_id) is not None


def _empty_fields() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceId:
    """What a client says of its machine in ``<device-id>`` (Cisco Secure Client's attributes).

    openconnect sends only the text (``linux-64``, ``win``, ``mac-intel``, ``android``,
    ``apple-ios``); Cisco Secure Client adds ``computer-name``, ``device-type``,
    ``platform-version``, ``unique-id`` and ``unique-id-global`` (captures of ASA logins, see
    cisco-headend.md). Every value is what the client claims, nothing more.
    """

    platform: str = ""
    computer_name: str = ""
    device_type: str = ""
    platform_version: str = ""
    unique_id: str = ""
    unique_id_global: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InitRequest:
    """``<config-auth type="init">`` (reference §3.1), or an empty body (a GET-like start).

    :param version: the client's ``<version who="vpn">`` text, e.g. ``v9.01-3``.
    :param device_id: ``<device-id>`` text, e.g. ``linux-64``.
    :param group_access: ``<group-access>``, the URL the user typed.
    :param group_select: ``<group-select>``, the group openconnect re-inits with (§3.3).
    :param client_cert_fail: ``<client-cert-fail/>`` was present (§3.9).
    :param device: ``<device-id>`` with its attributes, ``None`` when absent.
    """

    version: str | None = None
    device_id: str | None = None
    device: DeviceId | None = None
    group_access: str | None = None
    group_select: str | None = None
    client_cert_fail: bool = False
    capabilities: tuple[str, ...] = ()
    """``<capabilities><auth-method>`` values, e.g. ``single-sign-on-v2``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthReply:
    """``<config-auth type="auth-reply">`` (reference §3.4) or a legacy urlencoded form post (§2.5).

    :param username: ``<username>`` (``None`` when absent, ``""`` when sent empty).
    :param password: ``<password>``, else the first other element whose name ends in ``password``.
    :param secondary_password: ``<secondary_password>`` (OTP or challenge answer), else ASA-style
        ``<answer>``.
    :param group_select: ``<group-select>`` (outside ``<auth>``), else a ``group_list`` field.
    :param opaque: the echoed ``<opaque>`` element, re-serialized, or ``None``.
    :param fields: every field of ``<auth>`` (or of the urlencoded form) by name; the first of
        duplicates wins.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    secondary_password: str | None = field(default=None, repr=False)
    group_select: str | None = None
    opaque: bytes | None = None
    fields: Mapping[str, str] = field(default_factory=_empty_fields, repr=False, hash=False)

    @property
    def opaque_context_id(self) -> str | None:
        """The context id of an echoed :func:`~ocgate.aggauth.make_opaque` element, or ``None``.

        ``None`` also when the opaque is absent, not ours, or the id is malformed: the client
        controls it.
        """
        if self.opaque is None:
            return None
        try:
            root = parse_xml_untrusted(self.opaque)
        except BadAuthXml:
            return None
        if root.tag != "opaque" or root.get("is-for") != "sg":
            return None
        handle = root.find(OPAQUE_CONTEXT_TAG)
        if handle is None or handle.text is None or not is_valid_context_id(handle.text):
            return None
        return handle.text


@dataclass(frozen=True, slots=True, kw_only=True)
class LogoutRequest:
    """``<config-auth type="logout">`` sent by Cisco clients (reference §3.8).

    :param session_token: the ``<session-token>`` text (the ``webvpn`` cookie value), stripped.
    """

    session_token: str | None = field(default=None, repr=False)


#: Anything :func:`~ocgate.aggauth.parse_client_message_untrusted` returns.
ClientMessage: TypeAlias = InitRequest | AuthReply | LogoutRequest

InputType: TypeAlias = Literal["text", "password", "hidden", "sso"]
_INPUT_TYPES = frozenset({"text", "password", "hidden", "sso"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FormInput:
    """One ``<input>`` of a login form (reference §3.2).

    :param type: ``text``, ``password``, ``hidden`` or ``sso`` (the ``sso-token`` of an sso-v2
        form, which the client fills from its browser).
    :param name: the field name the client echoes as an element (``username``, ``password``,
        ``secondary_password`` for OTP steps, §3.5).
    :param label: the prompt shown, e.g. ``Username:``.
    :param value: a pre-filled value (``hidden`` inputs are echoed with it).
    """

    type: InputType
    name: str
    label: str = ""
    value: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.type not in _INPUT_TYPES:
            raise LocalProtocolError(f"unsupported form input type {self.type!r}")
        if not self.name:
            raise LocalProtocolError("form input needs a name")


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOption:
    """One ``<option>`` of the ``group_list`` select (reference §3.3).

    :param value: the group name the client sends back in ``<group-select>``.
    :param label: the friendly name shown (and matched by ``--authgroup``).
    :param selected: rendered as ``selected="true"``.
    """

    value: str
    label: str
    selected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginForm:
    """A login form, rendered as an AggAuth ``auth-request`` or a legacy ``<auth>`` page.

    :param auth_id: ``main``; use ``challenge`` for OTP/challenge steps so openconnect's soft
        token fills them (reference §3.5).
    :param title: ``<title>``.
    :param message: ``<message>``, the prompt text.
    :param error: rendered as ``<error id="88" param1="ERROR" param2="">Login failed: %s</error>``.
    :param banner: ``<banner>`` (pre-login text).
    :param action: the form action, i.e. the next POST path.
    :param inputs: the form inputs in order.
    :param groups: the ``group_list`` options (omitted when empty).
    :param opaque: a complete ``<opaque is-for="sg">`` element from
        :func:`~ocgate.aggauth.make_opaque` (or an :attr:`AuthReply.opaque` to echo); inserted
        verbatim in AggAuth replies, omitted in legacy ones.
    """

    auth_id: str = "main"
    title: str = "Login"
    message: str
    error: str | None = None
    banner: str | None = None
    action: str = "/auth"
    inputs: tuple[FormInput, ...] = ()
    groups: tuple[GroupOption, ...] = ()
    opaque: bytes | None = None
    sso: SsoLinks | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SsoLinks:
    """The sso-v2 elements of a login form (openconnect ``auth.c`` ``parse_auth_node``; the ASA's
    form, cisco-headend.md).

    :param login: ``<sso-v2-login>``, the URL the client opens in a browser.
    :param login_final: ``<sso-v2-login-final>``, where an embedded browser stops.
    :param token_cookie: ``<sso-v2-token-cookie-name>``, the cookie holding the token there.
    :param error_cookie: ``<sso-v2-error-cookie-name>``, the cookie holding a refusal there.
    :param browser_mode: ``external`` for the client's system browser, ``None`` for embedded.
    """

    login: str
    login_final: str
    token_cookie: str = "acSamlv2Token"
    error_cookie: str = "acSamlv2Error"
    browser_mode: str | None = None
