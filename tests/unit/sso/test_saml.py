"""The SAML 2.0 SP (ocgate.sso._saml) against responses signed by the xmlsec1 program.

Every vector is a real signed response (tests/unit/sso/saml_idp.py: a template filled in and
signed by xmlsec1 with a test IdP key generated for the module); each negative test changes one
thing before signing, so only the check under test can refuse it. pysaml2 reads the wall clock
for its own checks, so the vectors are made around ``time.time()``.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ocgate.errors import ConfigError, SsoError
from ocgate.sso._saml import SamlProvider, load_saml_provider
from ocgate.sso._saml_replay import AssertionIdCache

from . import saml_idp as idp_mod
from .saml_idp import ACS_URL, BASE_URL, SP_ENTITY_ID, KeyPair


@pytest.fixture(scope="module")
def idp() -> KeyPair:
    return idp_mod.make_keypair("idp.test")


@pytest.fixture(scope="module")
def other_idp() -> KeyPair:
    return idp_mod.make_keypair("idp.test")  # same name, another key: a forger's


def _write(directory: Path, idp: KeyPair, conf: str) -> str:
    (directory / "idp.xml").write_text(idp_mod.idp_metadata(idp))
    path = directory / "saml.conf"
    path.write_text(conf)
    return str(path)


@pytest.fixture
def provider(tmp_path: Path, idp: KeyPair) -> SamlProvider:
    conf = "idp-metadata = idp.xml\ngroups-attribute = groups\n"
    return load_saml_provider(_write(tmp_path, idp, conf), base_url=BASE_URL)


def _start(provider: SamlProvider, login_id: str = "login-1") -> tuple[str, bytes]:
    start = provider.start(login_id=login_id, return_url=ACS_URL, now=time.time())
    return json.loads(start.pending)["id"], start.pending


def _finish(provider: SamlProvider, response: str, pending: bytes) -> object:
    return provider.finish_untrusted(
        method="POST",
        params={"SAMLResponse": response, "RelayState": "login-1"},
        pending=pending,
        now=time.time(),
    )


def test_start_is_an_authn_request_for_the_idp_carrying_the_login(provider: SamlProvider) -> None:
    start = provider.start(login_id="login-1", return_url=ACS_URL, now=time.time())
    url = urlsplit(start.redirect_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == idp_mod.IDP_SSO_URL
    query = parse_qs(url.query)
    assert query["RelayState"] == ["login-1"]
    import zlib

    request = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()
    request_id = json.loads(start.pending)["id"]
    assert f'ID="{request_id}"' in request
    assert f'AssertionConsumerServiceURL="{ACS_URL}"' in request
    assert f">{SP_ENTITY_ID}</" in request
    assert "pending" not in repr(start)


def test_valid_signed_assertion_yields_user_and_groups(
    idp: KeyPair, provider: SamlProvider
) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), groups=("engineering", "staff")
    )
    identity = _finish(provider, response, pending)
    assert identity.username == "alice"  # type: ignore[attr-defined]
    assert identity.groups == ("engineering", "staff")  # type: ignore[attr-defined]
    assert identity.attributes["uid"] == ("alice",)  # type: ignore[attr-defined]
    state = json.loads(identity.logout_state)  # type: ignore[attr-defined]
    assert state["name_id"] == "alice"
    assert state["session_index"].startswith("_s")
    assert "logout_state" not in repr(identity)


def test_signed_response_with_unsigned_assertion_is_accepted_by_default(
    idp: KeyPair, provider: SamlProvider
) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), sign_assertion=False, sign_response=True
    )
    assert _finish(provider, response, pending).username == "alice"  # type: ignore[attr-defined]


def test_unsigned_response_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), sign_assertion=False
    )
    with pytest.raises(SsoError, match="signature is missing or invalid"):
        _finish(provider, response, pending)


def test_tampered_assertion_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    xml = idp_mod.sign(idp_mod.make_response(idp=idp, request_id=request_id, now=time.time()), idp)
    tampered = xml.replace(">alice</saml:NameID>", ">admin</saml:NameID>")
    assert tampered != xml
    with pytest.raises(SsoError, match="signature is missing or invalid"):
        _finish(provider, idp_mod.encode(tampered), pending)


@pytest.mark.parametrize("where", ["before", "after", "response-extensions"])
def test_signature_wrapping_is_refused(idp: KeyPair, provider: SamlProvider, where: str) -> None:
    """XSW: an unsigned forged assertion beside (or hidden near) the genuinely signed one."""
    request_id, pending = _start(provider)
    xml = idp_mod.sign(idp_mod.make_response(idp=idp, request_id=request_id, now=time.time()), idp)
    start, end = xml.index("<saml:Assertion"), xml.index("</saml:Assertion>") + 17
    signed = xml[start:end]
    sig_start, sig_end = signed.index("<ds:Signature"), signed.index("</ds:Signature>") + 15
    forged = (signed[:sig_start] + signed[sig_end:]).replace(">alice<", ">admin<")
    forged = forged.replace('ID="_a', 'ID="_forged')
    if where == "before":
        wrapped = xml[:start] + forged + signed + xml[end:]
    elif where == "after":
        wrapped = xml[:start] + signed + forged + xml[end:]
    else:
        wrapped = xml[:start] + "<samlp:Extensions>" + signed + "</samlp:Extensions>" + forged
        wrapped += xml[end:]
    with pytest.raises(SsoError):
        _finish(provider, idp_mod.encode(wrapped), pending)


def test_assertion_signed_by_another_key_is_refused(
    other_idp: KeyPair, provider: SamlProvider
) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(other_idp, request_id=request_id, now=time.time())
    with pytest.raises(SsoError, match="signature is missing or invalid"):
        _finish(provider, response, pending)


def test_assertion_only_policy_refuses_a_signed_response_with_unsigned_assertion(
    tmp_path: Path, idp: KeyPair
) -> None:
    conf = "idp-metadata = idp.xml\nrequire-signature = assertion\n"
    provider = load_saml_provider(_write(tmp_path, idp, conf), base_url=BASE_URL)
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), sign_assertion=False, sign_response=True
    )
    with pytest.raises(SsoError, match="signature"):
        _finish(provider, response, pending)


def test_wrong_audience_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), audience="https://other-sp.test/"
    )
    with pytest.raises(SsoError, match="another service"):
        _finish(provider, response, pending)


def test_wrong_recipient_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), recipient="https://other-sp.test/acs"
    )
    with pytest.raises(SsoError, match="Recipient"):
        _finish(provider, response, pending)


def test_wrong_destination_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp,
        request_id=request_id,
        now=time.time(),
        sign_assertion=False,
        sign_response=True,
        destination="https://other-sp.test/acs",
    )
    with pytest.raises(SsoError, match="Destination"):
        _finish(provider, response, pending)


def test_other_issuer_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), issuer="https://evil.test/idp"
    )
    with pytest.raises(SsoError):
        _finish(provider, response, pending)


def test_expired_assertion_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    now = time.time()
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=now - 900, not_on_or_after=now - 600
    )
    with pytest.raises(SsoError, match="expired"):
        _finish(provider, response, pending)


def test_expiry_is_judged_against_the_given_clock(idp: KeyPair, provider: SamlProvider) -> None:
    """Past pysaml2's wall-clock checks, the module's own checks use ``now``."""
    request_id, pending = _start(provider)
    now = time.time()
    response = idp_mod.signed_response(idp, request_id=request_id, now=now)
    with pytest.raises(SsoError, match="expired"):
        provider.finish_untrusted(
            method="POST", params={"SAMLResponse": response}, pending=pending, now=now + 430
        )


def test_not_yet_valid_assertion_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    now = time.time()
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=now, not_before=now + 900, not_on_or_after=now + 1200
    )
    with pytest.raises(SsoError, match="not valid yet"):
        _finish(provider, response, pending)


def test_replayed_assertion_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(idp, request_id=request_id, now=time.time())
    _finish(provider, response, pending)
    with pytest.raises(SsoError, match="already used"):
        _finish(provider, response, pending)


def test_assertion_for_another_login_is_refused(idp: KeyPair, provider: SamlProvider) -> None:
    request_a, _pending_a = _start(provider, "login-a")
    _request_b, pending_b = _start(provider, "login-b")
    response = idp_mod.signed_response(idp, request_id=request_a, now=time.time())
    with pytest.raises(SsoError, match="another login"):
        _finish(provider, response, pending_b)


def test_bearer_confirmation_for_another_login_is_refused(
    idp: KeyPair, provider: SamlProvider
) -> None:
    """The Response says our request, its signed assertion's confirmation another one."""
    request_id, pending = _start(provider)
    xml = idp_mod.make_response(idp=idp, request_id=request_id, now=time.time())
    xml = xml.replace(f'\n    InResponseTo="{request_id}"/>', '\n    InResponseTo="_other"/>')
    response = idp_mod.encode(idp_mod.sign(xml, idp))
    with pytest.raises(SsoError, match="another login"):
        _finish(provider, response, pending)


