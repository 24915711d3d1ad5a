"""A test SAML identity provider: its key, certificate and metadata, and signed responses.

Responses are built from a template here and signed by the ``xmlsec1`` program (Debian package
xmlsec1: the XML Security Library in C, an implementation independent of pysaml2, which the SP
uses only to verify). Every field a negative test needs to change is a keyword of
:func:`make_response`; :func:`sign` signs the assertion, the response or both, so each vector
carries a real signature over exactly what the test changed. Keys are generated per test session
(RSA 2048, self-signed), never committed.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

IDP_ENTITY_ID = "https://idp.test/saml2/idp/metadata.php"
IDP_SSO_URL = "https://idp.test/saml2/idp/SSOService.php"
IDP_SLO_URL = "https://idp.test/saml2/idp/SingleLogoutService.php"
BASE_URL = "https://vpn.test"
ACS_URL = BASE_URL + "/+CSCOE+/saml/acs"
SP_ENTITY_ID = BASE_URL + "/+CSCOE+/saml/metadata"

_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
_ASSERTION_NODE = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
_RESPONSE_NODE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"


@dataclass(frozen=True)
class KeyPair:
    key_pem: bytes
    cert_pem: bytes

    @property
    def cert_b64(self) -> str:
        der = x509.load_pem_x509_certificate(self.cert_pem).public_bytes(serialization.Encoding.DER)
        return base64.b64encode(der).decode()

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        key, cert = directory / f"{stem}.key", directory / f"{stem}.crt"
        key.write_bytes(self.key_pem)
        cert.write_bytes(self.cert_pem)
        return key, cert


def make_keypair(common_name: str) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return KeyPair(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )


def idp_metadata(idp: KeyPair, *, entity_id: str = IDP_ENTITY_ID, slo: bool = True) -> str:
    """SAML 2.0 metadata of the test IdP (saml-metadata 2.4.3)."""
    slo_line = (
        '<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
        f'Location="{IDP_SLO_URL}"/>'
        if slo
        else ""
    )
    return f"""<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{idp.cert_b64}</ds:X509Certificate>
      </ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    {slo_line}
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
        Location="{IDP_SSO_URL}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"""


def _time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_SIGNATURE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference URI="#{ref}">
<ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
</ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<ds:DigestValue></ds:DigestValue>
</ds:Reference>
</ds:SignedInfo>
<ds:SignatureValue></ds:SignatureValue>
<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
</ds:Signature>"""


def make_response(
    *,
    idp: KeyPair,
    request_id: str,
    now: float,
    username: str = "alice",
    groups: tuple[str, ...] = ("engineering",),
    audience: str = SP_ENTITY_ID,
    recipient: str = ACS_URL,
    destination: str | None = ACS_URL,
    issuer: str = IDP_ENTITY_ID,
    in_response_to: str | None = None,
    not_before: float | None = None,
    not_on_or_after: float | None = None,
    assertion_id: str | None = None,
    sign_assertion: bool = True,
    sign_response: bool = False,
) -> str:
    """A SAML ``Response`` as an IdP sends it (XML text), signed as asked."""
    irt = request_id if in_response_to is None else in_response_to
    nb = now - 60 if not_before is None else not_before
    noa = now + 300 if not_on_or_after is None else not_on_or_after
    aid = assertion_id or "_a" + os.urandom(16).hex()
    rid = "_r" + os.urandom(16).hex()
    values = "".join(
        f'<saml:AttributeValue xsi:type="xs:string">{g}</saml:AttributeValue>' for g in groups
    )
    cert = idp.cert_b64
    assertion_sig = _SIGNATURE.format(ref=aid, cert=cert) if sign_assertion else ""
    response_sig = _SIGNATURE.format(ref=rid, cert=cert) if sign_response else ""
    dest = f' Destination="{destination}"' if destination is not None else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"
    xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{rid}" Version="2.0"
    IssueInstant="{_time(now)}"{dest} InResponseTo="{irt}">
<saml:Issuer>{issuer}</saml:Issuer>{response_sig}
<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
<saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="{aid}" Version="2.0"
    IssueInstant="{_time(now)}">
<saml:Issuer>{issuer}</saml:Issuer>{assertion_sig}
<saml:Subject>
<saml:NameID SPNameQualifier="{audience}"
    Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient">{username}</saml:NameID>
<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
<saml:SubjectConfirmationData NotOnOrAfter="{_time(noa)}" Recipient="{recipient}"
    InResponseTo="{irt}"/>
</saml:SubjectConfirmation>
</saml:Subject>
<saml:Conditions NotBefore="{_time(nb)}" NotOnOrAfter="{_time(noa)}">
<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>
</saml:Conditions>
<saml:AuthnStatement AuthnInstant="{_time(now)}" SessionIndex="_s{aid}">
<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext>
</saml:AuthnStatement>
<saml:AttributeStatement>
<saml:Attribute Name="uid" NameFormat="{_BASIC}">
<saml:AttributeValue xsi:type="xs:string">{username}</saml:AttributeValue></saml:Attribute>
<saml:Attribute Name="groups" NameFormat="{_BASIC}">{values}</saml:Attribute>
</saml:AttributeStatement>
</saml:Assertion>
</samlp:Response>
"""


def sign(xml: str, idp: KeyPair, *, assertion: bool = True, response: bool = False) -> str:
    """Fill the signature templates of ``xml`` with the ``xmlsec1`` program.

    The assertion is signed first: a response signature covers the signed assertion.
    """
    with tempfile.TemporaryDirectory() as tmp:
        key, cert = idp.write(Path(tmp), "idp")
        doc = Path(tmp) / "doc.xml"
        doc.write_text(xml)
        for node, wanted in ((_ASSERTION_NODE, assertion), (_RESPONSE_NODE, response)):
            if not wanted:
                continue
            out = Path(tmp) / "signed.xml"
            subprocess.run(
                [
                    "xmlsec1",
                    "--sign",
                    "--privkey-pem",
                    f"{key},{cert}",
                    "--id-attr:ID",
                    node,
                    "--node-xpath",
                    f"//*[local-name()='{node.rsplit(':', 1)[1]}']/*[local-name()='Signature']",
                    "--output",
                    str(out),
                    str(doc),
                ],
                check=True,
                capture_output=True,
            )
            out.replace(doc)
        return doc.read_text()


def signed_response(idp: KeyPair, **kwargs: object) -> str:
    """:func:`make_response` signed as its ``sign_*`` keywords say, in base64 (as POSTed)."""
    sign_assertion = bool(kwargs.get("sign_assertion", True))
    sign_response = bool(kwargs.get("sign_response", False))
    xml = make_response(idp=idp, **kwargs)  # type: ignore[arg-type]
    if sign_assertion or sign_response:
        xml = sign(xml, idp, assertion=sign_assertion, response=sign_response)
    return encode(xml)


def encode(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()
