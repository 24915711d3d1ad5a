"""SAML responses at the ACS URL: ``SamlProvider.finish_untrusted`` raises only ``SsoError``.

The provider is the real one (pysaml2, xmlsec1) with the metadata of a test IdP whose key this
target generates at start and never uses: the fuzzer cannot sign, so no input may be accepted.
Input: one selector byte (bit 0: the rest is the XML document, base64-encoded here as the
HTTP-POST binding carries it; otherwise the rest is the ``SAMLResponse`` field as sent; bit 1:
the method is GET), then the bytes. Every response names the login's request ``_fuzzreq`` unless
the fuzzer changes it, so inputs get past the first look (``peek_response_untrusted``) into
pysaml2's parser and signature check.

Oracle: only ``SsoError``; nothing is ever accepted (no signature of the IdP's key exists).
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from pathlib import Path

import _harness
import atheris
from tests.unit.sso import saml_idp

with atheris.instrument_imports(include=["ocgate"]):
    from ocgate.errors import SsoError
    from ocgate.sso._saml import load_saml_provider

REQUEST_ID = "_fuzzreq"
_DIR = Path(tempfile.mkdtemp(prefix="fuzz_saml"))
(_DIR / "idp.xml").write_text(saml_idp.idp_metadata(saml_idp.make_keypair("idp.test")))
(_DIR / "saml.conf").write_text("idp-metadata = idp.xml\ngroups-attribute = groups\n")
PROVIDER = load_saml_provider(str(_DIR / "saml.conf"), base_url=saml_idp.BASE_URL)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    field = base64.b64encode(body).decode() if selector & 1 else body.decode("latin-1")
    now = time.time()
    pending = json.dumps({"id": REQUEST_ID, "t": now}).encode()
    try:
        identity = PROVIDER.finish_untrusted(
            method="GET" if selector & 2 else "POST",
            params={"SAMLResponse": field, "RelayState": "login"},
            pending=pending,
            now=now,
        )
    except SsoError:
        return
    raise AssertionError(f"accepted a response the fuzzer could not sign: {identity!r}")


def seeds() -> list[bytes]:
    """Responses of the unit tests' template: signed by another key, unsigned, and odd ones."""
    now = time.time()
    other = saml_idp.make_keypair("idp.test")
    signed = saml_idp.sign(
        saml_idp.make_response(idp=other, request_id=REQUEST_ID, now=now, sign_response=True),
        other,
        response=True,
    )
    unsigned = saml_idp.make_response(
        idp=other, request_id=REQUEST_ID, now=now, sign_assertion=False
    )
    return [
        b"\x01" + signed.encode(),
        b"\x01" + unsigned.encode(),
        b"\x00" + base64.b64encode(unsigned.encode()),
        b"\x01<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol' "
        b"InResponseTo='_fuzzreq'/>",
    ]


if __name__ == "__main__":
    _harness.main(test_one_input)
