"""One scrape for many processes: samples of several registries are added up."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ocgate.metrics import GatewayMetrics, LiveState, TunnelCounters, render_merged, samples_of


def _worker(rx: int, handshakes: int) -> GatewayMetrics:
    metrics = GatewayMetrics(
        lambda: LiveState(tunnels=[TunnelCounters("dtls", rx, 10, 1, 1)], sessions_disconnected=0)
    )
    metrics.dtls_handshakes.labels(mode="psk").inc(handshakes)
    return metrics


def test_counters_and_gauges_add_up_across_processes() -> None:
    auth = GatewayMetrics(lambda: LiveState(tunnels=[], sessions_disconnected=3))
    auth.logins.labels(result="success", reason="password").inc(5)
    parts = [samples_of(m.registry) for m in (_worker(100, 1), _worker(250, 2), auth)]
    text = render_merged(parts).decode()
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert values[("ocgate_tunnel_bytes_total", (("direction", "rx"),))] == 350
    assert values[("ocgate_dtls_handshakes_total", (("mode", "psk"),))] == 3
    assert values[("ocgate_sessions", (("state", "connected"), ("transport", "dtls")))] == 2
    assert values[("ocgate_sessions", (("state", "disconnected"), ("transport", "none")))] == 3
    assert values[("ocgate_logins_total", (("reason", "password"), ("result", "success")))] == 5
    # A process-level gauge where a sum means nothing keeps one value.
    starts = [s.value for s in parts[0].samples if s.name == "process_start_time_seconds"]
    if starts:
        merged = values[("process_start_time_seconds", ())]
        assert merged <= starts[0]
