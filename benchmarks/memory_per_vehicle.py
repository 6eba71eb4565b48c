"""Memory per tracked vehicle (bytes) with 100 000 vehicles, per estimator method.

Run by hand: ``python benchmarks/memory_per_vehicle.py [--vehicles N] [--readings R]``.
tracemalloc counts every Python allocation made while the fleet is built: the Tracker, its
packed state, the estimator, the dict entry and the vehicle id string itself. Each vehicle
gets R readings at 10 Hz while moving (a trip is open, the estimator's window is full).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc

from kinestream.core.fleet import Fleet
from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.core.records import Reading

T0 = 1_767_225_600.0
BUDGET_BYTES = 2048


def bytes_per_vehicle(method: Method, vehicles: int, readings: int) -> float:
    params = TrackerParams(estimator=EstimatorParams(method=method))
    gc.collect()
    tracemalloc.start()
    fleet = Fleet(params)
    for v in range(vehicles):
        vehicle_id = f"truck-{v:06d}"
        for k in range(readings):
            fleet.update(Reading(vehicle_id, T0 + 0.1 * k, 5.0 + 0.1 * k))
    gc.collect()
    used, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(fleet) == vehicles
    return used / vehicles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--readings", type=int, default=40)
    args = parser.parse_args(argv)
    print(f"{args.vehicles:,} vehicles, {args.readings} readings each (10 Hz, moving)")
    print(f"{'method':<12} {'bytes/vehicle':>14} {'budget':>8}")
    for method in Method:
        per_vehicle = bytes_per_vehicle(method, args.vehicles, args.readings)
        verdict = "ok" if per_vehicle <= BUDGET_BYTES else "OVER"
        print(f"{method.value:<12} {per_vehicle:>14,.0f} {verdict:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
