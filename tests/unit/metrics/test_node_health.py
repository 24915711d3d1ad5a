"""Several gateways behind one balancer: the ``node`` label on every merged sample, and the
``GET /health`` answers a worker gives on ``metrics-listen`` / ``health-listen``."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ocgate.ipc import messages as m
from ocgate.metrics import GatewayMetrics, LiveState, TunnelCounters, render_merged, samples_of
from ocgate.metrics._http import answer_http
from ocgate.nvm._collector import CollectorStats
from ocgate.nvm._metrics import CollectorMetrics


def _parts() -> list[m.Metrics]:
    worker = GatewayMetrics(
        lambda: LiveState(tunnels=[TunnelCounters("cstp", 7, 9, 1, 1)], sessions_disconnected=0)
    )
    worker.dtls_handshakes.labels(mode="psk").inc(2)
    auth = GatewayMetrics(lambda: LiveState(tunnels=[], sessions_disconnected=1))
    auth.logins.labels(result="success", reason="password").inc(3)
    collector = CollectorMetrics(lambda: CollectorStats(messages=4))
    return [samples_of(worker.registry), samples_of(auth.registry), samples_of(collector.registry)]


def test_every_sample_carries_the_node_label() -> None:
    parts = _parts()
    text = render_merged(parts, {"node": "gw-a"}).decode()
    families = list(text_string_to_metric_families(text))  # Valid exposition, or it raises.
    samples = [s for family in families for s in family.samples]
    assert all(s.labels.get("node") == "gw-a" for s in samples), [
        s for s in samples if s.labels.get("node") != "gw-a"
    ][:3]
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    assert values[("ocgate_dtls_handshakes_total", (("mode", "psk"), ("node", "gw-a")))] == 2
    assert values[("ocgate_tunnel_bytes_total", (("direction", "rx"), ("node", "gw-a")))] == 7
    key = ("ocgate_logins_total", (("node", "gw-a"), ("reason", "password"), ("result", "success")))
    assert values[key] == 3
    # The NVM collector's counters (merged in by the supervisor) are labelled too.
    assert values[("ocgate_nvm_messages_total", (("node", "gw-a"),))] == 4


def test_without_a_node_label_the_exposition_is_unchanged() -> None:
    parts = _parts()
    assert b'node="' not in render_merged(parts)
    assert render_merged(parts, {}) == render_merged(parts)


def test_the_node_label_is_escaped_and_replaces_a_sample_s_own() -> None:
    part = m.Metrics(
        samples=[m.Sample("x_total", {"node": "inner", "k": "v"}, 1.0, "counter")],
        help={"x": "an x"},
    )
    text = render_merged([part, part], {"node": 'a"b\\c'}).decode()
    [sample] = [s for family in text_string_to_metric_families(text) for s in family.samples]
    assert sample.labels == {"k": "v", "node": 'a"b\\c'}
    assert sample.value == 2


async def _ask(request: bytes, *, metrics: bool, health: str) -> bytes:
    ours, theirs = socket.socketpair()
    scraped: list[bool] = []

    async def scrape() -> bytes:
        scraped.append(True)
        return b"ocgate_sessions 1.0\n"

    served = asyncio.get_running_loop().create_task(
        answer_http(theirs, scrape=scrape if metrics else None, health=health)
    )
    reader, writer = await asyncio.open_connection(sock=ours)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await served
    if b"/metrics" not in request or not metrics:
        assert not scraped, "the scrape is asked for only when the request names it"
    return answer


@pytest.mark.parametrize(
    ("health", "status", "body"),
    [("ready", b"200", b"ready\n"), ("draining", b"503", b"draining\n")],
)
@pytest.mark.parametrize("metrics", [True, False])
def test_health(health: str, status: bytes, body: bytes, metrics: bool) -> None:
    answer = asyncio.run(
        _ask(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n", metrics=metrics, health=health)
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status + b" "), head
    assert payload == body
    assert b"content-type: text/plain" in head.lower()


def test_health_listen_serves_no_metrics() -> None:
    answer = asyncio.run(
        _ask(b"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n", metrics=False, health="ready")
    )
    assert answer.startswith(b"HTTP/1.1 404 ")


def test_metrics_listen_still_scrapes() -> None:
    answer = asyncio.run(
        _ask(b"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n", metrics=True, health="draining")
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"ocgate_sessions 1.0\n")


def test_head_health_has_no_body() -> None:
    answer = asyncio.run(
        _ask(b"HEAD /health HTTP/1.1\r\nHost: gw\r\n\r\n", metrics=False, health="draining")
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert payload == b""
