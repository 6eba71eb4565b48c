"""Estimator speed and memory: streaming µs per reading, batch readings/s, bytes per vehicle.

    python benchmarks/estimator_speed.py [--vehicles 1000] [--readings 1000]

Batch: a fleet of V vehicles × N readings at ~1 Hz (jittered), the layout core/batch.py
passes (vehicle after vehicle, restart_before at each vehicle's first reading). Streaming:
predict + update per reading, as the tracker calls them. Memory: tracemalloc of a list of
estimators, each fed a few readings (its steady state), divided by the count.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import tracemalloc

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kinestream.core.estimators import estimate_batch, make_estimator  # noqa: E402
from kinestream.core.params import EstimatorParams, Method  # noqa: E402


def fleet_arrays(vehicles: int, readings: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    ts = 1.767e9 + np.cumsum(rng.uniform(0.8, 1.2, (vehicles, readings)), axis=1)
    speed = np.abs(10.0 + np.cumsum(rng.normal(0.0, 0.3, (vehicles, readings)), axis=1))
    restart_before = np.zeros((vehicles, readings), dtype=bool)
    restart_before[:, 0] = True
    return ts.ravel(), speed.ravel(), restart_before.ravel()


def best_of(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def stream_us(params: EstimatorParams, ts: np.ndarray, speed: np.ndarray) -> float:
    pairs = list(zip(ts.tolist(), speed.tolist(), strict=True))

    def run() -> None:
        estimator = make_estimator(params)
        for t, v in pairs:
            estimator.predict(t)
            estimator.update(t, v)

    return best_of(3, run) / len(pairs) * 1e6


def bytes_per_vehicle(params: EstimatorParams, count: int = 10_000) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    estimators = [make_estimator(params) for _ in range(count)]
    for i, estimator in enumerate(estimators):
        for k in range(50):  # 50 readings at 10 Hz: polyfit's window is full
            estimator.update(1.767e9 + 0.1 * k, 10.0 + 0.01 * ((i + k) % 7))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=1000)
    args = parser.parse_args()
    ts, speed, restart_before = fleet_arrays(args.vehicles, args.readings)
    total = len(ts)
    print(f"{args.vehicles} vehicles × {args.readings} readings")
    print(f"{'method':<11}{'batch Mreadings/s':>19}{'stream µs/reading':>19}{'bytes/vehicle':>15}")
    for method in Method:
        params = EstimatorParams(method=method)
        seconds = best_of(3, lambda p=params: estimate_batch(ts, speed, restart_before, p))
        per_reading = stream_us(params, ts[:20_000], speed[:20_000])
        size = bytes_per_vehicle(params)
        print(f"{method.value:<11}{total / seconds / 1e6:>19.2f}{per_reading:>19.2f}{size:>15.0f}")


if __name__ == "__main__":
    main()