@pytest.mark.parametrize(
    ("params", "method", "message"),
    [
        ({}, "POST", "no SAMLResponse"),
        ({"SAMLResponse": "***"}, "POST", "not base64"),
        ({"SAMLResponse": base64.b64encode(b"<x/>").decode()}, "GET", "POSTed"),
        ({"SAMLResponse": base64.b64encode(b"<x/>").decode()}, "POST", "not a SAML Response"),
        ({"SAMLResponse": base64.b64encode(b"<x").decode()}, "POST", "not well-formed"),
        (
            {
                "SAMLResponse": base64.b64encode(
                    b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
                ).decode()
            },
            "POST",
            "not well-formed",
        ),
        ({"SAMLResponse": "A" * 300_000}, "POST", "too large"),
    ],
)
def test_malformed_returns_are_refused(
    provider: SamlProvider, params: dict[str, str], method: str, message: str
) -> None:
    _request_id, pending = _start(provider)
    with pytest.raises(SsoError, match=message):
        provider.finish_untrusted(method=method, params=params, pending=pending, now=time.time())


def test_fuzz_unknown_xml_encoding_is_refused(provider: SamlProvider) -> None:
    """fuzz_saml's first finding (fuzz/corpus/saml/crash-unknown-encoding): ``LookupError``."""
    _request_id, pending = _start(provider)
    xml = b'<?xml version="1.0" encoding="UTF-6"?>\n<samlp:Response/>'
    with pytest.raises(SsoError, match="not well-formed"):
        provider.finish_untrusted(
            method="POST",
            params={"SAMLResponse": base64.b64encode(xml).decode()},
            pending=pending,
            now=time.time(),
        )


