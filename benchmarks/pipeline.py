"""One measured trial of a system under test (echo, daemon or Node-RED) behind a private broker.

publisher.py (separate process) -> broker -> system under test -> broker -> sink.py.
Throughput = distinct output messages / (first publish -> last output received).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchlib import (
    cpu_seconds,
    median,
    python_script,
    rss_bytes,
    spawn,
    stop_process,
    wait_for_line,
)


@dataclass
class Trial:
    expected: int
    delivered: int
    duration_s: float
    readings_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_us_per_reading: float | None
    rss_mb: float | None
    offered_rate: float
    broker_cpu_us_per_reading: float | None = None
    p99_read_ms: float = float("nan")  # p99 to the sink's read returning (see _summarise)
    # Per delivered message: when it was sent (monotonic s) and its latency, for timelines.
    send_times: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def complete(self) -> bool:
        return self.delivered >= self.expected


def _done_line(log: Path) -> dict:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("DONE "):
            return json.loads(line[5:])
    raise RuntimeError(f"{log.name} ended without a result: {log.read_text()[-1500:]}")


def run_trial(
    port: int,
    pid: int | None,
    count: int,
    vehicles: int,
    qos: int,
    rate: float = 0.0,
    idle_s: float = 10.0,
    deadline_s: float = 300.0,
    broker_pid: int | None = None,
) -> Trial:
    """Publish count readings and measure what comes out of the system under test (pid)."""
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-trial-") as tmp:
        work = Path(tmp)
        sink_log, pub_log = work / "sink.log", work / "publisher.log"
        sink = spawn(
            python_script(
                "sink.py",
                *("--port", str(port), "--expect", str(count), "--vehicles", str(vehicles)),
                *("--idle", str(idle_s), "--deadline", str(deadline_s)),
                *("--out", str(work / "recv.npz")),
            ),
            sink_log,
        )
        publisher = None
        try:
            wait_for_line(sink_log, "READY", sink, 15.0)
            cpu_before = cpu_seconds(pid) if pid else None
            broker_before = cpu_seconds(broker_pid) if broker_pid else None
            publisher = spawn(
                python_script(
                    "publisher.py",
                    *("--port", str(port), "--count", str(count), "--vehicles", str(vehicles)),
                    *("--qos", str(qos), "--rate", str(rate), "--times", str(work / "sent.npy")),
                ),
                pub_log,
            )
            sink.wait(timeout=deadline_s + idle_s + 30)
            publisher.wait(timeout=60)
            cpu_after = cpu_seconds(pid) if pid else None
            broker_after = cpu_seconds(broker_pid) if broker_pid else None
            rss = rss_bytes(pid) / 1e6 if pid else None
        finally:
            stop_process(sink)
            if publisher is not None:
                stop_process(publisher)
        pub = _done_line(pub_log)
        _done_line(sink_log)
        sent = np.load(work / "sent.npy")
        received = np.load(work / "recv.npz")
    trial = _summarise(pub, sent, received, count, rate, cpu_before, cpu_after, rss)
    if broker_before is not None and trial.delivered:
        trial.broker_cpu_us_per_reading = (broker_after - broker_before) / trial.delivered * 1e6
    return trial


def _summarise(pub, sent, received, count, rate, cpu_before, cpu_after, rss) -> Trial:
    indices, recv_times = received["indices"], received["recv_times"]
    # Latency ends when the output reaches the sink's socket (kernel receive timestamp of
    # the newest bytes of each read, so never before the message itself arrived), not when
    # the sink's read returns: the sink pauses 0.5 ms between small reads to save CPU and
    # is itself descheduled at times, which is not the system's latency (measured: +0.6 ms
    # at p50, +4 ms at its p99 on a loaded machine). Both are kept.
    arrivals = received["arrival_times"] if "arrival_times" in received.files else recv_times
    valid = (indices >= 0) & (indices < count)
    indices, recv_times, arrivals = indices[valid], recv_times[valid], arrivals[valid]
    unique, first = np.unique(indices, return_index=True)
    delivered = len(unique)
    duration = float(recv_times.max() - pub["first_publish"]) if delivered else float("nan")
    latency_ms = (arrivals[first] - sent[unique]) * 1000.0
    read_latency_ms = (recv_times[first] - sent[unique]) * 1000.0
    pcts = np.percentile(latency_ms, [50, 90, 99]) if delivered else [float("nan")] * 3
    cpu = None
    if cpu_before is not None and delivered:
        cpu = (cpu_after - cpu_before) / delivered * 1e6
    return Trial(
        expected=count,
        delivered=delivered,
        duration_s=duration,
        readings_per_s=delivered / duration if delivered else 0.0,
        p50_ms=float(pcts[0]),
        p90_ms=float(pcts[1]),
        p99_ms=float(pcts[2]),
        cpu_us_per_reading=cpu,
        rss_mb=rss,
        offered_rate=rate,
        send_times=sent[unique],
        latency_ms=latency_ms,
        p99_read_ms=float(np.percentile(read_latency_ms, 99)) if delivered else float("nan"),
    )


@contextlib.contextmanager
def running(args: list[str], ready_marker: str, log: Path, timeout_s: float = 30.0) -> Iterator:
    """Start a system under test, wait for its readiness line, always stop it afterwards."""
    process = spawn(args, log)
    try:
        wait_for_line(log, ready_marker, process, timeout_s)
        yield process
    finally:
        stop_process(process)


@dataclass
class Summary:
    """Medians over repeated trials, with the spread (max/min - 1) of the throughput."""

    trials: list[Trial]

    def med(self, field: str) -> float | None:
        values = [getattr(t, field) for t in self.trials if getattr(t, field) is not None]
        return median(values) if values else None

    @property
    def spread(self) -> float:
        rates = [t.readings_per_s for t in self.trials if t.readings_per_s > 0]
        return max(rates) / min(rates) - 1.0 if len(rates) > 1 else 0.0

    @property
    def min_delivered_fraction(self) -> float:
        return min(t.delivered / t.expected for t in self.trials)


def settle(seconds: float = 0.5) -> None:
    """Let the previous trial's processes finish dying before the next clock starts."""
    time.sleep(seconds)
