"""Acceptance: the collector inside ``ocgate serve`` ties an NVM flow to the VPN user.

A real openconnect client connects; an nvzFlow (template 267) record whose source address is the
client's VPN address is sent through the tunnel to the embedded collector; the REST API returns it
with that user's name and session. The same record sent from outside the tunnel (the client
namespace's own address, allowed to export but holding no lease) claims alice's address too, and
is stored without a VPN user: the exporter's address decides, not the record's claim.
"""

from __future__ import annotations

import json
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ocgate.nvm.ipfix import BasicList, VarLen, encode_data_set, encode_message
from tests.unit.nvm.nvm_collector_lib import ONA_TEMPLATES, TEMPLATES, UDID, pen9

from ._netns import NetnsPair
from ._openconnect import OpenConnectRunner
from ._server import SERVER_TUN4, ServerKind, StartServer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

TOKEN = "test-token-0123456789abcdef"

SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
for message in sys.argv[3:]:
    s.sendto(bytes.fromhex(message), (sys.argv[2], 2055))
"""

QUERY = r"""
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
print(urllib.request.urlopen(request, timeout=10).read().decode())
"""


def _flow_267(src: str, now: int, process: str = "svchost.exe") -> bytes:
    row: list[object] = [
        17,
        IPv4Address(src),
        43879,
        IPv4Address(SERVER_TUN4),
        53,
        now,
        now,
        UDID,
        "MYNVM\\alice",
        2,
        "NT AUTHORITY\\NETWORK SERVICE",
        1,
        process,
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
    return encode_message([data], export_time=now, sequence=0, observation_domain_id=127)


def test_flow_from_a_vpn_address_is_attributed_to_its_user(
    netns_pair: NetnsPair,
    start_gateway: StartServer,
    openconnect: OpenConnectRunner,
    tmp_path: Path,
    kind: ServerKind,
) -> None:
    if kind is not ServerKind.OCGATE:
        pytest.skip("the NVM collector is ocgate's")
    tokens = tmp_path / "api-tokens"
    tokens.write_text(TOKEN + "\n")
    server = start_gateway(
        {
            "nvm-listen": "udp://0.0.0.0:2055",
            "nvm-store": f"sqlite:///{tmp_path}/nvm.sqlite",
            "nvm-api-listen": "127.0.0.1:8099",
            "nvm-api-token-file": str(tokens),
            "nvm-allow": f"{netns_pair.client_addr}/32",  # Besides the VPN pool (the default).
        }
    )
    client = openconnect.connect(server, user="alice", password="alicepass")
    vpn_ip = client.wait_env()["INTERNAL_IP4_ADDRESS"]
    now = int(time.time())
    messages = [TEMPLATES.hex(), _flow_267(vpn_ip, now).hex()]
    netns_pair.run_in(
        netns_pair.client, [sys.executable, "-c", SEND, vpn_ip, SERVER_TUN4, *messages]
    )
    forged = [TEMPLATES.hex(), _flow_267(vpn_ip, now, "forged.exe").hex()]
    netns_pair.run_in(
        netns_pair.client,
        [sys.executable, "-c", SEND, netns_pair.client_addr, netns_pair.server_addr, *forged],
    )
    url = f"http://127.0.0.1:8099/api/v1/flows?address={vpn_ip}"
    deadline = time.monotonic() + 15
    flows: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(flows) < 2:
        time.sleep(0.5)
        out = netns_pair.run_in(netns_pair.server, [sys.executable, "-c", QUERY, url, TOKEN])
        flows = json.loads(out.stdout)["flows"]
    assert len(flows) == 2, f"flows stored: {flows}\n{server.describe()}"
    by_process = {f["process_name"]: f for f in flows}
    flow = by_process["svchost.exe"]
    assert flow["src_addr"] == vpn_ip
    assert flow["exporter"] == f"udp://{vpn_ip}"
    assert flow["vpn_user"] == "alice"
    assert flow["vpn_session"]
    assert flow["dst_hostname"] == "intranet.corp.test"
    fake = by_process["forged.exe"]
    assert fake["src_addr"] == vpn_ip  # It claims alice's address ...
    assert fake["exporter"] == f"udp://{netns_pair.client_addr}"
    assert (fake["vpn_user"], fake["vpn_session"]) == (None, None)  # ... and is not hers.
    server.assert_alive()
