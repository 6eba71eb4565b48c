"""Memory per tracked vehicle (bytes) with 100 000 vehicles: the core, and the daemon.

Run by hand: ``PYTHONPATH=src python benchmarks/memory_per_vehicle.py [--vehicles N]
[--fed M]``. tracemalloc counts every Python allocation made while the fleet is built: the
Tracker, its packed state, the estimator, the dict entry and the vehicle id string itself.

``--daemon``: the whole ``kinestream run`` process instead (its RSS from /proc, default
configuration but checkpoints every 5 s), through a private Mosquitto, in waves of one reading
per vehicle, each followed by several checkpoints: N new vehicles (A), A again, N other new
vehicles (B) evicting A (``max_vehicles`` is N, so the vehicles tracked stay N), B again, then
A and B in turn resumed from the state store, each evicting the other. Equal bytes per vehicle
after the last two waves (same kind, same history per vehicle) mean nothing creeps with
checkpoints, evictions or time.

Two ways to fill the fleet: ``restored`` imports, for each of N vehicles, the state of a
vehicle that has received 40 readings at 10 Hz while moving (a trip open, the estimator's
window full), as the daemon does when it resumes evicted vehicles (fast: N = 100 000);
``fed`` (with ``--fed M``) sends each of M vehicles those 40 readings through
``Fleet.update`` (slow under tracemalloc, so M is smaller; the per-vehicle figure is the same
up to the dict's growth steps).
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kinestream.core.fleet import Fleet
from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.core.records import Reading

T0 = 1_767_225_600.0
BUDGET_BYTES = 2048
READINGS = 40


def _feed(fleet: Fleet, vehicle_id: str) -> None:
    for k in range(READINGS):
        fleet.update(Reading(vehicle_id, T0 + 0.1 * k, 5.0 + 0.1 * k))


def _traced_bytes_per_vehicle(params: TrackerParams, vehicles: int, fill: Callable) -> float:
    gc.collect()
    tracemalloc.start()
    fleet = Fleet(params)
    for v in range(vehicles):
        fill(fleet, f"truck-{v:06d}")
    gc.collect()
    used, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(fleet) == vehicles
    return used / vehicles


def restored(params: TrackerParams, vehicles: int) -> float:
    prototype = Fleet(params)
    _feed(prototype, "prototype")
    blob = prototype.export_state("prototype")
    return _traced_bytes_per_vehicle(params, vehicles, lambda f, v: f.import_state(v, blob))


def fed(params: TrackerParams, vehicles: int) -> float:
    return _traced_bytes_per_vehicle(params, vehicles, _feed)


# ---------------------------------------------------------------- the daemon

CHECKPOINT_S = 5.0
CHECKPOINTS_PER_WAVE = 4
DAEMON_RATE = 2_500.0  # readings/s of first-seen vehicles the daemon keeps up with here


def _daemon_metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5.0) as response:
        text = response.read().decode()
    names = (
        "kinestream_messages_received_total",
        "kinestream_active_vehicles",
        "kinestream_evictions_total",
        "kinestream_checkpoint_duration_seconds_count",
        "kinestream_checkpoint_duration_seconds_sum",
    )
    found = {}
    for name in names:
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        found[name.removeprefix("kinestream_")] = float(match[1]) if match else 0.0
    return found


def _memory_kb(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {
        key: int(line.split()[1])
        for line in status
        for key in ("VmRSS", "VmHWM")
        if line.startswith(key + ":")
    }


def _publish_wave(port: int, first_vehicle: int, vehicles: int, step: int, rate: float) -> None:
    """One reading for each of ``vehicles`` vehicles from ``first_vehicle``, at ``rate``/s."""
    from benchlib import TOPIC_PREFIX, open_mqtt, publish_packet, speed_payload, vehicle_id
    from publisher import send_at_rate

    packets = [
        publish_packet(f"{TOPIC_PREFIX}/{vehicle_id(v)}/speed", speed_payload(step, v))
        for v in range(first_vehicle, first_vehicle + vehicles)
    ]
    sock = open_mqtt(port, f"memory-bench-{first_vehicle}-{step}")
    try:
        send_at_rate(sock, packets, np.zeros(len(packets)), rate)
    finally:
        sock.close()


def _wait_received(metrics_port: int, expected: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _daemon_metrics(metrics_port)["messages_received_total"] < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not receive {expected} messages in time")
        time.sleep(0.5)


def daemon(vehicles: int, rate: float) -> int:
    """The daemon's RSS per tracked vehicle through three waves (see the module docstring)."""
    from benchlib import free_port, private_broker, spawn, stop_process, wait_for_retained

    waves = [  # (label, first vehicle, step): A = vehicles 0..N-1, B = N..2N-1
        ("A: new vehicles", 0, 0),
        ("A again (2nd reading each)", 0, 1),
        ("B: new vehicles, evicting A", vehicles, 0),
        ("B again (2nd reading each)", vehicles, 1),
        ("A again (3rd), resumed, evicting B", 0, 2),
        ("B again (3rd), resumed, evicting A", vehicles, 2),
    ]
    print(
        f"daemon RSS per tracked vehicle ({vehicles:,} vehicles, max_vehicles {vehicles:,}, "
        f"checkpoints every {CHECKPOINT_S:.0f} s, {rate:,.0f} readings/s offered)"
    )
    print(
        f"{'moment':<48} {'RSS MB':>7} {'B/vehicle':>9} {'tracked':>8} {'evicted':>8} "
        f"{'checkpoints':>11} {'mean ckpt s':>11}"
    )
    with (
        private_broker() as broker,
        tempfile.TemporaryDirectory(prefix="kinestream-memory-") as tmp,
    ):
        metrics_port = free_port()
        command = [sys.executable, "-m", "kinestream", "run", "--broker"]
        command += [f"mqtt://127.0.0.1:{broker.port}", "--state-dir", f"{tmp}/state"]
        command += ["--metrics-port", str(metrics_port)]
        env = {
            "KINESTREAM_STATE__CHECKPOINT_INTERVAL_S": str(CHECKPOINT_S),
            "KINESTREAM_STATE__MAX_VEHICLES": str(vehicles),
        }
        process = spawn(command, Path(tmp) / "daemon.log", env)
        try:
            if not wait_for_retained(broker.port, "kinestream/status", b"online", 60.0):
                raise RuntimeError((Path(tmp) / "daemon.log").read_text()[-1500:])
            time.sleep(CHECKPOINT_S)
            base_kb = _memory_kb(process.pid)["VmRSS"]
            _report_row("ready", process.pid, metrics_port, base_kb)
            received = 0
            for label, first, step in waves:
                _publish_wave(broker.port, first, vehicles, step, rate)
                received += vehicles
                _wait_received(metrics_port, received)
                _report_row(f"after {label}", process.pid, metrics_port, base_kb)
                time.sleep(CHECKPOINTS_PER_WAVE * CHECKPOINT_S)
                _report_row(
                    f"  + {CHECKPOINTS_PER_WAVE} checkpoints", process.pid, metrics_port, base_kb
                )
            peak_b = (_memory_kb(process.pid)["VmHWM"] - base_kb) * 1024
            print(
                f"peak RSS above ready: {peak_b / 1e6:.0f} MB ({peak_b / vehicles:,.0f} B/vehicle)"
            )
        finally:
            stop_process(process)
    return 0