def test_pending_of_no_request_is_refused(provider: SamlProvider) -> None:
    with pytest.raises(SsoError, match="no SAML request"):
        provider.finish_untrusted(
            method="POST", params={"SAMLResponse": "AAAA"}, pending=b"junk", now=time.time()
        )


def test_username_and_group_mapping_from_attributes(tmp_path: Path, idp: KeyPair) -> None:
    conf = (
        "idp-metadata = idp.xml\nusername-attribute = uid\ngroups-attribute = groups\n"
        "group-map = engineering -> eng-vpn\ngroup-map = nobody-has-this -> x\n"
    )
    provider = load_saml_provider(_write(tmp_path, idp, conf), base_url=BASE_URL)
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), username="bob", groups=("engineering", "x")
    )
    identity = _finish(provider, response, pending)
    assert identity.username == "bob"  # type: ignore[attr-defined]
    assert identity.groups == ("eng-vpn",)  # type: ignore[attr-defined]


def test_metadata_names_the_acs_and_entity_id(provider: SamlProvider) -> None:
    content_type, body = provider.metadata()  # type: ignore[misc]
    assert content_type == "application/samlmetadata+xml"
    text = body.decode()
    assert f'entityID="{SP_ENTITY_ID}"' in text
    assert f'Location="{ACS_URL}"' in text
    assert "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" in text


def test_logout_url_is_a_logout_request_for_the_session(
    idp: KeyPair, provider: SamlProvider
) -> None:
    request_id, pending = _start(provider)
    identity = _finish(
        provider, idp_mod.signed_response(idp, request_id=request_id, now=time.time()), pending
    )
    url = provider.logout_url(identity, return_url=BASE_URL + "/")  # type: ignore[arg-type]
    assert url is not None
    assert url.startswith(idp_mod.IDP_SLO_URL + "?SAMLRequest=")
    import zlib

    request = zlib.decompress(
        base64.b64decode(parse_qs(urlsplit(url).query)["SAMLRequest"][0]), -15
    )
    assert b"LogoutRequest" in request
    assert b">alice</" in request
    assert b"SessionIndex" in request


