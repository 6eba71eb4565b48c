"""The batch path's inputs (grouped by vehicle) and the estimator pass over candidates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kinestream.core.arrays import BoolArray, FloatArray, IntArray
from kinestream.core.estimators import BatchEstimate, BatchFunction
from kinestream.core.params import TrackerParams
from kinestream.core.prepared import Prepared


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
    estimate: BatchFunction
    starts: IntArray  # index of each vehicle's first reading in the grouped input


@dataclass(slots=True)
class Plan:
    """Candidate committed readings with their intervals, estimates and step violations."""

    pos: IntArray | None  # positions in the grouped input; None: all of them
    ts: FloatArray
    speed_mps: FloatArray  # clamped
    vehicle_start: BoolArray
    dt_s: FloatArray  # NaN at a vehicle's first reading
    continuing: BoolArray
    acceleration_mps2: FloatArray
    acceleration_sigma_mps2: FloatArray
    jerk_mps3: FloatArray
    predicted_mps: FloatArray  # these two: empty when nothing violates the step check
    predicted_sigma_mps: FloatArray
    violation: BoolArray
    starts: IntArray  # index of each vehicle's first reading
    restarts: IntArray  # where ``continuing`` is False: vehicle starts and long gaps
    clamped: BoolArray  # the raw speed was negative (clamped to 0)


def take(values: np.ndarray, positions: IntArray | None) -> np.ndarray:
    """``values[positions]`` for sorted unique positions (None: all); no copy for all."""
    if positions is None or positions.shape[0] == values.shape[0]:
        return values
    return values[positions]


def group_by_vehicle(codes: IntArray, readings: IntArray) -> tuple[IntArray, IntArray] | None:
    """The stable grouping permutation and the grouped codes; None when already grouped.

    One sort of (code, arrival index) packed into one unsigned integer: unique keys, so any
    sort is stable, and numpy's SIMD sort of 32/64-bit integers is ~4x a stable argsort of the
    codes. The grouped codes are the keys' high bits.
    """
    n = codes.shape[0]
    if n < 2 or not (codes[1:] < codes[:-1]).any():
        return None
    bits = int(n - 1).bit_length()
    key_type = np.uint32 if readings.shape[0] << bits <= 1 << 32 else np.uint64
    key = codes.astype(key_type)
    key <<= key_type(bits)
    key |= np.arange(n, dtype=key_type)
    key.sort()
    grouped = (key >> key_type(bits)).astype(np.intp)
    key &= key_type((1 << bits) - 1)
    return key.astype(np.intp), grouped


def vehicle_starts(codes: IntArray) -> IntArray:
    """Index of each vehicle's first reading in grouped ``codes``."""
    if not codes.shape[0]:
        return np.empty(0, dtype=np.intp)
    changes = np.flatnonzero(codes[1:] != codes[:-1])
    starts = np.empty(changes.shape[0] + 1, dtype=np.intp)
    starts[0] = 0
    np.add(changes, 1, out=starts[1:])
    return starts


def plan_for(inp: BatchInput, positions: IntArray | None) -> Plan:
    """Candidate committed readings with intervals, estimates and step violations."""
    p = inp.p
    ts = take(inp.ts, positions)
    raw = take(inp.raw_speed, positions)
    negative = raw < 0.0
    if negative.any():  # the stream's ``if speed < 0.0: speed = 0.0`` (-0.0 stays -0.0)
        speed = raw.copy()
        speed[negative] = 0.0
    else:
        speed = raw
    n = ts.shape[0]
    if positions is None or positions.shape[0] == inp.ts.shape[0]:
        starts = inp.starts
    else:
        starts = vehicle_starts(take(inp.codes, positions))
    vehicle_start = np.zeros(n, dtype=bool)
    vehicle_start[starts] = True
    dt_s = np.empty_like(ts)
    np.subtract(ts[1:], ts[:-1], out=dt_s[1:])
    dt_s[starts] = np.nan
    continuing = dt_s <= p.max_gap_s
    restarts = np.flatnonzero(~continuing)
    est = inp.estimate(ts, speed, ~continuing, inp.params.estimator, dt_s=dt_s)
    violation = _step_violations(p, speed, dt_s, continuing, est)
    predicted, predicted_sigma = est.predicted_speed_mps, est.predicted_sigma_mps
    if not violation.any():  # only a step rejection's message needs them: let them go
        predicted = predicted_sigma = np.empty(0)
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
        predicted_sigma,
        violation,
        starts,
        restarts,
        negative,
    )


def _step_violations(
    p: Prepared, speed: FloatArray, dt_s: FloatArray, continuing: BoolArray, est: BatchEstimate
) -> BoolArray:
    """``continuing & (|speed - predicted| > max_accel·Δt + allowance + sigmas·σ)``.

    The bound is never below the allowance (Δt > 0 between committed readings, σ ≥ 0, and
    rounding is monotonic), so only readings whose miss exceeds the allowance are checked
    in full: on real data a small share, and the full bound is computed for those alone.
    """
    with np.errstate(invalid="ignore"):
        miss = np.subtract(speed, est.predicted_speed_mps)
        np.abs(miss, out=miss)
        if p.max_accel_mps2 >= 0.0 and p.step_sigmas >= 0.0:
            suspects = np.flatnonzero(miss > p.step_allowance_mps)
        else:
            suspects = np.arange(speed.shape[0])
        violation = np.zeros(speed.shape[0], dtype=bool)
        if not suspects.shape[0]:
            return violation
        bound = (
            p.max_accel_mps2 * dt_s[suspects]
            + p.step_allowance_mps
            + p.step_sigmas * est.predicted_sigma_mps[suspects]
        )
        violation[suspects] = continuing[suspects] & (miss[suspects] > bound)
    return violation
