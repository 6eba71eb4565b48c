"""Metrics: the exposition is clean for promtool, labelled series exist at zero, no vehicle ids."""

import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client import generate_latest

from kinestream.core.records import RejectReason
from kinestream.io.metrics import Histogram, Metrics, make_registry, serve


def exposition(metrics: Metrics) -> str:
    return generate_latest(make_registry(metrics)).decode()


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in exposition")


def test_hot_path_numbers_appear_in_the_exposition():
    """Plain increments on the hot path show up as Prometheus counters and gauges."""
    metrics = Metrics()
    metrics.readings["accepted"] += 3
    metrics.dead_letters["malformed_payload"] += 2
    metrics.published["kinematics"] += 3
    metrics.active_vehicles = 7
    metrics.outputs_dropped = 4
    text = exposition(metrics)
    assert sample(text, 'kinestream_readings_total{result="accepted"}') == 3
    assert sample(text, 'kinestream_readings_total{result="duplicate"}') == 0
    assert sample(text, 'kinestream_dead_letters_total{reason="malformed_payload"}') == 2
    assert sample(text, 'kinestream_outputs_published_total{kind="kinematics"}') == 3
    assert sample(text, "kinestream_active_vehicles") == 7
    assert sample(text, "kinestream_outputs_dropped_total") == 4


def test_every_reject_reason_has_a_series_from_the_start():
    """The dead-letter counter covers the whole closed set of reasons, at zero before any."""
    text = exposition(Metrics())
    for reason in RejectReason:
        assert sample(text, f'kinestream_dead_letters_total{{reason="{reason.value}"}}') == 0


def test_histogram_buckets_are_cumulative():
    """Observations land in the first bucket whose bound is >= the value; +Inf counts all."""
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        histogram.observe(value)
    metrics = Metrics()
    metrics.latency = histogram
    text = exposition(metrics)
    assert sample(text, 'kinestream_processing_latency_seconds_bucket{le="0.1"}') == 2
    assert sample(text, 'kinestream_processing_latency_seconds_bucket{le="1.0"}') == 3
    assert sample(text, 'kinestream_processing_latency_seconds_bucket{le="+Inf"}') == 4
    assert sample(text, "kinestream_processing_latency_seconds_count") == 4
    assert sample(text, "kinestream_processing_latency_seconds_sum") == pytest.approx(2.65)


def test_every_metric_is_prefixed():
    """Every exposed metric name starts with kinestream_."""
    for line in exposition(Metrics()).splitlines():
        if line and not line.startswith("#"):
            assert line.startswith("kinestream_"), line


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian: prometheus)")
def test_promtool_check_metrics_is_clean():
    """`promtool check metrics` finds no problem in the exposition (naming, help, units)."""
    metrics = Metrics()
    metrics.readings["accepted"] += 1
    metrics.latency.observe(0.001)
    metrics.checkpoint_done(0.02)
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition(metrics),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_http_endpoint_serves_on_the_bind_address():
    """serve() answers GET /metrics on the configured loopback address and stops on shutdown."""
    server = serve(Metrics(), "127.0.0.1", 0)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"kinestream_readings_total" in response.read()
    finally:
        server.shutdown()
        server.server_close()
