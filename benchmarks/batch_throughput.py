"""Batch core throughput (readings/s) per estimator method on an in-memory fleet.

Run by hand:
``PYTHONPATH=src python benchmarks/batch_throughput.py [--readings N] [--vehicles V]``.
Readings arrive interleaved (every vehicle at each second, like a live fleet), 1 Hz with
noise; the timing covers ``process_batch_codes`` only (CPU time, best of ``--repeats``).
``--fleet run`` uses the fleet of ``benchmarks/run.py``'s batch rows instead of the default
one (slow sine with stops). ``--stages`` adds a per-function CPU breakdown (cProfile,
cumulative: a function's time includes the numpy passes it runs) of one more call.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

import numpy as np

from kinestream.core.batch import process_batch_codes
from kinestream.core.params import EstimatorParams, Method, TrackerParams

T0 = 1_767_225_600.0

Fleet = tuple[np.ndarray, list[str], np.ndarray, np.ndarray]


def make_fleet(n: int, vehicles: int, seed: int = 1) -> Fleet:
    """1 Hz per vehicle, slow sine speeds (stops included) with 0.2 m/s noise."""
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


def make_run_fleet(n: int, vehicles: int) -> Fleet:
    """The fleet of ``benchmarks/offline.py``'s BATCH_CODE (what run.py's batch rows time)."""
    k = np.arange(n)
    codes = k % vehicles
    step = k // vehicles
    ts = T0 + step + codes / 1000.0
    rng = np.random.default_rng(7)
    speed = np.clip(15.0 + 10.0 * np.sin(step / 60.0 + codes) + rng.normal(0, 0.2, n), 0, None)
    return codes, [f"v{i:05d}" for i in range(vehicles)], ts, speed


def measure(method: Method, fleet: Fleet, repeats: int) -> tuple[float, int]:
    """Best CPU seconds of ``repeats`` calls, and the number of trips (a sanity check)."""
    codes, names, ts, speed = fleet
    params = TrackerParams(estimator=EstimatorParams(method=method))
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        result = process_batch_codes(codes, names, ts, speed, params)
        best = min(best, time.process_time() - start)
    return best, len(result.trips)


def stages(method: Method, fleet: Fleet, top: int) -> None:
    """One profiled call: the kinestream functions by cumulative CPU time."""
    codes, names, ts, speed = fleet
    params = TrackerParams(estimator=EstimatorParams(method=method))
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    process_batch_codes(codes, names, ts, speed, params)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = [
        (cumulative, own, f"{path.rsplit('/', 1)[-1]}:{name}")
        for (path, _, name), (_, _, own, cumulative, _) in stats.items()
        if "kinestream" in path
    ]
    n = ts.shape[0]
    print(f"  {method.value}: per-function CPU ns/reading (cumulative / own)")
    for cumulative, own, label in sorted(rows, reverse=True)[:top]:
        print(f"    {cumulative / n * 1e9:8.1f} {own / n * 1e9:8.1f}  {label}")


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
    parser.add_argument("--fleet", choices=("sine", "run"), default="sine")
    parser.add_argument("--methods", default=",".join(m.value for m in Method))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", action="store_true", help="per-function CPU breakdown")
    parser.add_argument("--top", type=int, default=25, help="rows of the --stages breakdown")
    args = parser.parse_args(argv)
    make = make_run_fleet if args.fleet == "run" else make_fleet
    fleet = make(args.readings, args.vehicles)
    methods = [Method(m.strip()) for m in args.methods.split(",") if m.strip()]
    n = fleet[2].shape[0]
    print(f"{n:,} readings over {args.vehicles:,} vehicles ({args.fleet} fleet), CPU time")
    print(f"machine reference: 1M-element numpy pass = {reference_ms():.1f} ms CPU")
    print(f"{'method':<12} {'readings/s':>14} {'ns/reading':>11} {'trips':>7}")
    for method in methods:
        best_s, trips = measure(method, fleet, args.repeats)
        print(f"{method.value:<12} {n / best_s:>14,.0f} {best_s / n * 1e9:>11.1f} {trips:>7}")
    if args.stages:
        for method in methods:
            stages(method, fleet, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
