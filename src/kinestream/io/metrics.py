"""Prometheus metrics of the daemon, cheap enough for the hot path.

The hot path only bumps plain Python numbers (``metrics.readings["accepted"] += 1``); a custom
collector turns them into metric families when Prometheus scrapes, from the exporter's thread.
That avoids prometheus-client's per-call locks and label lookups at tens of thousands of
readings per second. Names follow Prometheus conventions (``kinestream_`` prefix, base units,
``_total`` counters); no label carries a vehicle id, so cardinality stays fixed. Every labelled
series exists from the start at zero, so rates work from the first scrape.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kinestream.core.records import RejectReason

READING_RESULTS = ("accepted", "rejected", "duplicate")
OUTPUT_KINDS = ("kinematics", "trip", "event", "state", "deadletter", "status")
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
CHECKPOINT_BUCKETS_S = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Fixed buckets of plain counts; ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, value: float, count: int) -> None:
        """``count`` observations of the same value (a batch of messages)."""
        self.counts[bisect_left(self.bounds, value)] += count
        self.sum += value * count

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            label = "+Inf" if bound == float("inf") else repr(bound)
            buckets.append((label, cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


class Metrics:
    """The daemon's numbers; the service writes them, the collector reads them."""

    def __init__(self) -> None:
        self.messages_received = 0
        self.readings = dict.fromkeys(READING_RESULTS, 0)
        self.published = dict.fromkeys(OUTPUT_KINDS, 0)
        self.dead_letters = dict.fromkeys((reason.value for reason in RejectReason), 0)
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.event_time_lag_seconds = 0.0
        self.active_vehicles = 0
        self.evictions = 0
        self.broker_connected = 0
        self.reconnects = 0
        self.outputs_dropped = 0
        self.wal_size_bytes = 0
        self.wal_replayed_messages = 0
        self.checkpoint_duration = Histogram(CHECKPOINT_BUCKETS_S)
        self.last_checkpoint_monotonic: float | None = None
        self._started_monotonic = time.monotonic()

    def checkpoint_done(self, duration_s: float) -> None:
        self.checkpoint_duration.observe(duration_s)
        self.last_checkpoint_monotonic = time.monotonic()

    def checkpoint_age_seconds(self) -> float:
        since = self.last_checkpoint_monotonic or self._started_monotonic
        return time.monotonic() - since


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield _counter("messages_received", "MQTT messages received on the speed topics.", m)
        yield _labelled_counter(
            "readings", "Readings by result (accepted, rejected, duplicate).", "result", m.readings
        )
        yield _labelled_counter(
            "outputs_published", "Messages published, by kind.", "kind", m.published
        )
        yield _labelled_counter(
            "dead_letters",
            "Rejected messages and readings sent to the dead-letter topic, by reason.",
            "reason",
            m.dead_letters,
        )
        yield m.latency.family(
            "kinestream_processing_latency_seconds",
            "Time from receiving a message to publishing its outputs.",
        )
        yield _gauge(
            "event_time_lag_seconds",
            "Receive time minus event time of the latest accepted reading.",
            m.event_time_lag_seconds,
        )
        yield _gauge("active_vehicles", "Vehicles tracked in memory.", m.active_vehicles)
        yield _counter("evictions", "Idle vehicles moved from memory to the state store.", m)
        yield _gauge("broker_connected", "1 while connected to the broker.", m.broker_connected)
        yield _counter("reconnects", "Successful reconnections to the broker.", m)
        yield _counter(
            "outputs_dropped",
            "Outputs dropped because the publish backlog was full while the broker was away.",
            m,
        )
        yield _gauge("wal_size_bytes", "Size of the write-ahead log on disk.", m.wal_size_bytes)
        yield _counter(
            "wal_replayed_messages", "Messages replayed from the write-ahead log at start.", m
        )
        yield m.checkpoint_duration.family(
            "kinestream_checkpoint_duration_seconds", "Time to write a state checkpoint."
        )
        yield _gauge(
            "checkpoint_age_seconds",
            "Seconds since the last completed checkpoint (since start before the first).",
            m.checkpoint_age_seconds(),
        )


def _counter(name: str, documentation: str, metrics: Metrics) -> CounterMetricFamily:
    return CounterMetricFamily(f"kinestream_{name}", documentation, value=getattr(metrics, name))


def _labelled_counter(
    name: str, documentation: str, label: str, values: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"kinestream_{name}", documentation, labels=[label])
    for key, value in list(values.items()):
        family.add_metric([key], value)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"kinestream_{name}", documentation, value=value)


def make_registry(metrics: Metrics) -> CollectorRegistry:
    """A registry of our own (not the process-global one): one per service instance."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Collector(metrics))
    return registry


def serve(metrics: Metrics, bind: str, port: int) -> WSGIServer:
    """Expose ``/metrics`` on ``bind:port`` from a daemon thread; ``shutdown()`` stops it."""
    server, _thread = start_http_server(port, addr=bind, registry=make_registry(metrics))
    return server
