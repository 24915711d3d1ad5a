"""SAML 2.0 Web Browser SSO service provider (``auth = "saml[config=FILE]"``), on pysaml2.

Theory of operation (SAML profiles 4.1, Web Browser SSO: HTTP-Redirect request, HTTP-POST response):

* :meth:`SamlProvider.start` builds an ``AuthnRequest`` for the configured IdP (signed with the SP
  key when one is configured), with ``AssertionConsumerServiceURL`` = the gateway's ACS URL and
  ``RelayState`` = the framework's ``login_id``. The request ID and its issue time are the
  ``pending`` bytes the framework keeps with the login: a response is accepted only for them.
* :meth:`SamlProvider.finish_untrusted` takes the browser's POST to the ACS. pysaml2 parses it
  (defusedxml), checks the XML signatures with the xmlsec1 program against the IdP's metadata keys
  (a signature on the assertion or on the response is always required, see ``require-signature``).
  Encrypted assertions are not supported (the IdP must not encrypt; TLS protects the POST): the
  xmlsec1 subprocess runs without sec-mod's capabilities and could not read a root-only key.
  Then this module checks again, on the
  objects pysaml2 verified and against the ``now`` it is given, every binding the profile asks for:
  exactly one assertion; issuer = the IdP; ``InResponseTo`` (response and bearer confirmation) =
  this login's request ID; ``Destination`` (when present) and the bearer ``Recipient`` = our ACS
  URL; ``Audience`` contains our entity ID; ``NotBefore``/``NotOnOrAfter`` within the allowed
  clock skew; and the assertion ID was never used (:class:`AssertionIdCache`). Every refusal is
  an :class:`~ocgate.errors.SsoError` whose message is safe to show the user; the details go to
  the log (no assertion, no key material).
* The user name is the NameID or an attribute's first value; the groups are an attribute's
  values, through the ``group-map`` when one is configured.
* :meth:`SamlProvider.logout_url` builds a ``LogoutRequest`` (HTTP-Redirect) for the IdP's
  single logout service with the NameID and ``SessionIndex`` kept in ``logout_state``.

The provider lives in sec-mod: it is the only process that reads the SP key. pysaml2 runs
xmlsec1 in a subprocess and writes temporary files (in ``TMPDIR``); both work as the
unprivileged sec-mod user (no seccomp there). pysaml2 reads the wall clock itself for its own
checks; the checks here use ``now``, so tests and the daemon agree with each other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import saml2
import saml2.client
import saml2.config
import saml2.metadata
import saml2.response
import saml2.saml
import saml2.sigver
import saml2.validate
import saml2.xmldsig

from ocgate.errors import ConfigError, SsoError
from ocgate.sso._base import SAML_ACS_PATH, SAML_METADATA_PATH, SAML_SLO_PATH, SsoIdentity, SsoStart
from ocgate.sso._jwt import MAX_NAME_BYTES
from ocgate.sso._saml_config import SamlConfig, load_saml_config
from ocgate.sso._saml_peek import (
    NOT_VALID,
    _diagnose_untrusted,
    _instant,
    peek_response_untrusted,
)
from ocgate.sso._saml_replay import AssertionIdCache

__all__ = ["SamlProvider", "load_saml_provider", "peek_response_untrusted"]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 192 * 1024
"""The largest base64 ``SAMLResponse`` accepted (a response with a few certificates is ~10 KiB)."""

MAX_LOGIN_SECONDS = 15 * 60
"""A response to an AuthnRequest older than this is refused (the framework forgets sooner)."""

_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
_NAMEID_ATTRIBUTE = "NameID"
_MAX_GROUPS = 256
_MAX_NAME = 256

# pysaml2's exceptions, by class, to the message the user sees. The order matters: subclasses
# come before their bases.
_REFUSALS: tuple[tuple[type[BaseException], str], ...] = (
    (saml2.response.UnsolicitedResponse, "the SAML response answers another login's request"),
    (saml2.validate.ToEarly, "the SAML assertion is not valid yet (check the clocks)"),
    (saml2.validate.ResponseLifetimeExceed, "the SAML assertion has expired"),
    (saml2.response.StatusError, "the identity provider did not sign you in"),
    (saml2.sigver.MissingKey, "the SAML response is not signed by the identity provider"),
    (saml2.sigver.SignatureError, "the SAML response's signature is missing or invalid"),
    (saml2.sigver.SigverError, "the SAML response's signature is missing or invalid"),
    (saml2.response.IncorrectlySigned, "the SAML response's signature is missing or invalid"),
)


@contextmanager
def _quiet() -> Iterator[None]:
    """Around pysaml2 calls: it leaves its temporary files for the garbage collector to close,
    which warns (ResourceWarning) as each one is freed, inside the call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield


