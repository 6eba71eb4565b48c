"""`kinestream run` against a real Mosquitto: round trip, crash safety, shutdown, metrics."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from kinestream.commands.state import uncovered_log_bytes as uncovered_in
from kinestream.io.state_store import StateStore
from tests.brokers import requires_mosquitto
from tests.integration.helpers import (
    SRC,
    WAIT_S,
    Daemon,
    Observer,
    final_kinematics,
    offline_distances,
    publish_reliably,
    synthetic_fleet,
    wait_online,
    wait_until,
)

pytestmark = pytest.mark.integration

T0 = time.time() - 86400.0  # yesterday: old event times are fine
DATA = Path(__file__).resolve().parents[1] / "data" / "recorded"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}
STATE_CMD = [sys.executable, "-m", "kinestream", "state"]
FAST_CHECKPOINTS = {"KINESTREAM_STATE__CHECKPOINT_INTERVAL_S": "1.0"}


@pytest.fixture
def broker(broker_factory):
    """A broker of the test's own with an unlimited queue: Mosquitto's default (1000 queued
    messages per client) silently drops QoS 1 readings whenever the daemon falls behind."""
    return broker_factory(max_queued_messages=0)


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


@pytest.fixture
def observers():
    made: list[Observer] = []
    yield made
    for observer in made:
        observer.close()


def uncovered_log_bytes(state_dir: Path) -> int:
    """Bytes in log segments the state store's last checkpoint does not cover."""
    store = StateStore(state_dir)
    try:
        return uncovered_in(store)
    finally:
        store.close()


def state_command(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*STATE_CMD, "--state-dir", str(state_dir), *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, check=False)


