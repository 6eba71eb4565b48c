"""Hypothesis strategies and runners shared by the core property tests."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from hypothesis import strategies as st

from kinestream.core.batch import process_batch
from kinestream.core.fleet import Fleet
from kinestream.core.params import TrackerParams
from kinestream.core.records import (
    Duplicate,
    HarshEvent,
    Kinematics,
    Reading,
    Record,
    Rejection,
    TripSummary,
)

T0 = 1_767_225_600.0
VEHICLES = ("a", "b", "c")

# Intervals that hit every regime: 10 Hz, 1 Hz, bridged gaps, long gaps.
intervals = st.one_of(
    st.sampled_from([0.1, 0.5, 1.0, 1.0, 1.0, 6.0, 60.0, 119.0, 121.0, 200.0]),
    st.floats(0.01, 300.0),
)
# Speeds that hit every rule: standstill noise, trips, harsh steps, impossible jumps, invalid.
speeds = st.one_of(
    st.sampled_from([0.0, 0.0, 0.3, 1.0, 2.5, 5.0, 10.0, 20.0, -0.2, -1.0, 130.0]),
    st.floats(-1.0, 125.0),
)


@st.composite
def fleet_inputs(draw: st.DrawFn, max_size: int = 120, disorder: bool = True) -> list[Reading]:
    """Readings of up to three vehicles in arrival order, optionally with repeats and lateness."""
    n = draw(st.integers(0, max_size))
    clocks = dict.fromkeys(VEHICLES, T0)
    readings: list[Reading] = []
    for _ in range(n):
        vehicle = draw(st.sampled_from(VEHICLES))
        clocks[vehicle] += draw(intervals)
        ts = clocks[vehicle]
        if disorder and readings and draw(st.integers(0, 9)) == 0:
            ts = draw(st.sampled_from([r.ts for r in readings])) + draw(
                st.sampled_from([0.0, -0.5, 0.5])
            )
        readings.append(Reading(vehicle, ts, draw(speeds)))
    return readings


def run_stream(
    params: TrackerParams, readings: Iterable[Reading], finish: bool = True
) -> list[Record]:
    fleet = Fleet(params)
    out: list[Record] = []
    seen: dict[str, None] = {}
    for reading in readings:
        seen.setdefault(reading.vehicle_id)
        out.extend(fleet.update(reading))
    if finish:
        for vehicle_id in seen:
            out.extend(fleet.finish(vehicle_id))
    return out


def run_batch(params: TrackerParams, readings: Sequence[Reading], finish: bool = True):
    return process_batch(
        [r.vehicle_id for r in readings],
        [r.ts for r in readings],
        [r.speed_mps for r in readings],
        params,
        finish=finish,
    )


def per_vehicle(records: Iterable[Record], kind: type, vehicle_id: str) -> list:
    return [r for r in records if type(r) is kind and r.vehicle_id == vehicle_id]


def close(a: object, b: object) -> bool:
    """Equal, floats within 1e-9 relative (and 1e-9 absolute near zero)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def same_records(expected: Sequence[Record], got: Sequence[Record]) -> bool:
    if len(expected) != len(got):
        return False
    for e, g in zip(expected, got, strict=True):
        if type(e) is not type(g):
            return False
        for f in dataclasses.fields(e):
            if not close(getattr(e, f.name), getattr(g, f.name)):
                return False
    return True


RECORD_KINDS = (Kinematics, TripSummary, HarshEvent, Rejection)
__all__ = ["RECORD_KINDS", "Duplicate"]
