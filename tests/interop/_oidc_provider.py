"""node-oidc-provider in the server namespace, for the single sign-on tests.

The provider (``tests/interop/oidc_provider/provider.mjs``, version pinned by the committed
``package.json`` and ``package-lock.json``) is installed with ``npm ci`` from the npm registry into
the git-ignored ``.cache/oidc-provider/`` on first use (again when the lock file changes), then
started with node on ``198.18.0.1:8080`` inside the test's server namespace. It is the real
provider: discovery, JWKS, authorization code + PKCE, token endpoint, RP-initiated logout; only
the login form (two test users) and the automatic consent are the test's.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ._netns import NetnsPair

__all__ = ["ISSUER_PORT", "OidcProvider", "install_oidc_provider", "start_oidc_provider"]

ISSUER_PORT = 8080
_SOURCE = Path(__file__).with_name("oidc_provider")
_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "oidc-provider"


def install_oidc_provider() -> Path | str:
    """The install directory, or why the provider cannot be installed (for a skip)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "the OIDC tests need node and npm"
    lock = (_SOURCE / "package-lock.json").read_bytes()
    stamp = _CACHE / ".lock-sha256"
    digest = hashlib.sha256(lock).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest and (_CACHE / "node_modules").is_dir()):
        _CACHE.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(_SOURCE / name, _CACHE / name)
        proc = subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=_CACHE,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            return f"npm ci of node-oidc-provider failed: {proc.stderr[-2000:]}"
        stamp.write_text(digest)
    # ESM resolves packages next to the script: run it from the install directory.
    shutil.copyfile(_SOURCE / "provider.mjs", _CACHE / "provider.mjs")
    return _CACHE


@dataclass
class OidcProvider:
    proc: subprocess.Popen[bytes]
    issuer: str
    log_path: Path
    pair: NetnsPair

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def set_id_token_ttl(self, seconds: int) -> None:
        """The test-only knob of provider.mjs: the lifetime of the ID tokens it mints next."""
        code = "import httpx, sys; httpx.post(sys.argv[1], content=sys.argv[2]).raise_for_status()"
        url = f"{self.issuer}/test/id-token-ttl"
        self.pair.run_in(self.pair.server, [sys.executable, "-c", code, url, str(seconds)])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_oidc_provider(
    pair: NetnsPair, directory: Path, workdir: Path, *, gateway: str
) -> OidcProvider:
    """Start the provider in the server namespace; returns once its discovery document answers."""
    issuer = f"http://{pair.server_addr}:{ISSUER_PORT}"
    log_path = workdir / "oidc-provider.log"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["node", str(directory / "provider.mjs"), pair.server_addr, str(ISSUER_PORT), gateway]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            pair.exec_argv(pair.server, argv), stdout=log, stderr=subprocess.STDOUT
        )
    provider = OidcProvider(proc=proc, issuer=issuer, log_path=log_path, pair=pair)
    deadline = time.monotonic() + 30
    while "ready " not in provider.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            provider.stop()
            raise AssertionError(f"the OIDC provider did not start:\n{provider.log()}")
        time.sleep(0.1)
    return provider
