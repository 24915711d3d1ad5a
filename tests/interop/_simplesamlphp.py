"""A real SAML 2.0 identity provider for the SAML interop tests: SimpleSAMLphp from Debian.

Debian's ``simplesamlphp`` package (1.19) is configured from scratch in a temporary directory
(``SIMPLESAMLPHP_CONFIG_DIR``; nothing under /etc is read or changed except the attribute maps it
ships): a hosted SAML 2.0 IdP whose users come from the ``exampleauth:UserPass`` module
(:data:`USERS`: user name, password, a ``uid`` and a ``groups`` attribute), signing assertions
and responses with an RSA key generated for the test, and one remote SP (the gateway: its entity
ID and ACS URL). It is served by PHP's built-in web server (``php -S``, package php-cli) on
an address inside a test namespace, so the browser in the client namespace reaches it over the
veth pair and nothing listens on the host. The IdP's metadata, as SimpleSAMLphp publishes it
(``/saml2/idp/metadata.php``), is fetched from inside the namespace and written to a file for
the SP's ``idp-metadata``. Without the packages the tests are skipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.sso.saml_idp import make_keypair

from ._netns import tcp_port_open

__all__ = ["USERS", "SimpleSamlPhp", "require_simplesamlphp", "start_simplesamlphp"]

_WWW = Path("/usr/share/simplesamlphp/www")
_ATTRIBUTE_MAPS = "/etc/simplesamlphp/attributemap/"

USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "alice": ("alicepass", ("engineering",)),
    "bob": ("bobpass", ("sales",)),
}
"""user -> (password, groups) of the IdP's exampleauth:UserPass source."""


def require_simplesamlphp() -> None:
    """Skip the test when SimpleSAMLphp, PHP or xmlsec1 is missing (``make`` installs them)."""
    for what, present in (
        ("simplesamlphp", _WWW.is_dir()),
        ("php-cli", shutil.which("php") is not None),
        ("xmlsec1", shutil.which("xmlsec1") is not None),
    ):
        if not present:
            pytest.skip(f"{what} is not installed (Debian package {what})")


