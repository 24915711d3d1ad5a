"""Rendering of server AggAuth replies: login forms, success, logout, and the legacy variants.

Theory of operation: replies are assembled from fixed templates shaped like ocserv's and the
ASA's (``src/worker-auth.c``; reference §3.2, §3.7, §2.5). Every caller-supplied string goes
through :func:`_text` or :func:`_attr`, which escape markup and replace characters XML 1.0 cannot
carry, so a rendered reply is always well-formed UTF-8 XML. The one exception is
:attr:`LoginForm.opaque`, inserted verbatim: it must come from :func:`make_opaque` or be an
:attr:`AuthReply.opaque` (re-serialized by our parser, hence well-formed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ocgate.aggauth._messages import (
    OPAQUE_CONTEXT_TAG,
    FormInput,
    GroupOption,
    LoginForm,
    is_valid_context_id,
)
from ocgate.errors import LocalProtocolError

__all__ = [
    "make_opaque",
    "render_auth_request",
    "render_complete",
    "render_legacy_form",
    "render_legacy_success",
    "render_logout_complete",
]

_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
# ocserv VERSION_MSG (src/worker-auth.c).
_SG_VERSION = '<version who="sg">0.1(1)</version>\n'
_SUCCESS_TITLE = "SSL VPN Service"
# Characters XML 1.0 cannot carry at all (§2.2 Char), lone surrogates included.
_NOT_XML_CHAR_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    """Escape ``value`` for element content."""
    value = _NOT_XML_CHAR_RE.sub("\ufffd", value)
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _attr(value: str) -> str:
    """Escape ``value`` for a double-quoted attribute (whitespace kept through normalization)."""
    return _text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def _encode(parts: list[str]) -> bytes:
    return "".join(parts).encode("utf-8")


def make_opaque(context_id: str) -> bytes:
    """Build our ``<opaque is-for="sg">`` element carrying ``context_id``.

    The client echoes it in every later auth-reply (reference §3.2); read it back with
    :attr:`AuthReply.opaque_context_id`.

    :param context_id: a server-chosen token, 1-128 characters of ``[A-Za-z0-9._~+/=-]``.
    :raises LocalProtocolError: when ``context_id`` does not have that shape.
    """
    if not is_valid_context_id(context_id):
        raise LocalProtocolError("opaque context id must be 1-128 characters of [A-Za-z0-9._~+/=-]")
    return (
        f'<opaque is-for="sg"><{OPAQUE_CONTEXT_TAG}>{context_id}</{OPAQUE_CONTEXT_TAG}></opaque>'
    ).encode()


def _opaque_text(opaque: bytes) -> str:
    """The verbatim opaque element, after a sanity check that catches caller mistakes."""
    if not opaque.startswith(b"<opaque"):
        raise LocalProtocolError("LoginForm.opaque must be an <opaque> element (see make_opaque)")
    try:
        return opaque.decode("utf-8") + "\n"
    except UnicodeDecodeError as exc:
        raise LocalProtocolError("LoginForm.opaque is not UTF-8") from exc


def _input(field: FormInput) -> str:
    value = "" if field.value is None else f' value="{_attr(field.value)}"'
    return (
        f'<input type="{field.type}" name="{_attr(field.name)}" label="{_attr(field.label)}"'
        f"{value} />\n"
    )


def _select(groups: tuple[GroupOption, ...]) -> list[str]:
    if not groups:
        return []
    parts = ['<select name="group_list" label="GROUP:">\n']
    for group in groups:
        selected = ' selected="true"' if group.selected else ""
        parts.append(
            f'<option value="{_attr(group.value)}"{selected}>{_text(group.label)}</option>\n'
        )
    parts.append("</select>\n")
    return parts


def _auth_element(form: LoginForm) -> list[str]:
    """``<auth id=…>`` with title, banner, message, error and the form (reference §3.2)."""
    parts = [f'<auth id="{_attr(form.auth_id)}">\n', f"<title>{_text(form.title)}</title>\n"]
    if form.banner is not None:
        parts.append(f"<banner>{_text(form.banner)}</banner>\n")
    parts.append(f"<message>{_text(form.message)}</message>\n")
    if form.error is not None:
        parts.append(
            f'<error id="88" param1="{_attr(form.error)}" param2="">Login failed: %s</error>\n'
        )
    sso = form.sso
    if sso is not None:
        parts.append(f"<sso-v2-login>{_text(sso.login)}</sso-v2-login>\n")
        parts.append(f"<sso-v2-login-final>{_text(sso.login_final)}</sso-v2-login-final>\n")
        parts.append(
            f"<sso-v2-token-cookie-name>{_text(sso.token_cookie)}</sso-v2-token-cookie-name>\n"
        )
        parts.append(
            f"<sso-v2-error-cookie-name>{_text(sso.error_cookie)}</sso-v2-error-cookie-name>\n"
        )
        if sso.browser_mode is not None:
            parts.append(f"<sso-v2-browser-mode>{_text(sso.browser_mode)}</sso-v2-browser-mode>\n")
    parts.append(f'<form method="post" action="{_attr(form.action)}">\n')
    parts.extend(_select(form.groups))
    parts.extend(_input(field) for field in form.inputs)
    parts.append("</form>\n</auth>\n")
    return parts


def render_auth_request(*, form: LoginForm) -> bytes:
    """Render an AggAuth ``auth-request`` (a login form) as UTF-8 XML.

    :param form: the form to show.
    """
    parts = [
        _XML_DECL,
        '<config-auth client="vpn" type="auth-request" aggregate-auth-version="2">\n',
        _SG_VERSION,
    ]
    if form.opaque is not None:
        parts.append(_opaque_text(form.opaque))
    parts.extend(_auth_element(form))
    parts.append("</config-auth>\n")
    return _encode(parts)


def _profile_manifest(files: Sequence[tuple[str, str, str]]) -> str:
    """``<vpn-profile-manifest>`` listing ``(service_type, uri, sha1)`` files (reference §3.7).

    An ASA lists the VPN profile as ``service-type="user"``; openconnect takes only that one
    (rev 1.0, type profile). Other service types in the same ``<vpn>`` are inference from the
    Cisco client's strings and an ASA's ``<ServiceProfiles>`` list (docs/profiles.md).
    """
    if not files:
        return ""
    parts = ['<vpn-profile-manifest><vpn rev="1.0">']
    for service_type, uri, sha1 in files:
        parts.append(
            f'<file type="profile" service-type="{_attr(service_type)}">'
            f'<uri>{_text(uri)}</uri><hash type="sha1">{_text(sha1)}</hash></file>'
        )
    parts.append("</vpn></vpn-profile-manifest>")
    return "".join(parts)


def render_complete(
    *,
    session_token: str,
    session_id: str,
    banner: str | None,
    server_cert_hash: str,
    manifest: Sequence[tuple[str, str, str]] = (),
) -> bytes:
    """Render the AggAuth ``complete`` reply of a successful login (reference §3.7).

    Send the same token as ``Set-Cookie: webvpn=`` too: openconnect lets the XML token win, Cisco
    clients read only the XML one.

    :param session_token: the session cookie value.
    :param session_id: the ``<session-id>`` (informational for clients).
    :param banner: post-login banner, or ``None``.
    :param server_cert_hash: SHA-1 of the server leaf certificate, upper-case hex.
    :param manifest: the profiles served, as ``(service_type, uri, sha1)`` with the SHA-1 in
        upper-case hex (``("user", "/profiles/corp.xml", "0A1B…")``); empty: no manifest.
    """
    banner_part = "" if banner is None else f"<banner>{_text(banner)}</banner>\n"
    manifest_part = _profile_manifest(manifest)
    parts = [
        _XML_DECL,
        '<config-auth client="vpn" type="complete" aggregate-auth-version="2">\n',
        _SG_VERSION,
        f"<session-id>{_text(session_id)}</session-id>\n",
        f"<session-token>{_text(session_token)}</session-token>\n",
        f'<auth id="success">\n<title>{_SUCCESS_TITLE}</title>\n',
        banner_part,
        '<message id="0" param1="" param2=""></message>\n',
        "</auth>\n",
        "<capabilities><crypto-supported>ssl-dhe</crypto-supported></capabilities>\n",
        '<config client="vpn" type="private">',
        f"<vpn-base-config><server-cert-hash>{_text(server_cert_hash)}</server-cert-hash>"
        "</vpn-base-config>",
        '<opaque is-for="vpn-client"></opaque>',
        manifest_part,
        "</config>\n",
        "</config-auth>\n",
    ]
    return _encode(parts)


def render_logout_complete() -> bytes:
    """Render the reply to a Cisco XML logout (§3.8); anylink answers with an empty body."""
    return _encode(
        [
            _XML_DECL,
            '<config-auth client="vpn" type="complete" aggregate-auth-version="2">\n',
            "<logout>success</logout>\n",
            "</config-auth>\n",
        ]
    )


def render_legacy_form(form: LoginForm) -> bytes:
    """Render ``form`` for non-XML clients: a bare ``<auth>``, no ``<config-auth>`` (§2.5).

    The opaque is not rendered: legacy clients post urlencoded forms and cannot echo it, so tie
    rounds with a ``webvpncontext`` cookie instead.

    :param form: the form to show.
    """
    return _encode([_XML_DECL, *_auth_element(form)])


def render_legacy_success(*, banner: str | None = None) -> bytes:
    """Render the legacy success page ``<auth id="success">`` (ocserv ``SUCCESS_MSG_HEAD``).

    :param banner: post-login banner, or ``None``.
    """
    banner_part = "" if banner is None else f"<banner>{_text(banner)}</banner>"
    return _encode(
        [
            _XML_DECL,
            f'<auth id="success">\n<title>{_SUCCESS_TITLE}</title>',
            banner_part,
            "</auth>\n",
        ]
    )
