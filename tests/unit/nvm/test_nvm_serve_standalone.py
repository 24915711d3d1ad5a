"""Acceptance: ``ocgate nvm serve`` on a collector-only file, as a real process on loopback.

The file holds only collector keys (no ``auth``, no ``server-cert``), or the same keys inside an
ocserv.conf whose VPN keys are skipped unread. nvzFlow records (templates 262/267 of the public ONA
sample, data 267 made with the encoder) go to the UDP listener and come back through the REST API,
page by page with the cursor; ``metrics-listen`` counts them. A bad configuration (a short token, a
missing certificate) gives one ``file:line: key: problem (expected: …)`` line on stderr and exit
status 1, never a traceback.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from nvm_collector_lib import DATA_262, ONA_TEMPLATES, TEMPLATES, UDID, pen9

from ocgate.nvm.ipfix import BasicList, VarLen, encode_data_set, encode_message

pytestmark = pytest.mark.timeout(30)

TOKEN = "standalone-0123456789abcdef"
FLOWS = 5
SRC_PORT = 40000


def ocgate_command() -> list[str]:
    """The ``ocgate`` entry point of this virtualenv (``.venv/bin/ocgate``)."""
    script = shutil.which("ocgate", path=str(Path(sys.executable).parent))
    return [script] if script is not None else [sys.executable, "-m", "ocgate"]


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flow_267(src_port: int, now: int) -> bytes:
    """One IPv4 flow (template 267) from 10.8.0.2:``src_port`` ending at ``now``."""
    row: list[object] = [
        17,
        IPv4Address("10.8.0.2"),
        src_port,
        IPv4Address("192.0.2.53"),
        53,
        now,
        now,
        UDID,
        "CORP\\alice",
        2,
        "NT AUTHORITY\\NETWORK SERVICE",
        1,
        "svchost.exe",
        bytes(32),
        "NT AUTHORITY\\SYSTEM",
        1,
        "services.exe",
        bytes(range(32)),
        100,
        41,
        "corp.test",
        "intranet.corp.test",
        6,
        VarLen(BasicList(pen9(12348, 0xFFFF), ("ntdll.dll",))),
        VarLen(BasicList(pen9(12350, 32), (bytes(range(32)),))),
    ]
    data = encode_data_set(ONA_TEMPLATES[267], [row])
    return encode_message([data], export_time=now, sequence=src_port, observation_domain_id=127)


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def run_serve(config: Path, *, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ocgate_command(), "nvm", "serve", "-c", config.name],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Collector:
    """A running ``ocgate nvm serve`` process and its ports."""

    def __init__(self, tmp_path: Path, vpn_keys: str = "") -> None:
        self.udp, self.api, self.metrics = (
            free_port(socket.SOCK_DGRAM),
            free_port(socket.SOCK_STREAM),
            free_port(socket.SOCK_STREAM),
        )
        tokens = tmp_path / "api.tokens"
        tokens.write_text(f"# API clients\n{TOKEN}\n")
        tokens.chmod(0o600)
        self.config = tmp_path / "nvm.conf"
        self.config.write_text(
            vpn_keys + f"nvm-listen = udp://127.0.0.1:{self.udp}\n"
            "nvm-store = sqlite://nvm.sqlite\n"
            f"nvm-api-listen = 127.0.0.1:{self.api}\n"
            "nvm-api-token-file = api.tokens\n"
            f"metrics-listen = 127.0.0.1:{self.metrics}\n"
            "nvm-allow = 127.0.0.0/8\n"
            "nvm-retention-days = 30\n"
            "nvm-privacy-user = keep\n"
        )
        self.stderr = tmp_path / "stderr.log"
        with self.stderr.open("w") as log:
            self.process = subprocess.Popen(
                [*ocgate_command(), "nvm", "serve", "-c", str(self.config)],
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def output(self) -> str:
        return self.stderr.read_text()

    def wait_ready(self, seconds: float = 15) -> None:
        """Until the API answers (it starts after the collector's listeners)."""
        deadline = time.monotonic() + seconds
        url = f"http://127.0.0.1:{self.api}/api/v1/openapi.json"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"ocgate nvm serve exited:\n{self.output()}"
            try:
                if get(url)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the API did not come up:\n{self.output()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


# An ocserv.conf's VPN keys are skipped unread: these name files that do not exist.
OCSERV_KEYS = (
    "auth = plain[passwd=/nonexistent/ocpasswd]\n"
    "server-cert = /nonexistent/server-cert.pem\n"
    "server-key = /nonexistent/server-key.pem\n"
    "ipv4-network = 192.168.1.0/24\n"
)


@pytest.fixture(params=["collector-only", "ocserv.conf"])
def collector(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Collector]:
    running = Collector(tmp_path, OCSERV_KEYS if request.param == "ocserv.conf" else "")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def read_all_flows(collector: Collector, *, limit: int) -> list[list[dict[str, object]]]:
    """Every stored flow, as the pages of ``limit`` flows the cursor walks through."""
    pages: list[list[dict[str, object]]] = []
    cursor: str | None = None
    while True:
        url = f"http://127.0.0.1:{collector.api}/api/v1/flows?limit={limit}"
        if cursor is not None:
            url += f"&cursor={cursor}"
        status, body = get(url, TOKEN)
        assert status == 200, body
        page = json.loads(body)
        pages.append(page["flows"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "the cursor does not end"


def test_collector_only_file_receives_udp_and_serves_flows_with_cursor_paging(
    collector: Collector,
) -> None:
    collector.wait_ready()
    api = f"http://127.0.0.1:{collector.api}/api/v1/flows"
    assert get(api)[0] == 401  # The token file is in force.
    now = int(time.time())
    messages = [TEMPLATES, DATA_262] + [flow_267(SRC_PORT + i, now - i) for i in range(FLOWS)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        for message in messages:
            sender.sendto(message, ("127.0.0.1", collector.udp))
            time.sleep(0.005)  # Templates first; loopback keeps the order.
    deadline = time.monotonic() + 10
    pages = read_all_flows(collector, limit=2)
    while sum(map(len, pages)) < FLOWS and time.monotonic() < deadline:
        time.sleep(0.1)
        pages = read_all_flows(collector, limit=2)

    flows = [flow for page in pages for flow in page]
    assert [len(page) for page in pages] == [2, 2, 1], collector.output()
    assert [flow["src_port"] for flow in flows] == [SRC_PORT + i for i in range(FLOWS)]
    assert [flow["time_end"] for flow in flows] == [float(now - i) for i in range(FLOWS)]
    assert {flow["user"] for flow in flows} == {"CORP\\alice"}
    assert {flow["process_name"] for flow in flows} == {"svchost.exe"}
    assert len({flow["id"] for flow in flows}) == FLOWS  # Each flow on exactly one page.

    written = f"ocgate_nvm_records_written_total {float(FLOWS + 1)}"  # The flows and the 262.
    for _ in range(50):
        status, metrics = get(f"http://127.0.0.1:{collector.metrics}/metrics")
        assert status == 200
        if written in metrics.decode():
            break
        time.sleep(0.05)
    assert written in metrics.decode()

    assert collector.stop() == 0
    output = collector.output()
    assert "Traceback" not in output
    assert "collector running (udp://127.0.0.1:" in output


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = tmp_path / "nvm.conf"
        config.write_text(f"nvm-listen = udp://127.0.0.1:{port}\nnvm-store = nvm.sqlite\n")
        result = run_serve(config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "ocgate nvm: error: cannot start the collector: [Errno 98]"
    )


@pytest.mark.parametrize(
    ("lines", "files", "expected"),
    [
        pytest.param(
            "nvm-listen = udp://127.0.0.1:{udp}\n"
            "nvm-api-listen = 127.0.0.1:{api}\n"
            "nvm-api-token-file = api.tokens\n",
            {"api.tokens": "# clients\nshort-token\n"},
            "{dir}/api.tokens:2: nvm-api-token-file: API token is too short (expected: at least"
            " 16 characters",
            id="short-token",
        ),
        pytest.param(
            "nvm-listen = udp://127.0.0.1:{udp}\nnvm-dtls-listen = dtls://127.0.0.1:{udp}\n",
            {},
            "nvm.conf:2: nvm-dtls-listen: a DTLS listener needs a certificate and a key"
            " (expected: nvm-dtls-cert and nvm-dtls-key lines)",
            id="no-certificate",
        ),
        pytest.param(
            "nvm-dtls-listen = dtls://127.0.0.1:{udp}\n"
            "nvm-dtls-cert = collector.pem\n"
            "nvm-dtls-key = collector.key\n",
            {"collector.key": "not a key"},
            "nvm.conf:2: nvm-dtls-cert: file not found: '{dir}/collector.pem' (expected: an"
            " existing file",
            id="missing-certificate-file",
        ),
    ],
)
def test_configuration_errors_are_one_line_and_exit_1(
    tmp_path: Path, lines: str, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    config = tmp_path / "nvm.conf"
    udp, api = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    config.write_text(lines.format(udp=udp, api=api))
    result = run_serve(config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("ocgate nvm: error: " + expected.format(dir=tmp_path))


@pytest.mark.parametrize(
    ("lines", "files", "expected"),
    [
        pytest.param(
            "nvm-listen = udp://127.0.0.1:{udp}\n"
            "nvm-api-listen = 127.0.0.1:{api}\n"
            "nvm-api-token-file = api.tokens\n",
            {"api.tokens": "# clients\nshort-token\n"},
            "{dir}/api.tokens:2: nvm-api-token-file: API token is too short",
            id="short-token",
        ),
        pytest.param(
            "nvm-listen = udp://127.0.0.1:{udp}\nnvm-dtls-listen = dtls://127.0.0.1:{udp}\n",
            {},
            "ocserv.conf:7: nvm-dtls-listen: a DTLS listener needs a certificate and a key",
            id="no-certificate",
        ),
    ],
)
def test_the_gateway_reports_collector_errors_in_one_line_too(
    tmp_path: Path, lines: str, files: dict[str, str], expected: str
) -> None:
    # Issue "collector alone", scope 2: the same holds for `ocgate serve` on an ocserv.conf.
    from tests.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    (tmp_path / "ocpasswd").write_text("alice:*:$5$salt$x\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    udp, api = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    config = tmp_path / "ocserv.conf"
    config.write_text(
        f'auth = "plain[passwd={tmp_path}/ocpasswd]"\n'
        f"server-cert = {pki.server.cert_path}\n"
        f"server-key = {pki.server.key_path}\n"
        f"socket-file = {tmp_path}/ocserv.sock\n"
        f"nvm-store = sqlite:///{tmp_path}/nvm.sqlite\n" + lines.format(udp=udp, api=api)
    )
    result = subprocess.run(
        [*ocgate_command(), "serve", "-t", "-c", config.name],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    error = [line for line in result.stderr.splitlines() if line.startswith("ocgate: error:")]
    assert len(error) == 1, result.stderr
    assert expected.format(dir=tmp_path) in error[0]
