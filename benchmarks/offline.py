"""Offline rows of the harness: `kinestream process` per method, the batch core per method on
a fleet of 1 000 vehicles, and RSS per tracked vehicle with 100 000 vehicles.

Each measurement runs in a child interpreter (this checkout's src/ first on the path), so a
missing piece reports "not available: why" instead of stopping the harness, and RSS figures
are not inflated by the harness itself.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from benchlib import BENCH_DIR, REPO_DIR, TOPIC_PREFIX, median, speed_payload, vehicle_id

METHODS = ("kalman", "polyfit", "difference")
FLEET_VEHICLES = 1_000
MEMORY_VEHICLES = 100_000
PROCESS_READINGS = 500_000
BATCH_READINGS = 2_000_000


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO_DIR / 'src'}{os.pathsep}{BENCH_DIR}"
    return env


def _python(code_or_args: list[str], timeout_s: float = 600.0) -> subprocess.CompletedProcess:
    """Run a child interpreter; a timeout becomes a failed result (reported, not raised)."""
    args = [sys.executable, *code_or_args]
    try:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=_env(),
            cwd=REPO_DIR,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 1, "", f"timed out after {timeout_s:.0f} s")


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1][:160] if lines else f"exit code {result.returncode}"


# ---------------------------------------------------------------- process


def write_log(path: Path, readings: int, vehicles: int) -> None:
    """A recorded JSON Lines log like `kinestream record` writes, readings round-robin."""
    with path.open("wb") as out:
        for k in range(readings):
            vehicle, step = k % vehicles, k // vehicles
            line = {
                "t": 1767225600.0 + step,
                "topic": f"{TOPIC_PREFIX}/{vehicle_id(vehicle)}/speed",
                "payload": speed_payload(step, vehicle).decode(),
            }
            out.write(orjson.dumps(line) + b"\n")


def _child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_rate(log: Path, readings: int, extra: list[str], runs: int) -> tuple[list, str]:
    """[(wall-clock readings/s, CPU readings/s)] per run, or [] and why it failed."""
    rates = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="kinestream-bench-process-") as tmp:
            args = ["-m", "kinestream", "process", str(log), *extra]
            args = [a.replace("{tmp}", tmp) for a in args]
            cpu_before, start = _child_cpu_s(), time.monotonic()
            result = _python(args)
            elapsed, cpu = time.monotonic() - start, _child_cpu_s() - cpu_before
        if result.returncode != 0:
            return [], _last_line(result)
        rates.append((readings / elapsed, readings / cpu))
    return rates, ""


PROCESS_VARIANTS = [
    ("kalman", "-o out.jsonl", ["--method", "kalman", "-o", "{tmp}/out.jsonl"]),
    ("kalman", "--summary", ["--method", "kalman", "--summary"]),
    ("polyfit", "-o out.jsonl", ["--method", "polyfit", "-o", "{tmp}/out.jsonl"]),
    ("difference", "-o out.jsonl", ["--method", "difference", "-o", "{tmp}/out.jsonl"]),
]


def process_rows(scale: float, runs: int, report) -> None:
    probe = _python(["-m", "kinestream", "process", "--help"], 60)
    if probe.returncode != 0:
        report.add("kinestream process (JSON Lines log)", f"not available: {_last_line(probe)}")
        return
    readings = int(PROCESS_READINGS * scale)
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-log-") as tmp:
        log = Path(tmp) / "fleet.jsonl"
        write_log(log, readings, FLEET_VEHICLES)
        for method, label, extra in PROCESS_VARIANTS:
            rates, why = process_rate(log, readings, extra, runs)
            name = f"kinestream process {label}, {method} ({readings:,} readings, 1 000 vehicles)"
            if not rates:
                report.add(name, f"not available: {why}")
                continue
            wall = median([w for w, _ in rates])
            cpu = median([c for _, c in rates])
            goal = "≥ 300k/s" if method == "kalman" else ""
            report.add(
                name,
                f"{wall / 1000:.0f}k/s",
                f"{cpu / 1000:.0f}k/s per CPU-second (incl. start-up)",
                goal,
                _verdict(wall >= 300_000) if goal else "",
            )


# ---------------------------------------------------------------- batch core and memory


def _json_lines(result: subprocess.CompletedProcess) -> list[dict]:
    rows = []
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def batch_rows(scale: float, runs: int, report) -> None:
    readings = int(BATCH_READINGS * scale)
    goals = {"kalman": 1_000_000, "difference": 10_000_000}
    for method in METHODS:
        name = f"batch core, {method} ({FLEET_VEHICLES:,} vehicles, {readings:,} readings)"
        rates, cpu_rates, cold_rates = [], [], []
        for _ in range(runs):
            result = _python(["-c", BATCH_CODE, method, str(readings), str(FLEET_VEHICLES)])
            if result.returncode != 0:
                report.add(name, f"not available: {_last_line(result)}")
                break
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            rates.append(measured["readings_per_s"])
            cpu_rates.append(measured["cpu_readings_per_s"])
            cold_rates.append(measured["cold_readings_per_s"])
        else:
            rate = median(rates)
            goal = goals.get(method)
            report.add(
                name,
                f"{rate / 1e6:.2f}M/s",
                f"{median(cpu_rates) / 1e6:.2f}M/s per CPU-second; a process's first (cold) "
                f"call {median(cold_rates) / 1e6:.2f}M/s",
                f"≥ {goal / 1e6:.0f}M/s" if goal else "",
                _verdict(rate >= goal) if goal else "",
            )


# Runs in a child interpreter: one fleet's readings as arrays in arrival order (interleaved
# vehicles, 1 Hz each, smooth noisy speed), timed through kinestream.core.batch, wall clock:
# the median of three calls after a first (cold) one, which is reported beside it.
BATCH_CODE = r"""
import json, sys, time
import numpy as np
from kinestream.core.batch import process_batch_codes
from kinestream.core.params import EstimatorParams, Method, TrackerParams
method, readings, vehicles = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
k = np.arange(readings)
codes = k % vehicles  # arrival order of a live fleet: interleaved
names = [f"v{i:05d}" for i in range(vehicles)]
step = k // vehicles
ts = 1767225600.0 + step + codes / 1000.0
rng = np.random.default_rng(7)
speed = np.clip(15.0 + 10.0 * np.sin(step / 60.0 + codes) + rng.normal(0, 0.2, readings), 0, None)
params = TrackerParams(estimator=EstimatorParams(method=Method(method)))
def timed():
    start, cpu_start = time.perf_counter(), time.process_time()
    result = process_batch_codes(codes, names, ts, speed, params)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    del result  # the next call allocates its result afresh, as a new input would
    return readings / elapsed, readings / cpu
