"""AnyConnect / Secure Client profiles: authoring (``ocgate profile``) and validation.

The gateway serves profiles it is given (``user-profile``, ``service-profile-vpn-mgmt``,
``service-profile-nvm``; :mod:`ocgate.config._profile`, :mod:`ocgate.gateway._login`); this
package writes them. Three kinds:

* ``client``: the VPN profile (``AnyConnectProfile``): server list, Automatic VPN Policy with
  Trusted Network Detection, Always-On with its connect failure policy and captive-portal
  remediation, certificate pinning (:mod:`ocgate.profiles._client`);
* ``mgmt``: the management-tunnel profile, the same element set under stricter rules;
* ``nvm``: the NVM service profile, derived from the collector's own keys
  (:mod:`ocgate.profiles._nvm`).

Every profile written is validated against a schema kept in ``schemas/`` (:func:`validate`), and
every reader checks the rules again, so a file written here reads back equal. docs/profiles.md
cites the source of each element and says which parts are inference.
"""

from __future__ import annotations

from ocgate.profiles._client import (
    CertificatePin,
    ClientProfile,
    HostEntry,
    TrustedHttpsServer,
    read_client,
    render_client,
)
from ocgate.profiles._nvm import NvmProfile, nvm_profile_from_settings, read_nvm, render_nvm
from ocgate.profiles._schema import validate

__all__ = [
    "CertificatePin",
    "ClientProfile",
    "HostEntry",
    "NvmProfile",
    "TrustedHttpsServer",
    "nvm_profile_from_settings",
    "read_client",
    "read_nvm",
    "render_client",
    "render_nvm",
    "validate",
]
