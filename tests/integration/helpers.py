"""Drive a real `kinestream run` process against a private broker: start, kill, observe."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

import kinestream
from kinestream.core.fleet import Fleet
from kinestream.core.params import TrackerParams
from kinestream.core.records import Kinematics
from kinestream.core.units import SpeedUnit
from kinestream.io.broker import PrivateBroker, free_port
from kinestream.io.payloads import decode_speed_payload, vehicle_id_from_topic

SRC = Path(kinestream.__file__).resolve().parents[1]
WAIT_S = 60.0  # generous bound for conditions on a loaded 2-core machine (not a speed check)

Message = tuple[str, bytes]  # (topic, payload)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


class Daemon:
    """`python -m kinestream run` as a child process; killed at the end of the test."""

    def __init__(
        self,
        broker: PrivateBroker,
        state_dir: Path,
        client_id: str = "kinestream-test",
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.broker = broker
        self.state_dir = state_dir
        self.client_id = client_id
        self.metrics_port = free_port()
        self.env = env or {}
        self.args = list(args)
        self.log_path = state_dir.parent / f"{state_dir.name}-daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        command = [
            sys.executable,
            "-m",
            "kinestream",
            "run",
            "--broker",
            self.broker.url,
            "--state-dir",
            str(self.state_dir),
            "--client-id",
            self.client_id,
            "--metrics-port",
            str(self.metrics_port),
            *self.args,
        ]
        env = {**os.environ, "PYTHONPATH": str(SRC), **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def terminate(self, timeout_s: float = 10.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Observer:
    """A paho subscriber recording everything on the given filters (thread-safe list)."""

    def __init__(self, broker: PrivateBroker, filters: Iterable[str] = ("#",)) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"obs-{id(self)}")
        self.client.on_message = self._on_message
        self._filters = list(filters)
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, "observer subscription")

    def _on_connect(self, client, _userdata, _flags, _rc, _properties=None) -> None:
        for topic in self._filters:
            client.subscribe(topic, qos=1)
        self._subscribed.set()

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, suffix: str) -> list[dict]:
        with self._lock:
            found = [p for t, p, _r in self.messages if t.endswith(suffix)]
        return [orjson.loads(p) for p in found]

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _r in self.messages if t == topic]

    def count(self, suffix: str) -> int:
        with self._lock:
            return sum(1 for t, _p, _r in self.messages if t.endswith(suffix))

    def close(self) -> None:
        self.client.loop_stop()
        with contextlib.suppress(Exception):
            self.client.disconnect()


def wait_online(observer: Observer, service_prefix: str = "kinestream", after: int = 0) -> None:
    """Wait for the n-th `online` on {service}/status (the readiness signal)."""
    topic = f"{service_prefix}/status"
    wait_until(
        lambda: observer.payloads(topic).count(b"online") > after, f"{topic} online #{after + 1}"
    )


def publish_reliably(
    broker: PrivateBroker,
    messages: Sequence[Message],
    chunk: int = 500,
    pause_s: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Publish at QoS 1 in chunks; a chunk is re-sent whole until every PUBACK arrived.

    Survives broker restarts (duplicates it causes are the daemon's to absorb). Returns the
    number of chunk re-sends.
    """
    resends = 0
    client = _publisher(broker)
    try:
        for start in range(0, len(messages), chunk):
            while True:
                try:
                    infos = [
                        client.publish(t, p, qos=1) for t, p in messages[start : start + chunk]
                    ]
                    for info in infos:
                        info.wait_for_publish(timeout=10)
                        if not info.is_published():
                            raise TimeoutError
                    break
                except (RuntimeError, TimeoutError, ValueError, OSError):
                    resends += 1
                    client.loop_stop()
                    with contextlib.suppress(Exception):
                        client.disconnect()
                    wait_until(lambda: _can_connect(broker), "broker back")
                    client = _publisher(broker)
            if progress is not None:
                progress(start + chunk)
            if pause_s:
                time.sleep(pause_s)
    finally:
        client.loop_stop()
        with contextlib.suppress(Exception):
            client.disconnect()
    return resends


def _publisher(broker: PrivateBroker) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _can_connect(broker: PrivateBroker) -> bool:
    try:
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        probe.connect(broker.host, broker.port)
        probe.disconnect()
        return True
    except OSError:
        time.sleep(0.1)
        return False


def synthetic_fleet(vehicles: int, readings: int, t0: float) -> list[Message]:
    """Smooth speed profiles at 1 Hz for several vehicles, interleaved by time."""
    messages = []
    for i in range(readings):
        for v in range(vehicles):
            speed = 12.0 + 8.0 * math.sin(i / (15.0 + 3 * v)) + 0.5 * v
            body = orjson.dumps({"ts": t0 + i, "speed": round(speed, 3)})
            messages.append((f"vehicles/veh-{v}/speed", body))
    return messages


def offline_distances(messages: Iterable[Message], received_at: float) -> dict[str, float]:
    """Final odometer per vehicle from the core alone, fed in publish order."""
    fleet = Fleet(TrackerParams())
    final: dict[str, float] = {}
    for topic, payload in messages:
        vehicle_id = vehicle_id_from_topic(topic, "vehicles")
        assert isinstance(vehicle_id, str)
        readings, _ = decode_speed_payload(
            payload, vehicle_id, received_at, SpeedUnit.METRES_PER_SECOND
        )
        for reading in readings:
            for record in fleet.update(reading):
                if isinstance(record, Kinematics):
                    final[vehicle_id] = record.distance_m
    return final


def final_kinematics(observer: Observer) -> dict[str, dict]:
    """Per vehicle, the last kinematics record received for its greatest ts."""
    latest: dict[str, dict] = {}
    for record in observer.on("/kinematics"):
        known = latest.get(record["vehicle_id"])
        if known is None or record["ts"] >= known["ts"]:
            latest[record["vehicle_id"]] = record
    return latest