def _report_row(moment: str, pid: int, metrics_port: int, base_kb: int) -> None:
    rss_kb = _memory_kb(pid)["VmRSS"]
    m = _daemon_metrics(metrics_port)
    tracked = int(m["active_vehicles"])
    per_vehicle = (rss_kb - base_kb) * 1024 / tracked if tracked else 0.0
    checkpoints = int(m["checkpoint_duration_seconds_count"])
    mean_s = m["checkpoint_duration_seconds_sum"] / checkpoints if checkpoints else 0.0
    print(
        f"{moment:<48} {rss_kb / 1e3:>7.1f} {per_vehicle:>9,.0f} {tracked:>8,} "
        f"{int(m['evictions_total']):>8,} {checkpoints:>11} {mean_s:>11.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--fed", type=int, default=0, help="also feed this many vehicles")
    parser.add_argument("--daemon", action="store_true", help="measure `kinestream run` instead")
    parser.add_argument("--rate", type=float, default=DAEMON_RATE, help="with --daemon")
    args = parser.parse_args(argv)
    if args.daemon:
        return daemon(args.vehicles, args.rate)
    print(f"bytes per vehicle (budget {BUDGET_BYTES}); {READINGS} readings each, 10 Hz, moving")
    header = f"{'method':<12} {f'restored x{args.vehicles:,}':>18}"
    print(header + (f" {f'fed x{args.fed:,}':>14}" if args.fed else ""))
    for method in Method:
        params = TrackerParams(estimator=EstimatorParams(method=method))
        line = f"{method.value:<12} {restored(params, args.vehicles):>18,.0f}"
        if args.fed:
            line += f" {fed(params, args.fed):>14,.0f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