def test_signed_requests_with_an_sp_key(tmp_path: Path, idp: KeyPair) -> None:
    sp = idp_mod.make_keypair("vpn.test")
    sp.write(tmp_path, "sp")
    conf = "idp-metadata = idp.xml\nsp-key = sp.key\nsp-cert = sp.crt\n"
    provider = load_saml_provider(_write(tmp_path, idp, conf), base_url=BASE_URL)
    start = provider.start(login_id="login-1", return_url=ACS_URL, now=time.time())
    query = parse_qs(urlsplit(start.redirect_url).query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    assert query["Signature"]
    _, body = provider.metadata()  # type: ignore[misc]
    assert sp.cert_b64[:64].encode() in body
    assert b"PRIVATE" not in body
    assert "sp.key" not in repr(provider)


# -- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "where"),
    [
        ("groups-attribute = groups\n", "idp-metadata"),
        ("idp-metadata = idp.xml\nclock-skew = soon\n", ":2: clock-skew"),
        ("idp-metadata = idp.xml\nclock-skew = 9999\n", ":2: clock-skew"),
        ("idp-metadata = idp.xml\nrequire-signature = none\n", ":2: require-signature"),
        ("idp-metadata = idp.xml\ngroup-map = engineering\n", ":2: group-map"),
        ("idp-metadata = idp.xml\nfavourite-colour = blue\n", ":2: favourite-colour"),
        ("idp-metadata = idp.xml\nidp-metadata = idp.xml\n", ":2: idp-metadata"),
        ("idp-metadata = http://idp.test/metadata\n", ":1: idp-metadata"),
        ("idp-metadata = idp.xml\nsp-key = sp.key\n", "sp-cert"),
        ("idp-metadata = missing.xml\n", ":1: idp-metadata"),
        ("idp-metadata = idp.xml\nidp-entity-id = https://nope.test/\n", ":2: idp-entity-id"),
        ("[section]\n", ":1:"),
    ],
)
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, idp: KeyPair, conf: str, where: str
) -> None:
    path = _write(tmp_path, idp, conf)
    with pytest.raises(ConfigError) as info:
        load_saml_provider(path, base_url=BASE_URL)
    assert str(info.value).startswith(path)
    assert where in str(info.value)
    assert "expected" in str(info.value)


def test_metadata_that_is_not_saml_is_a_config_error(tmp_path: Path, idp: KeyPair) -> None:
    path = _write(tmp_path, idp, "idp-metadata = idp.xml\n")
    (tmp_path / "idp.xml").write_text("<html>not metadata</html>")
    with pytest.raises(ConfigError, match=r"saml\.conf.*idp-metadata"):
        load_saml_provider(path, base_url=BASE_URL)


def test_idp_without_signing_key_is_a_config_error(tmp_path: Path, idp: KeyPair) -> None:
    path = _write(tmp_path, idp, "idp-metadata = idp.xml\n")
    text = idp_mod.idp_metadata(idp)
    start, end = text.index("<md:KeyDescriptor"), text.index("</md:KeyDescriptor>")
    (tmp_path / "idp.xml").write_text(text[:start] + text[end + len("</md:KeyDescriptor>") :])
    with pytest.raises(ConfigError, match="no signing certificate"):
        load_saml_provider(path, base_url=BASE_URL)


# -- the replay cache ---------------------------------------------------------------------


def test_replay_cache_forgets_expired_ids_and_is_bounded() -> None:
    cache = AssertionIdCache(max_entries=2)
    cache.claim("a", expires=100.0, now=0.0)
    with pytest.raises(SsoError, match="already used"):
        cache.claim("a", expires=100.0, now=50.0)
    cache.claim("b", expires=200.0, now=50.0)
    with pytest.raises(SsoError, match="too many"):
        cache.claim("c", expires=200.0, now=60.0)  # full of live IDs: refuse, never forget one
    cache.claim("c", expires=300.0, now=100.0)  # "a" expired at 100
    assert len(cache) == 2
    cache.claim("a", expires=400.0, now=250.0)
    assert "'a'" not in repr(cache)


def test_replay_cache_keeps_an_id_at_most_max_lifetime() -> None:
    cache = AssertionIdCache(max_entries=10, max_lifetime=60.0)
    cache.claim("a", expires=10_000.0, now=0.0)
    with pytest.raises(SsoError):
        cache.claim("a", expires=10_000.0, now=59.0)
    cache.claim("a", expires=10_000.0, now=61.0)


