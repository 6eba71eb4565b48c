"""Batch core throughput (readings/s) per estimator method on an in-memory fleet.

Run by hand:
``PYTHONPATH=src python benchmarks/batch_throughput.py [--readings N] [--vehicles V]``.
Readings arrive interleaved (every vehicle at each second, like a live fleet), 1 Hz with
noise, stops and a few gaps; the timing covers ``process_batch_codes`` only (CPU time).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from kinestream.core.batch import process_batch_codes
from kinestream.core.params import EstimatorParams, Method, TrackerParams

T0 = 1_767_225_600.0


def make_fleet(n: int, vehicles: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    per_vehicle = n // vehicles
    t = np.arange(per_vehicle, dtype=np.float64)
    phase = rng.uniform(0, 100, (vehicles, 1))
    speed = np.clip(12 + 12 * np.sin((t[None, :] + phase) / 90.0), 0, None)
    speed = np.clip(speed + rng.normal(0, 0.2, speed.shape), 0, None)
    ts = T0 + np.broadcast_to(t, speed.shape) + rng.uniform(0, 0.5, (vehicles, 1))
    # interleave: arrival order is time-major
    codes = np.broadcast_to(np.arange(vehicles)[:, None], speed.shape).T.ravel().copy()
    return (
        codes,
        [f"truck-{v:05d}" for v in range(vehicles)],
        ts.T.ravel().copy(),
        speed.T.ravel().copy(),
    )


def measure(method: Method, fleet, repeats: int = 3) -> tuple[float, int]:
    codes, names, ts, speed = fleet
    params = TrackerParams(estimator=EstimatorParams(method=method))
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        result = process_batch_codes(codes, names, ts, speed, params)
        best = min(best, time.process_time() - start)
    return ts.shape[0] / best, len(result.trips)


def reference_ms() -> float:
    """CPU ms for a fixed numpy workload (1M-element cumsum + arithmetic): machine speed."""
    x = np.random.default_rng(0).random(1_000_000)
    best = float("inf")
    for _ in range(10):
        start = time.process_time()
        np.cumsum(x * 2.0 + 1.0)
        best = min(best, time.process_time() - start)
    return best * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--vehicles", type=int, default=1_000)
    args = parser.parse_args(argv)
    fleet = make_fleet(args.readings, args.vehicles)
    print(f"{fleet[2].shape[0]:,} readings over {args.vehicles:,} vehicles, best of 3, CPU time")
    print(f"machine reference: 1M-element numpy pass = {reference_ms():.1f} ms CPU")
    print(f"{'method':<12} {'readings/s':>14} {'trips':>7}")
    for method in Method:
        rate, trips = measure(method, fleet)
        print(f"{method.value:<12} {rate:>14,.0f} {trips:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
