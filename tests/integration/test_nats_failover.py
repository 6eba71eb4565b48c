"""`kinestream run --transport nats`: partitioned workers on a real nats-server (docs/scaling.md).

The server runs the shipped config/nats/nats-server.conf (JetStream, the MQTT listener, the
partition mapping) on free loopback ports; readings enter through MQTT exactly as devices send
them (`kinestream replay` at QoS 1); expected figures come from `kinestream process` on the same
log, never from the workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest

from kinestream.io.logs import LogWriter
from tests.integration.helpers import SRC, WAIT_S, synthetic_fleet, wait_until
from tests.integration.nats_helpers import (
    NatsObserver,
    NatsServer,
    Output,
    Worker,
    start_nats_server,
)

pytestmark = pytest.mark.integration

T0 = time.time() - 86400.0  # yesterday: old event times are fine
ENV = {**os.environ, "PYTHONPATH": str(SRC)}
LEASES = "kinestream-leases"


def kinestream(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kinestream", *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, check=False)


@pytest.fixture
def cluster(tmp_path):
    """A nats-server of the test's own, plus lists of workers and observers, all stopped after."""
    made: dict[str, list] = {"workers": [], "observers": []}

    def server(partitions: int) -> NatsServer:
        started = start_nats_server(tmp_path, partitions)
        made.setdefault("servers", []).append(started)
        return started

    made["server"] = server  # type: ignore[assignment]
    yield made
    for worker in made["workers"]:
        worker.kill()
    for observer in made["observers"]:
        observer.close()
    for started in made.get("servers", []):
        started.close()