cold = timed()  # the process's first call: its result's memory is fresh pages (page faults)
warm = sorted(timed() for _ in range(3))[1]  # the median of three calls that reuse memory
print(json.dumps({"readings_per_s": warm[0], "cpu_readings_per_s": warm[1],
                  "cold_readings_per_s": cold[0]}))
"""


MEMORY_CODE = r"""
import json, sys
from pathlib import Path
from kinestream.core.fleet import Fleet
from kinestream.core.params import TrackerParams
from kinestream.core.records import Reading

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

vehicles = int(sys.argv[1])
ids = [f"v{i:06d}" for i in range(vehicles)]
fleet = Fleet(TrackerParams())
# Warm up one vehicle so imports and caches are not charged to the fleet.
fleet.update(Reading("warmup", ts=1767225600.0, speed_mps=10.0))
before = rss()
for step in range(3):
    for vid in ids:
        fleet.update(Reading(vid, ts=1767225600.0 + step, speed_mps=10.0 + step))
after = rss()
print(json.dumps({"bytes_per_vehicle": (after - before) / vehicles}))
"""


def memory_row(report) -> None:
    name = f"RSS per tracked vehicle ({MEMORY_VEHICLES:,} vehicles, 3 readings each)"
    result = _python(["-c", MEMORY_CODE, str(MEMORY_VEHICLES)])
    if result.returncode != 0:
        report.add(name, f"not available: {_last_line(result)}")
        return
    per_vehicle = json.loads(result.stdout.strip().splitlines()[-1])["bytes_per_vehicle"]
    report.add(name, f"{per_vehicle:,.0f} B", "", "≤ 2 KB", _verdict(per_vehicle <= 2048))


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def offline_rows(scale: float, runs: int, report) -> None:
    process_rows(scale, runs, report)
    batch_rows(scale, runs, report)
    memory_row(report)
