from __future__ import annotations

import ocgate.certauth


def test_public_api() -> None:
    assert set(ocgate.certauth.__all__) == {
        "MAX_CHAIN_LENGTH",
        "SAN_RFC822NAME",
        "CertIdentity",
        "CertPolicy",
        "CertRequest",
        "CertVerifier",
        "cert_request_mode",
        "check_cert_group",
        "check_cert_user",
        "configure_client_cert_request",
        "load_cert_policy",
        "peer_chain_der",
    }
    for name in ocgate.certauth.__all__:
        assert hasattr(ocgate.certauth, name)