# -- the unverified first look ------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ('NotBefore="2026-01-01T00:00:00Z" NotOnOrAfter="2026-01-01T00:05:00Z"', "has expired"),
        ('NotBefore="2026-01-02T00:00:00Z" NotOnOrAfter="2026-01-02T00:05:00Z"', "not valid yet"),
        ('NotOnOrAfter="0001-01-01T00:00:00+14:00"', "has expired"),
        ('NotOnOrAfter="soon"', "not a valid time"),
        ("", None),
    ],
)
def test_diagnosis_names_the_reason_pysaml2_left_out(conditions: str, expected: str | None) -> None:
    """Only the message of an already-decided refusal comes from the unverified document."""
    from ocgate.sso._saml_peek import _diagnose_untrusted, peek_response_untrusted

    xml = (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" InResponseTo="_r">'
        f"<saml:Assertion><saml:Conditions {conditions}><saml:AudienceRestriction>"
        f"<saml:Audience>{SP_ENTITY_ID}</saml:Audience></saml:AudienceRestriction>"
        "</saml:Conditions></saml:Assertion></samlp:Response>"
    )
    root = peek_response_untrusted(idp_mod.encode(xml))
    assert root.get("InResponseTo") == "_r"
    now = 1767225600.0 + 3600  # 2026-01-01T01:00:00Z
    hint = _diagnose_untrusted(root, SP_ENTITY_ID, now, 120)
    if expected is None:
        assert hint is None
        other = _diagnose_untrusted(root, "https://other-sp.test/", now, 120)
        assert other == "the SAML assertion is meant for another service (audience)"
    else:
        assert hint is not None
        assert expected in hint


# Found in review (issue 15): each audience restriction, a signed response's Destination, and
# which attribute supplies the user name.


def _signed(idp: KeyPair, request_id: str, edit: tuple[str, str], **kwargs: object) -> str:
    xml = idp_mod.make_response(idp=idp, request_id=request_id, now=time.time(), **kwargs)  # type: ignore[arg-type]
    assert edit[0] in xml
    response = bool(kwargs.get("sign_response", False))
    return idp_mod.encode(idp_mod.sign(xml.replace(edit[0], edit[1]), idp, response=response))


def test_every_audience_restriction_must_name_this_sp(idp: KeyPair, provider: SamlProvider) -> None:
    request_id, pending = _start(provider)
    end = "</saml:AudienceRestriction>"
    other = (
        f"{end}<saml:AudienceRestriction><saml:Audience>https://other-sp.test/</saml:Audience>{end}"
    )
    with pytest.raises(SsoError, match="another service"):
        _finish(provider, _signed(idp, request_id, (end, other)), pending)


def test_a_signed_response_without_destination_is_refused(
    idp: KeyPair, provider: SamlProvider
) -> None:
    request_id, pending = _start(provider)
    response = idp_mod.signed_response(
        idp, request_id=request_id, now=time.time(), destination=None, sign_response=True
    )
    with pytest.raises(SsoError, match="Destination"):
        _finish(provider, response, pending)


def test_a_friendly_name_never_supplies_another_attribute(tmp_path: Path, idp: KeyPair) -> None:
    conf = "idp-metadata = idp.xml\nusername-attribute = login\n"
    provider = load_saml_provider(_write(tmp_path, idp, conf), base_url=BASE_URL)
    request_id, pending = _start(provider)
    # The uid attribute (value "mallory") carries FriendlyName "login" and comes first; the
    # attribute Named "login" (value "carol") comes after: the user name is carol's.
    xml = idp_mod.make_response(idp=idp, request_id=request_id, now=time.time(), username="mallory")
    xml = xml.replace(
        '<saml:Attribute Name="uid"', '<saml:Attribute FriendlyName="login" Name="uid"'
    )
    named = '<saml:Attribute Name="login"><saml:AttributeValue>carol</saml:AttributeValue>'
    xml = xml.replace(
        "</saml:AttributeStatement>", f"{named}</saml:Attribute></saml:AttributeStatement>"
    )
    identity = _finish(provider, idp_mod.encode(idp_mod.sign(xml, idp)), pending)
    assert identity.username == "carol"  # type: ignore[attr-defined]
