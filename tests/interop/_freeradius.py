"""A real FreeRADIUS 3 server for the RADIUS interop tests, with a throw-away config.

The config is built from scratch in a temporary directory (nothing under /etc is read or
changed): one virtual server with an auth and an acct listener on free ports of 127.0.0.1, the
``pap``, ``files`` and ``detail`` modules, and a little unlang for ``bob``, whose login is a
password followed by an Access-Challenge ("Enter the code", answer ``123456``). The detail file
(accounting records) is ``<detail_dir>/detail``. ``freeradius -X`` runs in the foreground with
its log in ``<dir>/radiusd.log``; the fixture waits for "Ready to process requests" and kills it
at teardown. Without the ``freeradius`` binary the tests are skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "SECRET",
    "USERS",
    "FreeRadius",
    "free_udp_port",
    "freeradius_server",
    "start_freeradius",
]

SECRET = "testing123-ocgate"
_DICTDIR = "/usr/share/freeradius"
_LIBDIR = "/usr/lib/freeradius"

USERS = """\
alice	Cleartext-Password := "alicepass"
	Class := "OU=eng"

carol	Cleartext-Password := "carolpass"
	Framed-IP-Address = 10.9.0.5,
	Framed-IP-Netmask = 255.255.255.0,
	Framed-Route = "192.168.50.0/24 0.0.0.0 1",
	Framed-Route += "10.20.0.0/16",
	Framed-IPv6-Route = "2001:db8:1::/48 :: 1",
	Session-Timeout = 3600,
	Idle-Timeout = 600,
	Acct-Interim-Interval = 60,
	MS-Primary-DNS-Server = 10.9.0.1,
	MS-Secondary-DNS-Server = 10.9.0.2,
	RP-Upstream-Speed-Limit = 1000,
	RP-Downstream-Speed-Limit = 2000,
	Class := "OU=ops;admins"

dave	Cleartext-Password := "davepass"
	Class := "OU=red",
	Class += "OU=blue"
"""

_UNLANG_BOB = """\
        if (&User-Name == "bob") {
            if (&State) {
                if ((&session-state:Tmp-String-0 == "need-code") && \\
                    (&User-Password == "123456")) {
                    update control {
                        &Auth-Type := Accept
                    }
                    update reply {
                        &Class := "OU=twofactor"
                    }
                    ok
                }
                else {
                    reject
                }
            }
            elsif (&User-Password == "bobpass") {
                update session-state {
                    &Tmp-String-0 := "need-code"
                }
                update reply {
                    &Reply-Message := "Enter the code"
                }
                update control {
                    &Response-Packet-Type := Access-Challenge
                }
                handled
            }
            else {
                reject
            }
        }
