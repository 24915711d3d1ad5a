"""Acceptance of issue 12 §7 (virtual hosts), against both servers (``OCG_TEST_SERVER=ocserv``
runs Debian's ocserv 1.1.6, which has ``[vhost:NAME]`` sections too).

One gateway, three hosts on one address and port, told apart by the TLS server name openconnect
9.01 sends (it connects by host name; ``--resolve`` maps the names to the server's address):

* the default host (top level): the test's usual users, pool 10.77.0.0/24 and routes;
* ``a.vpn.test``: its own certificate, password file (user ``anna``), pool 10.81.0.0/24, DNS and
  route 10.91.0.0/16;
* ``b.vpn.test``: another certificate, password file (user ``ben``), pool 10.82.0.0/24, DNS,
  route 10.92.0.0/16 and ``no-udp``.

The client pins each vhost's certificate with ``--servercert``, so a wrong certificate fails the
connection; what openconnect receives is read from the vpnc-script environment and its verbose
log, and occtl's ``show users`` names each session's vhost. Each vhost section spells out every
key it needs: ocserv 1.1.6 does not inherit from the top level (1.5 and ocgate do).
"""

from __future__ import annotations

import ipaddress
import re
import signal
import time
from pathlib import Path

import pytest

from ._certs import ServerCert, make_server_cert
from ._netns import SERVER_ADDR, NetnsPair
from ._openconnect import OpenConnect, OpenConnectRunner, StaticEndpoint
from ._server import POOL4, ServerKind, StartServer, User, recording_script, write_passwd
from ._traffic import ping
from .test_occtl_compat import Ctl, _occtl_json, _read_env, _wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

ESTABLISHED = re.compile(r"Established DTLS connection")
_HEADER = re.compile(r"^(?:\[[^\]]*\] )?(X-(?:CSTP|DTLS)-[A-Za-z0-9-]+):", re.M)
VHOSTS = {
    "a.vpn.test": {"user": User("anna", "annapass"), "pool": "10.81.0.0/24",
                   "dns": "10.81.0.53", "route": "10.91.0.0/16", "v6": "fd81::/64"},
    "b.vpn.test": {"user": User("ben", "benpass"), "pool": "10.82.0.0/24",
                   "dns": "10.82.0.53", "route": "10.92.0.0/16", "v6": "fd82::/64"},
}  # fmt: skip


def _section(name: str, cert: ServerCert, passwd: Path, kind: ServerKind, extra: str = "") -> str:
    v = VHOSTS[name]
    if kind is ServerKind.OCSERV:
        # ocserv 1.1.6 gives a vhost no TUN device name of its own (a CONNECT fails with "no
        # networks are configured") unless the section names one; 1.4.2+ and ocgate refuse
        # ``device`` there as a global key.
        extra += "device = vpns\n"
    return (
        f"\n[vhost:{name}]\n"
        f'auth = "plain[passwd={passwd}]"\n'
        f"server-cert = {cert.cert_path}\n"
        f"server-key = {cert.key_path}\n"
        f"ipv4-network = {str(v['pool']).split('/')[0]}\n"
        "ipv4-netmask = 255.255.255.0\n"
        f"ipv6-network = {v['v6']}\n"
        f"dns = {v['dns']}\n"
        f"route = {v['route']}\n"
        f"{extra}"
    )


def _endpoint(name: str, pin: str) -> StaticEndpoint:
    return StaticEndpoint(url=f"https://{name}/", pin=pin)


def _resolve(name: str) -> list[str]:
    return ["--resolve", f"{name}:{SERVER_ADDR}"]


def _split_includes(env: dict[str, str]) -> set[str]:
    count = int(env.get("CISCO_SPLIT_INC", "0"))
    return {
        f"{env[f'CISCO_SPLIT_INC_{i}_ADDR']}/{env[f'CISCO_SPLIT_INC_{i}_MASKLEN']}"
        for i in range(count)
    }


