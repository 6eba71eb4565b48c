"""Thresholds derived from ``TrackerParams`` once per configuration, not once per reading
(nor once per vehicle: ``Fleet`` prepares its params once and hands the result to every
``Tracker`` it makes, so a new vehicle does not hash the params for the cache lookup)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import lru_cache

from kinestream.core.estimators import AccelerationEstimator, make_estimator
from kinestream.core.params import TrackerParams
from kinestream.core.units import STANDARD_GRAVITY_MPS2

_LARGEST = sys.float_info.max


@dataclass(frozen=True, slots=True)
class Prepared:
    params: TrackerParams
    # Validation bounds, finite so that one chained comparison also rejects ±inf and NaN.
    min_ts: float
    max_ts: float
    min_speed_mps: float
    max_speed_mps: float
    reorder_bound_s: float
    duplicate_memory: int
    min_gap_s: float
    max_gap_s: float
    max_accel_mps2: float
    step_allowance_mps: float
    step_sigmas: float
    trip_start_speed_mps: float
    trip_stop_speed_mps: float
    trip_end_stop_s: float
    harsh_enter_accel_mps2: float  # positive
    harsh_exit_accel_mps2: float
    harsh_enter_brake_mps2: float  # negative: braking is acceleration below this
    harsh_exit_brake_mps2: float
    harsh_min_duration_s: float
    # Never updated itself: each new or restored vehicle gets ``estimator_prototype.fresh()``.
    estimator_prototype: AccelerationEstimator = field(compare=False, repr=False)


@lru_cache(maxsize=8)
def prepare(params: TrackerParams) -> Prepared:
    enter_accel = params.harsh_acceleration_g * STANDARD_GRAVITY_MPS2
    enter_brake = -params.harsh_braking_g * STANDARD_GRAVITY_MPS2
    return Prepared(
        params=params,
        min_ts=max(params.min_timestamp_s, -_LARGEST),
        max_ts=min(params.max_timestamp_s, _LARGEST),
        min_speed_mps=max(params.min_speed_mps, -_LARGEST),
        max_speed_mps=min(params.max_speed_mps, _LARGEST),
        reorder_bound_s=params.reorder_bound_s,
        duplicate_memory=params.duplicate_memory,
        min_gap_s=params.min_gap_s,
        max_gap_s=params.max_gap_s,
        max_accel_mps2=params.max_accel_mps2,
        step_allowance_mps=params.step_noise_allowance_mps,
        step_sigmas=params.step_noise_sigmas,
        trip_start_speed_mps=params.trip_start_speed_mps,
        trip_stop_speed_mps=params.trip_stop_speed_mps,
        trip_end_stop_s=params.trip_end_stop_s,
        harsh_enter_accel_mps2=enter_accel,
        harsh_exit_accel_mps2=enter_accel * params.harsh_exit_fraction,
        harsh_enter_brake_mps2=enter_brake,
        harsh_exit_brake_mps2=enter_brake * params.harsh_exit_fraction,
        harsh_min_duration_s=params.harsh_min_duration_s,
        estimator_prototype=make_estimator(params.estimator),
    )