def kinestream(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kinestream", *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, check=False)


def test_round_trip_matches_offline_process(broker, tmp_path, daemons, observers):
    """`kinestream replay` of two GPS logs through the daemon yields kinematics whose final
    distance_m per vehicle equals `kinestream process --summary` on the same files."""
    inputs = []
    for name, vehicle in (("cmap_4115957_1", "gps-a"), ("cmap_4116721_2", "gps-b")):
        copy = tmp_path / f"{vehicle}.csv"  # the vehicle id is the file's stem
        shutil.copy(DATA / name / "2007-04-09.csv", copy)
        inputs.append(str(copy))
    offline = kinestream("process", *inputs, "--summary")
    assert offline.returncode == 0, offline.stderr
    summaries = [orjson.loads(line) for line in offline.stdout.splitlines()]
    expected = {s["vehicle_id"]: s["distance_m"] for s in summaries}
    assert set(expected) == {"gps-a", "gps-b"}
    observer = Observer(broker, ["vehicles/+/kinematics", "kinestream/#"])
    observers.append(observer)
    daemons.append(Daemon(broker, tmp_path / "state", client_id="rt").start())
    wait_online(observer)
    started = time.monotonic()
    replayed = kinestream("replay", *inputs, "--broker", broker.url, "--max-rate")
    assert replayed.returncode == 0, replayed.stderr

    def final_distances() -> dict[str, float]:
        return {v: k["distance_m"] for v, k in final_kinematics(observer).items()}

    wait_until(
        lambda: (
            final_distances().keys() == expected.keys()
            and all(final_distances()[v] == pytest.approx(d, rel=1e-9) for v, d in expected.items())
        ),
        "final odometers equal to the offline process result",
    )
    count = observer.count("/kinematics")
    print(f"round trip: {count} kinematics in {time.monotonic() - started:.2f} s")
    assert all(distance > 1000.0 for distance in expected.values())


def crash_scenario(broker, tmp_path, daemons, observers, disrupt) -> None:
    """Stream several vehicles at QoS 1, disrupt mid-stream, check the final odometers."""
    vehicles, readings = 4, 2500
    messages = synthetic_fleet(vehicles, readings, T0)
    expected = offline_distances(messages, time.time())
    observer = Observer(broker, ["vehicles/+/kinematics", "kinestream/#"])
    observers.append(observer)
    state = tmp_path / "state"
    first = Daemon(broker, state, client_id="crash", env=FAST_CHECKPOINTS).start()
    daemons.append(first)
    wait_online(observer)
    publisher = threading.Thread(
        target=publish_reliably, args=(broker, messages), kwargs={"chunk": 250, "pause_s": 0.05}
    )
    publisher.start()
    try:
        wait_until(lambda: observer.count("/kinematics") > len(messages) // 4, "a quarter done")
        seen_before = observer.count("/kinematics")
        disrupt(first)
        publisher.join(WAIT_S * 2)
    finally:
        publisher.join(WAIT_S * 2)
    assert seen_before < len(messages), "the disruption came after the stream ended"
    wait_until(
        lambda: (
            {v: k["ts"] for v, k in final_kinematics(observer).items()}
            == {v: T0 + readings - 1 for v in expected}
        ),
        "the last reading of every vehicle processed",
    )
    final = {v: k["distance_m"] for v, k in final_kinematics(observer).items()}
    for vehicle, distance in expected.items():
        assert final[vehicle] == pytest.approx(distance, rel=1e-4), vehicle
    print(f"after disruption: {final} (expected {expected})")


@requires_mosquitto
def test_kill_minus_9_mid_stream_loses_and_doubles_nothing(
    own_mqtt_broker, tmp_path, daemons, observers
):
    """SIGKILL mid-stream (the broker publishes the `offline` will), restart on the same state
    dir: every final odometer equals the uninterrupted run (<= 0.01 %), so no acknowledged
    reading was lost or counted twice."""

    def kill_and_restart(first: Daemon) -> None:
        """Kill -9 until a kill lands while the log holds readings no checkpoint covers (a
        checkpoint a moment before the kill would leave only the broker's redelivery to test)."""
        victim = first
        status = observers[0].payloads
        for _attempt in range(5):
            offline_before = status("kinestream/status").count(b"offline")
            victim.kill()
            wait_until(
                lambda n=offline_before: status("kinestream/status").count(b"offline") > n,
                "the offline will",
            )
            uncovered = uncovered_log_bytes(victim.state_dir)
            online_before = status("kinestream/status").count(b"online")
            victim = Daemon(
                own_mqtt_broker, first.state_dir, client_id="crash", env=FAST_CHECKPOINTS
            )
            daemons.append(victim.start())
            if uncovered:
                return
            # Online again before the next kill: a daemon killed before it connected has
            # no will registered, and the next attempt would wait for an offline that never comes.
            wait_online(observers[0], after=online_before)
        raise AssertionError("never killed the daemon with uncovered readings in its log")

    crash_scenario(own_mqtt_broker, tmp_path, daemons, observers, kill_and_restart)
    text = daemons[-1].scrape()
    replayed = float(re.search(r"^kinestream_wal_replayed_messages_total (\S+)$", text, re.M)[1])
    duplicates = re.search(r'^kinestream_readings_total\{result="duplicate"\} (\S+)$', text, re.M)
    late = re.search(r'^kinestream_dead_letters_total\{reason="late"\} (\S+)$', text, re.M)
    print(f"after restart: {replayed:.0f} replayed, {duplicates[1]} duplicates, {late[1]} late")
    assert replayed > 0  # the recovery path was exercised, not only the broker's redelivery


@requires_mosquitto
def test_broker_restart_mid_stream_loses_and_doubles_nothing(
    own_mqtt_broker, tmp_path, daemons, observers
):
    """The broker restarts mid-stream (persistent session on disk): the daemon reconnects and
    every final odometer equals the uninterrupted run; the daemon never exits."""

    def restart_broker(first: Daemon) -> None:
        own_mqtt_broker.stop()
        own_mqtt_broker.start()
        observers[0].client.reconnect()

    crash_scenario(own_mqtt_broker, tmp_path, daemons, observers, restart_broker)
    assert daemons[0].alive()
    text = daemons[0].scrape()
    assert "kinestream_reconnects_total 1.0" in text
    assert "kinestream_broker_connected 1.0" in text


def test_sigterm_exits_zero_quickly_with_state_saved(broker, tmp_path, daemons, observers):
    """SIGTERM: exit code 0 within 5 s, `offline` retained, and the state saved (the next
    start resumes the odometer; `kinestream state` lists the vehicle)."""
    observer = Observer(broker, ["vehicles/+/kinematics", "kinestream/#"])
    observers.append(observer)
    state = tmp_path / "state"
    daemon = Daemon(broker, state, client_id="term").start()
    daemons.append(daemon)
    wait_online(observer)
    messages = synthetic_fleet(1, 50, T0)
    publish_reliably(broker, messages)
    wait_until(lambda: observer.count("/kinematics") >= 50, "50 kinematics")
    distance = final_kinematics(observer)["veh-0"]["distance_m"]
    stopping = time.monotonic()
    assert daemon.terminate(timeout_s=10) == 0
    assert time.monotonic() - stopping < 5.0
    wait_until(lambda: observer.payloads("kinestream/status")[-1:] == [b"offline"], "offline")
    listed = subprocess.run(
        [*STATE_CMD, "--state-dir", str(state), "list"],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "veh-0" in listed.stdout
    assert f"{distance:.1f}" in listed.stdout
    # Restart: the next reading continues the odometer saved at shutdown.
    again = Daemon(broker, state, client_id="term").start()
    daemons.append(again)
    wait_online(observer, after=1)
    publish_reliably(broker, synthetic_fleet(1, 51, T0)[50:])
    wait_until(lambda: final_kinematics(observer)["veh-0"]["ts"] == T0 + 50, "reading 51")
    assert final_kinematics(observer)["veh-0"]["distance_m"] > distance


def test_state_command_refuses_while_daemon_runs(broker, tmp_path, daemons, observers):
    """`kinestream state` exits 1 naming the running daemon while it holds the state dir."""
    observer = Observer(broker, ["kinestream/#"])
    observers.append(observer)
    state = tmp_path / "state"
    daemons.append(Daemon(broker, state, client_id="lock").start())
    wait_online(observer)
    result = state_command(state, "list")
    assert result.returncode == 1
    assert "in use by another kinestream process" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) missing"
)
def test_scraped_metrics_pass_promtool(broker, tmp_path, daemons, observers):
    """The live /metrics output, after real traffic and a dead letter, passes promtool."""
    observer = Observer(broker, ["kinestream/#"])
    observers.append(observer)
    daemon = Daemon(broker, tmp_path / "state", client_id="prom").start()
    daemons.append(daemon)
    wait_online(observer)
    publish_reliably(broker, [*synthetic_fleet(2, 20, T0), ("vehicles/x/speed", b"{")])
    wait_until(lambda: observer.count("/deadletter") >= 1, "the dead letter")
    text = daemon.scrape()
    assert 'kinestream_dead_letters_total{reason="malformed_payload"} 1.0' in text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == ""
