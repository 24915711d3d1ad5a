"""Client-certificate authentication (``auth = certificate``; ocserv-compatibility §4.1, §4.4).

:func:`load_cert_policy` turns the ``ca-cert``, ``crl``, ``cert-user-oid`` and ``cert-group-oid``
keys into a :class:`CertVerifier`, whose :meth:`~CertVerifier.verify` checks the chain a client
presented (see :func:`peer_chain_der`) and returns its :class:`CertIdentity` or raises
:class:`~ocgate.errors.AuthFailed` with a log-only reason. :func:`check_cert_user` and
:func:`check_cert_group` bind that identity to a typed user and a chosen group.
:func:`configure_client_cert_request` makes a TLS server context ask for certificates.
"""

from __future__ import annotations

from ocgate.certauth._identity import (
    SAN_RFC822NAME,
    CertIdentity,
    check_cert_group,
    check_cert_user,
)
from ocgate.certauth._tls import (
    CertRequest,
    cert_request_mode,
    configure_client_cert_request,
    peer_chain_der,
)
from ocgate.certauth._verify import MAX_CHAIN_LENGTH, CertPolicy, CertVerifier, load_cert_policy

__all__ = [
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
]