def write_fleet_log(path: Path, vehicles: int, readings: int) -> int:
    messages = synthetic_fleet(vehicles, readings, T0)
    with LogWriter(path) as writer:
        for index, (topic, payload) in enumerate(messages):
            # recorded receive time: just after the reading's ts (1 Hz, interleaved by vehicle)
            writer.append_message(T0 + index // vehicles + 0.1, topic, payload)
    return len(messages)


def offline_summary(log: Path) -> dict[str, dict]:
    result = kinestream("process", str(log), "--summary")
    assert result.returncode == 0, result.stderr
    return {s["vehicle_id"]: s for s in map(orjson.loads, result.stdout.splitlines())}


def offline_kinematics(log: Path, tmp_path: Path) -> dict[str, dict[float, float]]:
    """Per vehicle, distance_m at each kinematics ts from `kinestream process -o`."""
    out = tmp_path / "offline.jsonl"
    result = kinestream("process", str(log), "-o", str(out))
    assert result.returncode == 0, result.stderr
    table: dict[str, dict[float, float]] = defaultdict(dict)
    for line in out.read_bytes().splitlines():
        record = orjson.loads(line)
        table[record["vehicle_id"]][record["ts"]] = record["distance_m"]
    return table


def kinematics_of(outputs: list[Output]) -> list[tuple[Output, dict]]:
    return [(o, orjson.loads(o.body)) for o in outputs if o.subject.endswith(".kinematics")]


def final_distances(observer: NatsObserver) -> dict[str, float]:
    latest: dict[str, dict] = {}
    for _output, record in kinematics_of(observer.snapshot()):
        known = latest.get(record["vehicle_id"])
        if known is None or record["ts"] >= known["ts"]:
            latest[record["vehicle_id"]] = record
    return {v: r["distance_m"] for v, r in latest.items()}


def owners(observer: NatsObserver) -> dict[str, str]:
    return {k: v.decode() for k, v in observer.kv_items(LEASES, "partitions.").items()}


def test_single_worker_round_trip_matches_offline_process(cluster, tmp_path):
    """One worker owning every partition: readings replayed through NATS's MQTT listener give
    final odometers equal to `kinestream process` on the same log, and SIGTERM exits 0 after
    giving the leases back."""
    partitions = 4
    server = cluster["server"](partitions)
    log = tmp_path / "fleet.jsonl"
    write_fleet_log(log, vehicles=6, readings=300)
    expected = {v: s["distance_m"] for v, s in offline_summary(log).items()}
    observer = NatsObserver(server.url, ["vehicles.*.kinematics"])
    cluster["observers"].append(observer)
    worker = Worker(server, "solo", partitions, tmp_path)
    cluster["workers"].append(worker)
    wait_until(lambda: len(owners(observer)) == partitions, "the worker owning every partition")
    replayed = kinestream("replay", str(log), "--broker", server.mqtt_url, "--max-rate")
    assert replayed.returncode == 0, replayed.stderr
    wait_until(
        lambda: final_distances(observer) == pytest.approx(expected, rel=1e-9),
        "final odometers equal to the offline process result",
    )
    assert worker.terminate() == 0, worker.log()
    assert owners(observer) == {}, "leases given back on shutdown"
    assert all(distance > 1000.0 for distance in expected.values())


def worker_runs(outputs: list[tuple[Output, dict]]) -> dict[str, list[str]]:
    """Per vehicle, the workers that published its kinematics, one entry per uninterrupted run
    (in the order the observer received them)."""
    runs: dict[str, list[str]] = defaultdict(list)
    for output, record in outputs:
        worker_list = runs[record["vehicle_id"]]
        if not worker_list or worker_list[-1] != output.worker:
            worker_list.append(str(output.worker))
    return runs


class SharedRun(NamedTuple):
    server: NatsServer
    log: Path
    total: int
    expected: dict[str, float]
    expected_rows: dict[str, dict[float, float]]
    observer: NatsObserver
    workers: list[Worker]


def three_workers_sharing(cluster, tmp_path: Path, vehicles: int, readings: int) -> SharedRun:
    """A fleet log, its offline reference, and three workers sharing six partitions."""
    partitions = 6
    server = cluster["server"](partitions)
    log = tmp_path / "fleet.jsonl"
    total = write_fleet_log(log, vehicles=vehicles, readings=readings)
    expected = {v: s["distance_m"] for v, s in offline_summary(log).items()}
    expected_rows = offline_kinematics(log, tmp_path)
    observer = NatsObserver(server.url, ["vehicles.*.kinematics"])
    cluster["observers"].append(observer)
    workers = [Worker(server, f"w{i}", partitions, tmp_path) for i in range(3)]
    cluster["workers"].extend(workers)
    wait_until(
        lambda: len(owners(observer)) == partitions and len(set(owners(observer).values())) == 3,
        "three workers sharing every partition",
    )
    return SharedRun(server, log, total, expected, expected_rows, observer, workers)


def start_replay(run: SharedRun) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kinestream", "replay", str(run.log), "--broker",
         run.server.mqtt_url, "--max-rate"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_three_workers_one_killed_midway_loses_and_doubles_nothing(cluster, tmp_path):
    """Three workers share the partitions; one is killed with SIGKILL mid-stream. The others
    take its partitions over from the KV state and the unacknowledged messages: every final
    odometer equals `kinestream process` (≤ 0.01 %), every published distance equals the
    offline one at the same ts (nothing counted twice, nothing skipped), every reading is
    processed, and each vehicle's kinematics came from one worker at a time."""
    run = three_workers_sharing(cluster, tmp_path, vehicles=12, readings=1500)
    total = run.total
    expected, expected_rows, observer, workers = (
        run.expected,
        run.expected_rows,
        run.observer,
        run.workers,
    )
    assert sum(len(rows) for rows in expected_rows.values()) == total
    victim = workers[0]
    replay = start_replay(run)
    try:
        wait_until(
            lambda: sum(o.worker == victim.worker_id for o in observer.snapshot()) > 200,
            "the victim processing readings",
        )
        victim.kill()
        killed_at = time.time()
        seen_at_kill = len(observer.snapshot())
        _out, err = replay.communicate(timeout=WAIT_S * 2)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode == 0, err
    assert seen_at_kill < total, "the kill came after every reading was processed"
    wait_until(
        lambda: final_distances(observer) == pytest.approx(expected, rel=1e-4),
        "final odometers equal to the offline process result",
        timeout_s=WAIT_S * 2,
    )
    published = kinematics_of(observer.snapshot())
    seen = {(record["vehicle_id"], record["ts"]) for _o, record in published}
    assert seen == {(v, ts) for v, rows in expected_rows.items() for ts in rows}
    for _output, record in published:
        offline = expected_rows[record["vehicle_id"]][record["ts"]]
        assert record["distance_m"] == pytest.approx(offline, rel=1e-9, abs=1e-6), record
    runs = worker_runs(published)
    for vehicle, run in runs.items():
        assert len(run) == len(set(run)), f"{vehicle} went back to a worker: {run}"
    moved = [v for v, run in runs.items() if run[0] == victim.worker_id]
    assert moved and all(len(runs[v]) == 2 for v in moved), runs
    assert victim.worker_id not in owners(observer).values()
    for worker in workers[1:]:
        assert worker.terminate() == 0, worker.log()
    resumed_at = min(
        o.received_at for o, r in published if r["vehicle_id"] in moved and o.worker != "w0"
    )
    print(
        f"failover: {len(published)} kinematics for {total} readings "
        f"({len(published) - total} republished after the kill), {len(moved)} vehicles moved, "
        f"first output of a moved vehicle {resumed_at - killed_at:.1f} s after the kill"
    )


def test_a_paused_worker_coming_back_doubles_nothing(cluster, tmp_path):
    """A worker frozen (SIGSTOP) for longer than its lease comes back as a zombie while the
    others own its partitions: its stale round is fenced (time fence, revision-checked state),
    so every published distance still equals the offline one and every odometer is exact."""
    run = three_workers_sharing(cluster, tmp_path, vehicles=12, readings=1000)
    expected, expected_rows, observer, workers = (
        run.expected,
        run.expected_rows,
        run.observer,
        run.workers,
    )
    frozen = workers[0]
    replay = start_replay(run)
    try:
        wait_until(
            lambda: sum(o.worker == frozen.worker_id for o in observer.snapshot()) > 100,
            "the worker to freeze processing readings",
        )
        frozen.process.send_signal(signal.SIGSTOP)
        time.sleep(5.0)  # lease TTL 3 s: the others take its partitions meanwhile
        frozen.process.send_signal(signal.SIGCONT)
        _out, err = replay.communicate(timeout=WAIT_S * 2)
    finally:
        frozen.process.send_signal(signal.SIGCONT)
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode == 0, err
    wait_until(
        lambda: final_distances(observer) == pytest.approx(expected, rel=1e-4),
        "final odometers equal to the offline process result",
        timeout_s=WAIT_S * 2,
    )
    for _output, record in kinematics_of(observer.snapshot()):
        offline = expected_rows[record["vehicle_id"]][record["ts"]]
        assert record["distance_m"] == pytest.approx(offline, rel=1e-9, abs=1e-6), record
