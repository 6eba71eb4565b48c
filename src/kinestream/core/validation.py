"""Stateless checks of one reading: non-finite, speed range, timestamp sanity.

Each check returns ``None`` when the reading passes or a ``Rejection`` naming the values, so
callers never catch exceptions on the hot path. Speeds between ``min_speed_mps`` and 0 are
sensor noise: they pass and the tracker clamps them to 0 (flag ``clamped``).
"""

from __future__ import annotations

import math

from kinestream.core.params import TrackerParams
from kinestream.core.records import Reading, Rejection, RejectReason

CLAMPED_FLAG = "clamped"


def check_reading(reading: Reading, params: TrackerParams) -> Rejection | None:
    """The first rule ``reading`` breaks, or ``None``; the order is fixed (finite, time, speed)."""
    ts = reading.ts
    speed_mps = reading.speed_mps
    if not (math.isfinite(ts) and math.isfinite(speed_mps)):
        return _reject(reading, RejectReason.NON_FINITE, f"ts {ts!r} / speed {speed_mps!r} m/s")
    if ts >= params.max_timestamp_s:
        return _reject(
            reading,
            RejectReason.TIMESTAMP_MILLISECONDS,
            f"timestamp {ts!r} looks like milliseconds (at or above {params.max_timestamp_s!r} s)",
        )
    if ts < params.min_timestamp_s:
        return _reject(
            reading,
            RejectReason.TIMESTAMP_TOO_OLD,
            f"timestamp {ts!r} is before {params.min_timestamp_s!r} (2000-01-01 by default)",
        )
    return check_speed(reading, params)


def check_speed(reading: Reading, params: TrackerParams) -> Rejection | None:
    speed_mps = reading.speed_mps
    if speed_mps < params.min_speed_mps:
        return _reject(
            reading,
            RejectReason.SPEED_NEGATIVE,
            f"speed {speed_mps!r} m/s is below {params.min_speed_mps!r} m/s",
        )
    if speed_mps > params.max_speed_mps:
        return _reject(
            reading,
            RejectReason.SPEED_TOO_HIGH,
            f"speed {speed_mps!r} m/s is above {params.max_speed_mps!r} m/s",
        )
    return None


def check_not_future(reading: Reading, received_at: float, max_future_s: float) -> Rejection | None:
    """Refuse an event time more than ``max_future_s`` after the host's receive time."""
    ahead_s = reading.ts - received_at
    if ahead_s > max_future_s:
        return _reject(
            reading,
            RejectReason.TIMESTAMP_IN_FUTURE,
            f"timestamp {reading.ts!r} is {ahead_s:.3f} s after its receive time "
            f"{received_at!r} (bound {max_future_s!r} s)",
        )
    return None


def step_bound_mps(dt_s: float, sigma_mps: float, params: TrackerParams) -> float:
    """Largest |speed - predicted speed| physics plus sensor noise can explain after ``dt_s``."""
    return (
        params.max_accel_mps2 * dt_s
        + params.step_noise_allowance_mps
        + params.step_noise_sigmas * sigma_mps
    )


def step_rejection(
    reading: Reading, predicted_mps: float, bound_mps: float, dt_s: float
) -> Rejection:
    return _reject(
        reading,
        RejectReason.IMPLAUSIBLE_STEP,
        f"speed {reading.speed_mps!r} m/s is {abs(reading.speed_mps - predicted_mps):.3f} m/s "
        f"from the predicted {predicted_mps:.3f} m/s after {dt_s:.3f} s "
        f"(bound {bound_mps:.3f} m/s)",
    )


def late_rejection(reading: Reading, last_committed_ts: float, bound_s: float) -> Rejection:
    late_s = round(last_committed_ts - reading.ts, 6)
    message = (
        f"timestamp {reading.ts!r} is before the last committed {last_committed_ts!r} "
        f"for vehicle {reading.vehicle_id!r} (late by {late_s!r} s, bound {bound_s!r} s)"
    )
    return Rejection(reading.vehicle_id, reading.ts, RejectReason.LATE, message)


def _reject(reading: Reading, reason: RejectReason, detail: str) -> Rejection:
    message = f"{detail} for vehicle {reading.vehicle_id!r}"
    ts = reading.ts if math.isfinite(reading.ts) else None
    return Rejection(reading.vehicle_id, ts, reason, message)