def _wait_dtls(client: OpenConnect, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ESTABLISHED.search(client.output()):
        assert time.monotonic() < deadline, f"no DTLS connection\n{client.describe()}"
        time.sleep(0.2)


def test_vhosts_by_sni_have_their_own_certificate_users_pool_routes_and_udp(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    server_cert: ServerCert,
    tmp_path: Path,
    kind: ServerKind,
) -> None:
    certs = {name: make_server_cert(tmp_path / name, SERVER_ADDR) for name in VHOSTS}
    assert len({c.pin for c in certs.values()} | {server_cert.pin}) == 3
    files = {}
    for name, v in VHOSTS.items():
        files[name] = tmp_path / f"passwd-{name}"
        user = v["user"]
        assert isinstance(user, User)
        write_passwd(files[name], [user], kind)
    sock = tmp_path / "occtl.sock"
    script, script_out = recording_script(tmp_path)
    tail = _section("a.vpn.test", certs["a.vpn.test"], files["a.vpn.test"], kind)
    tail += _section(
        "b.vpn.test", certs["b.vpn.test"], files["b.vpn.test"], kind, "no-udp = true\n"
    )
    server = start_gateway(
        {
            "use-occtl": "true",
            "occtl-socket-file": str(sock),
            "udp-port": "443",
            "no-route": None,
            "connect-script": str(script),
        },
        tail=tail,
    )
    ctl = Ctl(kind, sock)
    _wait_for(sock.exists, 10, "the occtl socket")
    a = _endpoint("a.vpn.test", certs["a.vpn.test"].pin)
    b = _endpoint("b.vpn.test", certs["b.vpn.test"].pin)

    # Each name is served its own certificate: B's pin does not match what a.vpn.test presents,
    # and the default certificate is not served to either name.
    for name, pin in (("a.vpn.test", certs["b.vpn.test"].pin), ("b.vpn.test", server_cert.pin)):
        wrong = openconnect.authenticate(
            _endpoint(name, pin), user="anna", stdin="annapass\n", extra=_resolve(name)
        )
        assert wrong.returncode != 0, wrong.describe()
        assert "COOKIE=" not in wrong.stdout, wrong.describe()

    # Each vhost's users are its own: anna only on A, ben only on B, alice only on the default.
    for endpoint, name, user, password in (
        (b, "b.vpn.test", "anna", "annapass"),
        (a, "a.vpn.test", "ben", "benpass"),
        (a, "a.vpn.test", "alice", "alicepass"),
    ):
        refused = openconnect.authenticate(
            endpoint, user=user, stdin=f"{password}\n", extra=_resolve(name)
        )
        assert refused.returncode != 0, refused.describe()
        assert "COOKIE=" not in refused.stdout, refused.describe()

    # Tunnels: each gets its vhost's pool, DNS and routes (and A its DTLS, B none: no-udp).
    clients = {}
    envs = {}
    for endpoint, name in ((a, "a.vpn.test"), (b, "b.vpn.test")):
        user = VHOSTS[name]["user"]
        assert isinstance(user, User)
        clients[name] = openconnect.connect(
            endpoint,
            user=user.name,
            password=user.password,
            dtls=True,
            routes=(),
            extra=[*_resolve(name), "-v"],
        )
        envs[name] = clients[name].wait_env(timeout=40)
    default = openconnect.connect(server, user="alice", password="alicepass", routes=())
    default_env = default.wait_env(timeout=40)

    for name, env in envs.items():
        v = VHOSTS[name]
        pool = ipaddress.ip_network(str(v["pool"]))
        assert ipaddress.ip_address(env["INTERNAL_IP4_ADDRESS"]) in pool, env
        assert env["INTERNAL_IP4_DNS"].split() == [v["dns"]], env
        assert _split_includes(env) == {v["route"]}, env
    assert ipaddress.ip_address(default_env["INTERNAL_IP4_ADDRESS"]) in ipaddress.ip_network(POOL4)
    assert _split_includes(default_env) == {"10.20.0.0/16", "10.30.0.0/16"}, default_env

    # Traffic flows in every tunnel, to the server's end of each vhost's pool.
    for name in VHOSTS:
        server_end = str(next(ipaddress.ip_network(str(VHOSTS[name]["pool"])).hosts()))
        result = ping(netns_pair, netns_pair.client, server_end, count=3)
        assert result.received == 3, f"{name}: {result.output}\n{clients[name].describe()}"

    b_headers = _HEADER.findall(clients["b.vpn.test"].output())
    assert "X-CSTP-Address" in b_headers, clients["b.vpn.test"].describe()
    # ocserv 1.1.6 gives a vhost no UDP port (its vhosts do not inherit udp-port, ocserv #612)
    # and reads no-udp only in per-user files: the DTLS half is checked against ocgate only.
    if kind is ServerKind.OCGATE:
        _wait_dtls(clients["a.vpn.test"])  # The control: the same server gives A its DTLS.
        assert "X-DTLS-Port" in _HEADER.findall(clients["a.vpn.test"].output())
        assert not [h for h in b_headers if h.startswith("X-DTLS-")], b_headers
        assert not ESTABLISHED.search(clients["b.vpn.test"].output())

    # occtl names each session's vhost.
    users = _occtl_json(ctl("show", "users", json_output=True))
    assert isinstance(users, list)
    by_user = {row["Username"]: row for row in users if isinstance(row, dict)}
    assert by_user["anna"]["vhost"] == "a.vpn.test", by_user
    assert by_user["ben"]["vhost"] == "b.vpn.test", by_user
    assert by_user["alice"]["vhost"] == "default", by_user
    text = ctl("show", "users")
    assert re.search(r"\banna\s+a\.vpn\.test\b", text), text
    assert re.search(r"\bben\s+b\.vpn\.test\b", text), text
    # So does the connect-script's VHOST.
    _wait_for(lambda: len(list(script_out.glob("connect-*"))) == 3, 20, "three connect scripts")
    time.sleep(0.5)
    seen = {env["USERNAME"]: env["VHOST"] for env in map(_read_env, script_out.glob("connect-*"))}
    assert seen == {"anna": "a.vpn.test", "ben": "b.vpn.test", "alice": "default"}, seen
    server.assert_alive()


def test_unknown_server_name_gets_the_default_host(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    server_cert: ServerCert,
    tmp_path: Path,
    kind: ServerKind,
) -> None:
    cert = make_server_cert(tmp_path / "a", SERVER_ADDR)
    passwd = tmp_path / "passwd-a"
    write_passwd(passwd, [User("anna", "annapass")], kind)
    start_gateway({"no-route": None}, tail=_section("a.vpn.test", cert, passwd, kind))
    other = _endpoint("other.vpn.test", server_cert.pin)  # The default host's certificate.
    ok = openconnect.authenticate(
        other, user="alice", stdin="alicepass\n", extra=_resolve("other.vpn.test")
    )
    assert ok.returncode == 0, ok.describe()
    assert ok.cookie, ok.describe()
    refused = openconnect.authenticate(
        other, user="anna", stdin="annapass\n", extra=_resolve("other.vpn.test")
    )
    assert refused.returncode != 0, refused.describe()


def test_a_cookie_is_good_only_on_its_own_vhost(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    server_cert: ServerCert,
    tmp_path: Path,
    kind: ServerKind,
) -> None:
    if kind is ServerKind.OCSERV:
        # Checked: 1.1.6 connects a.vpn.test's cookie through the default host (with A's lease).
        pytest.skip("an ocgate rule: ocserv 1.1.6 accepts a cookie through any vhost")
    cert = make_server_cert(tmp_path / "a", SERVER_ADDR)
    passwd = tmp_path / "passwd-a"
    write_passwd(passwd, [User("anna", "annapass")], kind)
    server = start_gateway({"no-route": None}, tail=_section("a.vpn.test", cert, passwd, kind))
    a = _endpoint("a.vpn.test", cert.pin)
    auth = openconnect.authenticate(
        a, user="anna", stdin="annapass\n", extra=_resolve("a.vpn.test")
    )
    assert auth.returncode == 0, auth.describe()
    assert auth.cookie, auth.describe()
    # Presented to the default host (no SNI: connected by address), the cookie is refused.
    elsewhere = openconnect.connect(server, cookie=auth.cookie, routes=())
    assert elsewhere.wait(30) == 2, elsewhere.describe()  # 401 Cookie is not acceptable.
    assert not elsewhere.env_file.exists()
    assert "event=vhost-refused user='anna'" in server.log_text()
    # On its own vhost it still works.
    home = openconnect.connect(a, cookie=auth.cookie, routes=(), extra=_resolve("a.vpn.test"))
    env = home.wait_env(timeout=40)
    assert ipaddress.ip_address(env["INTERNAL_IP4_ADDRESS"]) in ipaddress.ip_network("10.81.0.0/24")


def test_camouflage_is_per_vhost(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    server_cert: ServerCert,
    tmp_path: Path,
    kind: ServerKind,
) -> None:
    if kind is ServerKind.OCSERV:
        pytest.skip("ocserv 1.1.6 has no camouflage (added in ocserv 1.2.0)")
    cert = make_server_cert(tmp_path / "a", SERVER_ADDR)
    passwd = tmp_path / "passwd-a"
    write_passwd(passwd, [User("anna", "annapass")], kind)
    extra = 'camouflage = true\ncamouflage_secret = "s3cret"\ncamouflage_realm = "Intranet"\n'
    server = start_gateway(
        {"no-route": None}, tail=_section("a.vpn.test", cert, passwd, kind, extra)
    )
    # The hidden vhost answers like a web server without the secret ...
    hidden = openconnect.authenticate(
        _endpoint("a.vpn.test", cert.pin), user="anna", stdin="annapass\n",
        extra=[*_resolve("a.vpn.test"), "-v"],
    )  # fmt: skip
    assert hidden.returncode != 0, hidden.describe()
    assert "401 Unauthorized" in hidden.stderr, hidden.describe()
    assert "COOKIE=" not in hidden.stdout, hidden.describe()
    # ... and logs in with it.
    secret = StaticEndpoint(url="https://a.vpn.test/?s3cret", pin=cert.pin)
    ok = openconnect.authenticate(secret, user="anna", stdin="annapass\n",
                                  extra=_resolve("a.vpn.test"))  # fmt: skip
    assert ok.returncode == 0, ok.describe()
    assert ok.cookie, ok.describe()
    # The default host on the same port is not camouflaged.
    plain = openconnect.authenticate(server, user="alice", stdin="alicepass\n")
    assert plain.returncode == 0, plain.describe()
    assert plain.cookie, plain.describe()


def test_vhosts_survive_a_reload(
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    kind: ServerKind,
) -> None:
    if kind is ServerKind.OCSERV:
        pytest.skip("ocgate's reload path: every vhost's TLS files go to the workers again")
    cert = make_server_cert(tmp_path / "a", SERVER_ADDR)
    passwd = tmp_path / "passwd-a"
    write_passwd(passwd, [User("anna", "annapass")], kind)
    server = start_gateway({"no-route": None}, tail=_section("a.vpn.test", cert, passwd, kind))
    offset = server.log_size()
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("event=reloaded", since=offset, timeout=15)
    a = _endpoint("a.vpn.test", cert.pin)
    client = openconnect.connect(
        a, user="anna", password="annapass", routes=(), extra=_resolve("a.vpn.test")
    )
    env = client.wait_env(timeout=40)
    assert ipaddress.ip_address(env["INTERNAL_IP4_ADDRESS"]) in ipaddress.ip_network("10.81.0.0/24")
    server.assert_alive()
