"""The batch path's inputs (grouped by vehicle) and the estimator pass over candidates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kinestream.core.estimators import BatchEstimate
from kinestream.core.params import EstimatorParams, TrackerParams
from kinestream.core.prepared import Prepared

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class BatchInput:
    """One ``process_batch`` call's readings, grouped by vehicle (stable: arrival order kept)."""

    p: Prepared
    params: TrackerParams
    names: list[str]
    order: IntArray  # grouped position -> input index
    codes: IntArray
    ts: FloatArray
    raw_speed: FloatArray  # as given (validation and clamping come later)
    flags: Sequence[tuple[str, ...]] | None
    finish: bool
    estimate: Callable[[FloatArray, FloatArray, BoolArray, EstimatorParams], BatchEstimate]


@dataclass(slots=True)
class Plan:
    """Candidate committed readings with their intervals, estimates and step violations."""

    pos: IntArray  # positions in the grouped input
    ts: FloatArray
    speed_mps: FloatArray  # clamped
    vehicle_start: BoolArray
    dt_s: FloatArray  # NaN at a vehicle's first reading
    continuing: BoolArray
    acceleration_mps2: FloatArray
    acceleration_sigma_mps2: FloatArray
    jerk_mps3: FloatArray
    predicted_mps: FloatArray
    predicted_sigma_mps: FloatArray
    violation: BoolArray


def take(values: np.ndarray, positions: IntArray) -> np.ndarray:
    """``values[positions]`` for sorted unique positions; no copy when they are all of them."""
    return values if positions.shape[0] == values.shape[0] else values[positions]


def plan_for(inp: BatchInput, positions: IntArray) -> Plan:
    """Candidate committed readings with intervals, estimates and step violations."""
    p = inp.p
    ts = take(inp.ts, positions)
    raw = take(inp.raw_speed, positions)
    speed = np.where(raw < 0.0, 0.0, raw)
    codes = take(inp.codes, positions)
    vehicle_start = np.ones(ts.shape[0], dtype=bool)
    vehicle_start[1:] = codes[1:] != codes[:-1]
    dt_s = np.empty_like(ts)
    dt_s[:1] = np.nan
    dt_s[1:] = ts[1:] - ts[:-1]
    dt_s[vehicle_start] = np.nan
    continuing = dt_s <= p.max_gap_s
    est = inp.estimate(ts, speed, ~continuing, inp.params.estimator)
    predicted = est.predicted_speed_mps
    with np.errstate(invalid="ignore"):
        bound = (
            p.max_accel_mps2 * dt_s + p.step_allowance_mps + p.step_sigmas * est.predicted_sigma_mps
        )
        violation = continuing & (np.abs(speed - predicted) > bound)
    return Plan(
        positions,
        ts,
        speed,
        vehicle_start,
        dt_s,
        continuing,
        est.acceleration_mps2,
        est.acceleration_sigma_mps2,
        est.jerk_mps3,
        predicted,
        est.predicted_sigma_mps,
        violation,
    )