"""

_RADIUSD_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {dir}
sbindir = /usr/sbin
logdir = {dir}/log
raddbdir = {dir}
radacctdir = {dir}/radacct
name = freeradius
confdir = {dir}
modconfdir = {dir}/mods-config
certdir = {dir}/certs
cadir = {dir}/certs
run_dir = {dir}/run
db_dir = {dir}
libdir = {libdir}
dictdir = {dictdir}
pidfile = {dir}/run/radiusd.pid
max_request_time = 30
cleanup_delay = 1
max_requests = 1024
hostname_lookups = no

log {{
    destination = stdout
    colourise = no
    auth = yes
    auth_badpass = no
    auth_goodpass = no
}}

security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = yes
}}

thread pool {{
    start_servers = 1
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 2
    max_requests_per_server = 0
}}

client localhost {{
    ipaddr = 127.0.0.1
    secret = {secret}
    require_message_authenticator = no
}}

modules {{
    pap {{
        normalise = yes
    }}
    files {{
        filename = {dir}/users
        acctusersfile = {dir}/acct_users
    }}
    always ok {{
        rcode = ok
    }}
    always reject {{
        rcode = reject
    }}
    always handled {{
        rcode = handled
    }}
    detail {{
        filename = {dir}/radacct/detail
        escape_filenames = no
        permissions = 0600
        header = "%t"
    }}
}}

server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {auth_port}
    }}
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {acct_port}
    }}
    authorize {{
{unlang_bob}
        else {{
            files
            pap
        }}
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
    preacct {{
    }}
    accounting {{
        detail
        ok
    }}
    post-auth {{
    }}
}}
"""


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class FreeRadius:
    """A running FreeRADIUS and what a test needs to talk to it."""

    host: str
    auth_port: int
    acct_port: int
    secret: str
    detail_dir: Path
    conf_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def detail_file(self) -> Path:
        return self.detail_dir / "detail"

    def log(self) -> str:
        path = self.conf_dir / "radiusd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def detail_records(self) -> list[dict[str, str]]:
        """The accounting records written so far, as ``{attribute: value}`` (quotes stripped)."""
        if not self.detail_file.exists():
            return []
        records: list[dict[str, str]] = []
        for block in self.detail_file.read_text().split("\n\n"):
            record: dict[str, str] = {}
            for line in block.splitlines():
                key, eq, value = line.strip().partition(" = ")
                if eq:
                    record[key] = value.strip('"')
            if record:
                records.append(record)
        return records

    def write_radcli_config(
        self,
        path: Path,
        *,
        auth_servers: list[str] | None = None,
        acct_servers: list[str] | None = None,
        timeout: int = 2,
        retries: int = 2,
        extra: str = "",
    ) -> Path:
        """Write a radcli ``radiusclient.conf`` (and its ``servers`` file) for this server.

        :param auth_servers: ``authserver`` entries; default this server's auth port.
        :param acct_servers: ``acctserver`` entries; default this server's acct port.
        """
        servers = path.with_name(path.name + ".servers")
        servers.write_text(f"# server secret\n{self.host}\t{self.secret}\n")
        auth = auth_servers or [f"{self.host}:{self.auth_port}"]
        acct = acct_servers or [f"{self.host}:{self.acct_port}"]
        path.write_text(
            "# radcli config written by the ocgate tests\n"
            "nas-identifier ocgate-test\n"
            f"authserver {', '.join(auth)}\n"
            f"acctserver {', '.join(acct)}\n"
            f"servers {servers}\n"
            "dictionary /etc/radcli/dictionary\n"
            f"radius_timeout {timeout}\n"
            f"radius_retries {retries}\n"
            "bindaddr *\n" + extra
        )
        return path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _write_config(conf_dir: Path, auth_port: int, acct_port: int) -> None:
    for sub in ("log", "radacct", "run", "mods-config", "certs"):
        (conf_dir / sub).mkdir(parents=True, exist_ok=True)
    (conf_dir / "users").write_text(USERS)
    (conf_dir / "acct_users").write_text("")
    (conf_dir / "dictionary").write_text("")
    (conf_dir / "radiusd.conf").write_text(
        _RADIUSD_CONF.format(
            dir=conf_dir,
            libdir=_LIBDIR,
            dictdir=_DICTDIR,
            secret=SECRET,
            auth_port=auth_port,
            acct_port=acct_port,
            unlang_bob=_UNLANG_BOB,
        )
    )


def _wait_ready(server: FreeRadius, deadline: float) -> None:
    while time.monotonic() < deadline:
        if "Ready to process requests" in server.log():
            return
        if server.process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"freeradius did not start:\n{server.log()[-4000:]}")


def start_freeradius(conf_dir: Path) -> FreeRadius:
    """Write a config into ``conf_dir`` and start ``freeradius -X`` on free ports."""
    binary = shutil.which("freeradius") or shutil.which("radiusd")
    if binary is None:
        raise FileNotFoundError("freeradius")
    auth_port, acct_port = free_udp_port(), free_udp_port()
    while acct_port == auth_port:
        acct_port = free_udp_port()
    _write_config(conf_dir, auth_port, acct_port)
    with open(conf_dir / "radiusd.log", "wb") as log:
        process = subprocess.Popen(
            [binary, "-X", "-d", str(conf_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = FreeRadius(
        host="127.0.0.1",
        auth_port=auth_port,
        acct_port=acct_port,
        secret=SECRET,
        detail_dir=conf_dir / "radacct",
        conf_dir=conf_dir,
        process=process,
    )
    _wait_ready(server, time.monotonic() + 15)
    return server


@pytest.fixture
def freeradius_server(tmp_path: Path) -> Iterator[FreeRadius]:
    """A FreeRADIUS on 127.0.0.1 for one test (skipped if FreeRADIUS is not installed).

    Provides ``host``, ``auth_port``, ``acct_port``, ``secret``, ``detail_dir`` and
    ``write_radcli_config(path)``.
    """
    if shutil.which("freeradius") is None and shutil.which("radiusd") is None:
        pytest.skip("needs FreeRADIUS (apt-get install freeradius)")
    if os.geteuid() != 0 and not os.access(_LIBDIR, os.R_OK):
        pytest.skip(f"cannot read {_LIBDIR}")
    server = start_freeradius(tmp_path / "raddb")
    try:
        yield server
    finally:
        server.stop()
