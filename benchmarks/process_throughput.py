"""Offline throughput: `process` end to end on a JSON Lines log, in readings per second.

Writes a recorded log (V vehicles driving the UDDS cycle at 1 Hz, staggered starts, the
payload shape devices send: {"ts", "speed", "unit"}), then times, per method:
  parse   - reading the log and decoding every payload into columns (process's first half)
  process - `kinestream.offline.process_inputs` end to end (log -> core -> summaries),
            in one process, and with --jobs worker processes decoding parts of the log
Medians of --repeats runs, by wall clock and per CPU second (process_time): on a shared,
busy machine the second is the one that says what the code costs.
Run by hand: PYTHONPATH=src python benchmarks/process_throughput.py [--readings N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.io.csv_input import CsvSpeedReader
from kinestream.io.logs import LogWriter
from kinestream.offline import InputOptions, _Columns, _Sources, default_engine, process_inputs

UDDS = Path(__file__).resolve().parents[1] / "tests" / "data" / "cycles" / "udds.csv"
START_TS = 1767225600.0


def write_log(path: Path, readings: int, vehicles: int) -> int:
    speeds = [speed for _, speed, _ in CsvSpeedReader(UDDS).samples()]
    per_vehicle = readings // vehicles
    written = 0
    with LogWriter(path) as writer:
        for step in range(per_vehicle):  # interleaved like a live fleet
            for vehicle in range(vehicles):
                ts = START_TS + step + vehicle * 0.001
                speed = speeds[(step + vehicle * 37) % len(speeds)]
                payload = b'{"ts":%r,"speed":%r,"unit":"m/s"}' % (ts, speed)
                writer.append_message(ts + 0.05, f"vehicles/v{vehicle:05d}/speed", payload)
                written += 1
    return written


def parse_only(path: Path) -> int:
    """The reading half of process alone: log lines -> decoded columns (no core)."""
    columns = _Columns()
    _Sources(InputOptions(), lambda rejection: None, None).fill([path], columns)
    return len(columns)


def process(path: Path, method: Method, jobs: int = 1) -> int:
    params = TrackerParams(estimator=EstimatorParams(method=method))
    result = process_inputs([path], InputOptions(), params, jobs=jobs)
    return sum(s.readings + s.rejected + s.duplicates for s in result.summaries.values())


def median_rates(run, repeats: int) -> tuple[float, float, int]:
    """Median readings/s by wall clock and per CPU second (the latter survives a busy box)."""
    wall, cpu = [], []
    count = 0
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        count = run()
        wall.append(count / (time.perf_counter() - started))
        cpu.append(count / (time.process_time() - started_cpu))
    return statistics.median(wall), statistics.median(cpu), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=500_000)
    parser.add_argument("--vehicles", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="difference,kalman,polyfit")
    parser.add_argument("--jobs", type=int, default=2, help="also run kalman with this many")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.jsonl"
        written = write_log(path, args.readings, args.vehicles)
        size_mb = path.stat().st_size / 1e6
        print(f"log: {written:,} readings, {args.vehicles:,} vehicles, {size_mb:.1f} MB")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"engine: {default_engine()}; load average {load} on {os.cpu_count()} CPUs")
        print(f"{'stage':<22}{'readings/s (wall)':>20}{'per CPU second':>18}")
        wall, cpu, _ = median_rates(lambda: parse_only(path), args.repeats)
        print(f"{'parse only':<22}{wall:>20,.0f}{cpu:>18,.0f}")
        for name in args.methods.split(","):
            method = Method(name)
            wall, cpu, count = median_rates(lambda m=method: process(path, m), args.repeats)
            assert count == written, (count, written)
            print(f"{'process ' + name:<22}{wall:>20,.0f}{cpu:>18,.0f}")
        if args.jobs > 1:  # CPU seconds of the workers are not counted: wall is the figure
            wall, _, count = median_rates(
                lambda: process(path, Method.KALMAN, args.jobs), args.repeats
            )
            assert count == written, (count, written)
            print(f"{f'process kalman -j{args.jobs}':<22}{wall:>20,.0f}{'-':>18}")


if __name__ == "__main__":
    main()