def _refusal(exc: BaseException) -> SsoError:
    for cls, message in _REFUSALS:
        if isinstance(exc, cls):
            return SsoError(message)
    text = str(exc)
    if "signature" in text.lower() or "signed" in text.lower():
        return SsoError("the SAML response's signature is missing or invalid")
    if "AudienceRestriction" in text:
        return SsoError("the SAML assertion is meant for another service (audience)")
    return SsoError(NOT_VALID)


def _encode_pending(request_id: str, issued: float) -> bytes:
    return json.dumps({"id": request_id, "t": issued}).encode()


def _decode_pending(pending: bytes) -> tuple[str, float]:
    try:
        data = json.loads(pending)
        request_id, issued = data["id"], float(data["t"])
    except (ValueError, TypeError, KeyError):
        raise SsoError("this login has no SAML request (start again)") from None
    if not isinstance(request_id, str) or not request_id:
        raise SsoError("this login has no SAML request (start again)")
    return request_id, issued


class SamlProvider:
    """The SAML 2.0 SP; build it with :func:`load_saml_provider`.

    :param config: the checked configuration file.
    :param base_url: the gateway's external ``https://host[:port]``.
    :param client: the pysaml2 SP built from both.
    :param idp_entity_id: the IdP this SP trusts.
    """

    name = "saml"

    def __init__(
        self, *, config: SamlConfig, base_url: str, client: Any, idp_entity_id: str
    ) -> None:
        self._config = config
        self._client = client
        self.idp_entity_id = idp_entity_id
        self.sp_entity_id = cast(str, client.config.entityid)
        self.acs_url = base_url + SAML_ACS_PATH
        self.slo_url = base_url + SAML_SLO_PATH
        self.replay_cache = AssertionIdCache()
        # sec-mod verifies in worker threads; pysaml2's client is not thread-safe (its caches).
        self._lock = threading.Lock()
        self._metadata: bytes | None = None

    def __repr__(self) -> str:
        return f"SamlProvider(sp={self.sp_entity_id!r}, idp={self.idp_entity_id!r})"

    # -- start ---------------------------------------------------------------------------------

    def start(self, *, login_id: str, return_url: str, now: float) -> SsoStart:
        """An ``AuthnRequest`` (HTTP-Redirect binding) carrying ``login_id`` as ``RelayState``."""
        if return_url != self.acs_url:
            raise SsoError("the SAML return URL is not this gateway's ACS URL")
        sign = self._config.sp_key is not None
        try:
            with self._lock, _quiet():
                request_id, info = self._client.prepare_for_authenticate(
                    entityid=self.idp_entity_id,
                    relay_state=login_id,
                    binding=saml2.BINDING_HTTP_REDIRECT,
                    sign=sign,
                    sigalg=saml2.xmldsig.SIG_RSA_SHA256 if sign else None,
                    assertion_consumer_service_url=self.acs_url,
                )
        except Exception as exc:
            log.error("event=saml_request_failed error=%s", type(exc).__name__)
            raise SsoError("the SAML login could not start") from None
        location = dict(info["headers"]).get("Location")
        if not isinstance(location, str):
            raise SsoError("the SAML login could not start")
        return SsoStart(redirect_url=location, pending=_encode_pending(str(request_id), now))

    # -- finish --------------------------------------------------------------------------------

    def finish_untrusted(
        self, *, method: str, params: Mapping[str, str], pending: bytes, now: float
    ) -> SsoIdentity:
        """Verify the browser's POST to the ACS URL; see the module docstring for every check.

        :raises SsoError: refused, with a message safe to show the user.
        """
        request_id, issued = _decode_pending(pending)
        if method != "POST":
            raise SsoError("the SAML response must be POSTed to the ACS URL")
        encoded = params.get("SAMLResponse")
        if not encoded:
            raise SsoError("no SAMLResponse in the identity provider's reply")
        if len(encoded) > MAX_RESPONSE_BYTES:
            raise SsoError("the SAML response is too large")
        if not issued - self._config.clock_skew <= now <= issued + MAX_LOGIN_SECONDS:
            raise SsoError("this SAML login took too long; start again")
        root = peek_response_untrusted(encoded)
        if root.get("InResponseTo") != request_id:
            raise SsoError("the SAML response answers another login's request")
        destination = root.get("Destination")
        if destination is not None and destination != self.acs_url:
            raise SsoError("the SAML response is addressed to another URL (Destination)")
        with self._lock:
            response = self._verify_untrusted(encoded, request_id, root, now)
            assertion = self._check_untrusted(response, request_id, now)
            identity = self._identity_untrusted(assertion)
            self.replay_cache.claim(
                str(assertion.id),
                expires=self._valid_until(assertion) + self._config.clock_skew,
                now=now,
            )
        return identity

    def _verify_untrusted(self, encoded: str, request_id: str, root: ET.Element, now: float) -> Any:
        refusal: SsoError | None = None
        with _quiet():
            try:
                response = self._client.parse_authn_request_response(
                    encoded, saml2.BINDING_HTTP_POST, outstanding={request_id: self.acs_url}
                )
            except Exception as exc:
                # The refusal is raised outside this block and without a context: pysaml2's frames
                # (in exc's traceback) hold its temporary files, which must be freed here.
                refusal, detail = _refusal(exc), type(exc).__name__
        if refusal is None and response is None:
            refusal, detail = SsoError(NOT_VALID), "pysaml2 returned no response"
        if refusal is not None:
            if str(refusal) == NOT_VALID:
                hint = _diagnose_untrusted(root, self.sp_entity_id, now, self._config.clock_skew)
                refusal = SsoError(hint) if hint else refusal
            log.info("event=saml_refused reason=%r detail=%s", str(refusal), detail)
            raise refusal
        if response.assertion is None:
            raise SsoError("the SAML response holds no usable assertion")
        name_id = getattr(response, "name_id", None)
        if name_id is not None:
            with contextlib.suppress(Exception):  # pysaml2's identity cache: not used here
                self._client.users.remove_person(name_id)
        return response

    def _check_untrusted(self, response: Any, request_id: str, now: float) -> Any:
        skew = self._config.clock_skew
        message = response.response
        if len(response.assertions) != 1:
            raise SsoError("the SAML response must hold exactly one assertion")
        assertion = response.assertion
        if message.in_response_to != request_id:
            raise SsoError("the SAML response answers another login's request")
        if message.destination is not None and message.destination != self.acs_url:
            raise SsoError("the SAML response is addressed to another URL (Destination)")
        if message.signature is not None and message.destination is None:
            # SAML bindings §3.5.5.2: a signed response sent by HTTP-POST names its Destination.
            raise SsoError("the signed SAML response names no Destination")
        issuer = assertion.issuer.text.strip() if assertion.issuer is not None else ""
        if issuer != self.idp_entity_id:
            raise SsoError("the SAML assertion comes from another identity provider")
        conditions = assertion.conditions
        if conditions is None:
            raise SsoError("the SAML assertion has no conditions (audience, validity)")
        restrictions = [
            [(audience.text or "").strip() for audience in restriction.audience]
            for restriction in conditions.audience_restriction
        ]
        # SAML core §2.5.1.4: the assertion is for us only if *every* restriction names us.
        if not restrictions or any(self.sp_entity_id not in r for r in restrictions):
            raise SsoError("the SAML assertion is meant for another service (audience)")
        if conditions.not_before and now + skew < _instant(conditions.not_before, "NotBefore"):
            raise SsoError("the SAML assertion is not valid yet (check the clocks)")
        if now - skew >= _instant(conditions.not_on_or_after, "NotOnOrAfter"):
            raise SsoError("the SAML assertion has expired")
        self._check_bearer_untrusted(assertion, request_id, now)
        return assertion

    def _check_bearer_untrusted(self, assertion: Any, request_id: str, now: float) -> None:
        """SAML profiles 4.1.4.2: one bearer confirmation for our ACS, this request, in time."""
        skew = self._config.clock_skew
        subject = assertion.subject
        reasons: list[str] = []
        for confirmation in subject.subject_confirmation if subject is not None else []:
            data = confirmation.subject_confirmation_data
            if confirmation.method != _BEARER or data is None:
                continue
            if data.recipient != self.acs_url:
                reasons.append("the SAML assertion is addressed to another URL (Recipient)")
            elif data.in_response_to != request_id:
                reasons.append("the SAML assertion answers another login's request")
            elif now - skew >= _instant(data.not_on_or_after, "SubjectConfirmation NotOnOrAfter"):
                reasons.append("the SAML assertion has expired")
            elif data.not_before and now + skew < _instant(data.not_before, "NotBefore"):
                reasons.append("the SAML assertion is not valid yet (check the clocks)")
            else:
                return
        raise SsoError(reasons[0] if reasons else "the SAML assertion has no bearer confirmation")

    def _valid_until(self, assertion: Any) -> float:
        times = [_instant(assertion.conditions.not_on_or_after, "NotOnOrAfter")]
        for confirmation in assertion.subject.subject_confirmation:
            data = confirmation.subject_confirmation_data
            if data is not None and data.not_on_or_after:
                times.append(_instant(data.not_on_or_after, "NotOnOrAfter"))
        return max(times)

    # -- identity ------------------------------------------------------------------------------

    def _identity_untrusted(self, assertion: Any) -> SsoIdentity:
        attributes = _attributes(assertion)
        name_id = assertion.subject.name_id if assertion.subject is not None else None
        config = self._config
        if config.username_attribute == _NAMEID_ATTRIBUTE:
            username = (name_id.text or "").strip() if name_id is not None else ""
        else:
            values = attributes.get(config.username_attribute, ())
            username = values[0].strip() if values else ""
        if not username:
            raise SsoError(f"the SAML assertion names no user ({config.username_attribute})")
        if len(username.encode()) > MAX_NAME_BYTES or not username.isprintable():
            raise SsoError("the user name in the SAML assertion is not acceptable")
        groups = self._groups(attributes)
        return SsoIdentity(
            username=username,
            groups=groups,
            attributes=attributes,
            logout_state=_logout_state(assertion, name_id),
        )

    def _groups(self, attributes: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        config = self._config
        if config.groups_attribute is None:
            return ()
        values = attributes.get(config.groups_attribute, ())
        if config.group_map:
            mapped = [vpn for idp, vpn in config.group_map if idp in values]
        else:
            mapped = [v for v in values if v and len(v) <= _MAX_NAME and v.isprintable()]
        return tuple(dict.fromkeys(mapped))[:_MAX_GROUPS]

    # -- metadata, logout ----------------------------------------------------------------------

    def metadata(self) -> tuple[str, bytes] | None:
        """This SP's metadata (entity ID, ACS and SLO URLs, the SP certificate when configured),
        made once: a request for it, from anyone, never waits on the lock or on pysaml2."""
        if self._metadata is not None:
            return "application/samlmetadata+xml", self._metadata
        with self._lock, _quiet():
            text = saml2.metadata.create_metadata_string(
                None, self._client.config, valid=None, cert=None, keyfile=None, sign=False
            )
        body = text if isinstance(text, bytes) else str(text).encode("utf-8")
        self._metadata = body
        return "application/samlmetadata+xml", body

    def logout_url(self, identity: SsoIdentity, *, return_url: str) -> str | None:
        """A ``LogoutRequest`` URL for the IdP's SLO service, or ``None`` when it has none."""
        if identity.logout_state is None:
            return None
        try:
            destinations = self._client.metadata.single_logout_service(
                self.idp_entity_id, saml2.BINDING_HTTP_REDIRECT, "idpsso"
            )
        except Exception:
            return None
        if not destinations:
            return None
        destination = destinations[0]["location"]
        try:
            state = json.loads(identity.logout_state)
            name_id = saml2.saml.NameID(
                text=state["name_id"],
                format=state.get("format"),
                name_qualifier=state.get("name_qualifier"),
                sp_name_qualifier=state.get("sp_name_qualifier"),
            )
            sign = self._config.sp_key is not None
            with self._lock, _quiet():
                _, request = self._client.create_logout_request(
                    destination,
                    self.idp_entity_id,
                    name_id=name_id,
                    session_indexes=[state["session_index"]]
                    if state.get("session_index")
                    else None,
                    sign=False,
                )
                info = self._client.apply_binding(
                    saml2.BINDING_HTTP_REDIRECT,
                    str(request),
                    destination,
                    relay_state=return_url,
                    sign=sign,
                    sigalg=saml2.xmldsig.SIG_RSA_SHA256 if sign else None,
                )
        except Exception as exc:
            log.warning("event=saml_logout_request_failed error=%s", type(exc).__name__)
            return None
        location = dict(info["headers"]).get("Location")
        return location if isinstance(location, str) else None


def _attributes(assertion: Any) -> dict[str, tuple[str, ...]]:
    """Every attribute's values by ``Name``, and by ``FriendlyName`` where exactly one attribute
    carries it and no attribute has it as its ``Name`` (so another attribute — one an upstream
    IdP passes through, say — can never supply the configured one's values)."""
    by_name: dict[str, list[str]] = {}
    friendly: dict[str, list[list[str]]] = {}
    for statement in assertion.attribute_statement:
        for attribute in statement.attribute:
            values = [(v.text or "").strip() for v in attribute.attribute_value]
            if attribute.name:
                by_name.setdefault(str(attribute.name), []).extend(values)
            if attribute.friendly_name and attribute.friendly_name != attribute.name:
                friendly.setdefault(str(attribute.friendly_name), []).append(values)
    out = {k: tuple(v) for k, v in by_name.items()}
    for key, sources in friendly.items():
        if key not in out and len(sources) == 1:
            out[key] = tuple(sources[0])
    return out


def _logout_state(assertion: Any, name_id: Any) -> str | None:
    if name_id is None or not name_id.text:
        return None
    session_index = None
    if assertion.authn_statement:
        session_index = assertion.authn_statement[0].session_index
    return json.dumps(
        {
            "name_id": name_id.text,
            "format": name_id.format,
            "name_qualifier": name_id.name_qualifier,
            "sp_name_qualifier": name_id.sp_name_qualifier,
            "session_index": session_index,
        }
    )


# -- loading ----------------------------------------------------------------------------------


def _pysaml2_config(config: SamlConfig, base_url: str) -> dict[str, Any]:
    policy = config.require_signature
    sp: dict[str, Any] = {
        "endpoints": {
            "assertion_consumer_service": [(base_url + SAML_ACS_PATH, saml2.BINDING_HTTP_POST)],
            "single_logout_service": [(base_url + SAML_SLO_PATH, saml2.BINDING_HTTP_REDIRECT)],
        },
        "allow_unsolicited": False,
        "want_response_signed": policy in ("response", "both"),
        "want_assertions_signed": policy in ("assertion", "both"),
        "want_assertions_or_response_signed": policy == "either",
        "authn_requests_signed": config.sp_key is not None,
        "logout_requests_signed": config.sp_key is not None,
    }
    if config.idp_entity_id is not None:
        sp["idp"] = [config.idp_entity_id]
    metadata: dict[str, Any]
    if config.idp_metadata_is_url:
        metadata = {"remote": [{"url": config.idp_metadata}]}
    else:
        metadata = {"local": [config.idp_metadata]}
    out: dict[str, Any] = {
        "entityid": config.sp_entity_id or base_url + SAML_METADATA_PATH,
        "xmlsec_binary": config.xmlsec1,
        "metadata": metadata,
        "service": {"sp": sp},
        "accepted_time_diff": config.clock_skew,
        "allow_unknown_attributes": True,
    }
    if config.sp_key is not None and config.sp_cert is not None:
        out["key_file"] = config.sp_key
        out["cert_file"] = config.sp_cert
    return out


def _check_files(config: SamlConfig) -> None:
    files = [("sp-key", config.sp_key), ("sp-cert", config.sp_cert)]
    if not config.idp_metadata_is_url:
        files.append(("idp-metadata", config.idp_metadata))
    for key, path in files:
        if path is None:
            continue
        try:  # Not os.access(): sec-mod reads with CAP_DAC_READ_SEARCH, which access(2) ignores.
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise config.error(
                key, f"cannot read {path!r}: {exc.strerror}", "a readable file"
            ) from None


def _idp_entity_id(config: SamlConfig, client: Any) -> str:
    idps = sorted(client.metadata.identity_providers())
    if config.idp_entity_id is not None:
        if config.idp_entity_id not in idps:
            raise config.error(
                "idp-entity-id",
                f"the metadata has no IdP {config.idp_entity_id!r} (it has {idps})",
                "an entityID of an IDPSSODescriptor in the metadata",
            )
        return config.idp_entity_id
    if len(idps) != 1:
        raise config.error(
            "idp-metadata",
            f"the metadata describes {len(idps)} identity providers",
            "metadata with one IdP, or idp-entity-id = ENTITY-ID",
        )
    return str(idps[0])


def _check_idp(config: SamlConfig, client: Any, idp: str) -> None:
    try:
        signing = client.metadata.certs(idp, "idpsso", use="signing")
        sso = client.metadata.single_sign_on_service(idp, saml2.BINDING_HTTP_REDIRECT)
    except Exception:
        signing, sso = [], []
    if not signing:
        raise config.error(
            "idp-metadata",
            f"the IdP {idp!r} has no signing certificate in its metadata",
            "an IDPSSODescriptor with a KeyDescriptor (use=signing or no use)",
        )
    if not sso:
        raise config.error(
            "idp-metadata",
            f"the IdP {idp!r} has no SingleSignOnService for the HTTP-Redirect binding",
            "a SingleSignOnService with Binding=urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
        )


def load_saml_provider(config_path: str, *, base_url: str) -> SamlProvider:
    """Build the SAML provider of ``auth = "saml[config=FILE]"`` (in sec-mod).

    :param config_path: the SAML configuration file (see :mod:`ocgate.sso._saml_config`).
    :param base_url: the gateway's external ``https://host[:port]``.
    :raises ConfigError: a bad file, unreadable key or metadata, or metadata without a usable IdP.
    """
    config = load_saml_config(config_path)
    parts = urlsplit(base_url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"not a base URL: {base_url!r}", file=config_path, expected="https://host[:port]"
        )
    _check_files(config)
    logging.getLogger("saml2").setLevel(logging.WARNING)  # its debug logs print whole assertions
    try:
        with _quiet():
            sp_config = saml2.config.SPConfig()
            sp_config.load(_pysaml2_config(config, base_url.rstrip("/")))
            client = saml2.client.Saml2Client(config=sp_config)
    except ConfigError:
        raise
    except Exception as exc:
        raise config.error(
            "idp-metadata",
            f"cannot load the SAML metadata or keys: {type(exc).__name__}: {exc}",
            "SAML 2.0 metadata (an EntityDescriptor with an IDPSSODescriptor)",
        ) from None
    idp = _idp_entity_id(config, client)
    _check_idp(config, client, idp)
    return SamlProvider(
        config=config, base_url=base_url.rstrip("/"), client=client, idp_entity_id=idp
    )