@dataclass
class SimpleSamlPhp:
    """A running SimpleSAMLphp IdP.

    :param base_url: ``http://ADDR:PORT/``.
    :param entity_id: the IdP's entityID.
    :param metadata_file: its SAML metadata as it publishes it.
    :param workdir: the config, data and log directory.
    """

    base_url: str
    entity_id: str
    metadata_file: Path
    workdir: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        """SimpleSAMLphp's log and the PHP server's output, for failure diagnostics."""
        parts = []
        for path in (self.workdir / "log" / "simplesamlphp.log", self.workdir / "php.log"):
            if path.exists():
                parts.append(f"== {path.name}\n" + path.read_text(errors="replace")[-20000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _php_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _config_php(workdir: Path, base_url: str) -> str:
    dirs = {name: str(workdir / name) + "/" for name in ("cert", "log", "data", "metadata")}
    return f"""<?php
$config = [
    'baseurlpath' => {_php_str(base_url)},
    'certdir' => {_php_str(dirs["cert"])},
    'loggingdir' => {_php_str(dirs["log"])},
    'datadir' => {_php_str(dirs["data"])},
    'tempdir' => {_php_str(str(workdir / "tmp"))},
    'metadatadir' => {_php_str(dirs["metadata"])},
    'attributenamemapdir' => {_php_str(_ATTRIBUTE_MAPS)},
    'secretsalt' => {_php_str(secrets.token_hex(16))},
    'auth.adminpassword' => {_php_str(secrets.token_hex(16))},
    'technicalcontact_name' => 'ocgate tests',
    'technicalcontact_email' => 'tests@example.org',
    'timezone' => 'UTC',
    'logging.level' => SimpleSAML\\Logger::DEBUG,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    'enable.saml20-idp' => true,
    'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true],
    'store.type' => 'phpsession',
    'session.phpsession.savepath' => {_php_str(str(workdir / "sessions"))},
    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'admin.checkforupdates' => false,
    'language.available' => ['en'],
    'language.default' => 'en',
    'trusted.url.domains' => [],
];
"""


def _authsources_php() -> str:
    users = "\n".join(
        f"        {_php_str(f'{user}:{password}')} => "
        f"['uid' => [{_php_str(user)}], 'groups' => [{', '.join(map(_php_str, groups))}]],"
        for user, (password, groups) in USERS.items()
    )
    return f"""<?php
$config = [
    'admin' => ['core:AdminPassword'],
    'test-userpass' => [
        'exampleauth:UserPass',
{users}
    ],
];
"""


def _idp_hosted_php(entity_id: str) -> str:
    return f"""<?php
$metadata[{_php_str(entity_id)}] = [
    'host' => '__DEFAULT__',
    'privatekey' => 'idp.key',
    'certificate' => 'idp.crt',
    'auth' => 'test-userpass',
    'saml20.sign.assertion' => true,
    'saml20.sign.response' => true,
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
];
"""


def _sp_remote_php(
    sp_entity_id: str, acs_url: str, slo_url: str, sp_cert: str | None, lifetime: int | None
) -> str:
    cert = "" if lifetime is None else f"    'assertion.lifetime' => {lifetime},\n"
    if sp_cert is not None:
        body = "".join(line for line in sp_cert.splitlines() if "-----" not in line)
        cert += f"    'certData' => {_php_str(body)},\n    'validate.authnrequest' => true,\n"
    return f"""<?php
$metadata[{_php_str(sp_entity_id)}] = [
    'AssertionConsumerService' => [
        ['Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
         'Location' => {_php_str(acs_url)}, 'index' => 0],
    ],
    'SingleLogoutService' => [
        ['Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
         'Location' => {_php_str(slo_url)}],
    ],
{cert}];
"""


def _write_config(
    workdir: Path,
    base_url: str,
    entity_id: str,
    sp_entity_id: str,
    acs_url: str,
    slo_url: str,
    sp_cert: str | None,
    lifetime: int | None,
) -> None:
    for name in ("cert", "log", "data", "metadata", "tmp", "sessions", "config"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    config = workdir / "config"
    (config / "config.php").write_text(_config_php(workdir, base_url))
    (config / "authsources.php").write_text(_authsources_php())
    (workdir / "metadata" / "saml20-idp-hosted.php").write_text(_idp_hosted_php(entity_id))
    (workdir / "metadata" / "saml20-sp-remote.php").write_text(
        _sp_remote_php(sp_entity_id, acs_url, slo_url, sp_cert, lifetime)
    )
    make_keypair("simplesamlphp.test").write(workdir / "cert", "idp")


def _fetch_in_ns(ns: str, url: str, timeout: float = 10) -> bytes:
    """GET ``url`` from inside namespace ``ns`` (the IdP listens only there)."""
    script = (
        "import sys, urllib.request; "
        "sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())"
    )
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script, url],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"GET {url} in {ns} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def start_simplesamlphp(
    *,
    ns: str,
    address: str,
    port: int,
    workdir: Path,
    sp_entity_id: str,
    acs_url: str,
    slo_url: str,
    sp_cert: str | None = None,
    assertion_lifetime: int | None = None,
    extra_env: Sequence[tuple[str, str]] = (),
) -> SimpleSamlPhp:
    """Configure and start SimpleSAMLphp on ``address:port`` in namespace ``ns``.

    :param sp_entity_id: the gateway's SAML entity ID (the only SP the IdP knows).
    :param acs_url: the gateway's assertion consumer service URL.
    :param slo_url: the gateway's single logout URL.
    :param sp_cert: the SP's certificate (PEM) when it signs its AuthnRequests.
    :param assertion_lifetime: seconds the assertions are valid (SimpleSAMLphp's default 300;
        negative: already expired when issued).
    """
    require_simplesamlphp()
    base_url = f"http://{address}:{port}/"
    entity_id = base_url + "saml2/idp/metadata.php"
    _write_config(
        workdir, base_url, entity_id, sp_entity_id, acs_url, slo_url, sp_cert, assertion_lifetime
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SIMPLESAMLPHP_CONFIG_DIR": str(workdir / "config"),
        **dict(extra_env),
    }
    log = (workdir / "php.log").open("wb")
    process = subprocess.Popen(
        ["ip", "netns", "exec", ns, "php", "-S", f"{address}:{port}", "-t", str(_WWW)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
    )
    log.close()
    idp = SimpleSamlPhp(base_url, entity_id, workdir / "idp-metadata.xml", workdir, process)
    try:
        deadline = time.monotonic() + 20
        while not tcp_port_open(ns, address, port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SimpleSAMLphp did not start:\n{idp.log()}")
            time.sleep(0.1)
        metadata = _fetch_in_ns(ns, entity_id)
        if b"IDPSSODescriptor" not in metadata:
            raise RuntimeError(f"SimpleSAMLphp served no IdP metadata:\n{metadata[:2000]!r}")
        idp.metadata_file.write_bytes(metadata)
    except BaseException:
        idp.stop()
        raise
    return idp
