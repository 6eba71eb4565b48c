"""Memory per tracked vehicle (bytes) with 100 000 vehicles, per estimator method.

Run by hand: ``PYTHONPATH=src python benchmarks/memory_per_vehicle.py [--vehicles N]
[--fed M]``. tracemalloc counts every Python allocation made while the fleet is built: the
Tracker, its packed state, the estimator, the dict entry and the vehicle id string itself.

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
import sys
import tracemalloc
from collections.abc import Callable

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--fed", type=int, default=0, help="also feed this many vehicles")
    args = parser.parse_args(argv)
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
