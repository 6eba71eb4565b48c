"""Harsh acceleration and harsh braking: estimated acceleration beyond a threshold, long enough.

An event begins at a reading whose acceleration reaches the entry threshold and continues
while it stays beyond the exit threshold (a fraction of the entry one: hysteresis, so noise
around the threshold does not split one manoeuvre into many). The acceleration at a reading
describes the interval ending there, so an event starts at the reading before the first one
over the threshold (unless that interval was a gap) and ends at the last one still over the
exit threshold; it is reported when it ends if it lasted ``harsh_min_duration_s``.
``peak_g`` is signed: positive for acceleration, negative for braking.
"""

from __future__ import annotations

from array import array

from kinestream.core.layout import (
    HARSH_LAST_TS,
    HARSH_PEAK,
    HARSH_START_SPEED,
    HARSH_START_TS,
    HARSH_STATE,
    TRIP_HARSH_ACCELERATIONS,
    TRIP_HARSH_BRAKINGS,
    TRIP_STATE,
)
from kinestream.core.prepared import Prepared
from kinestream.core.records import HarshEvent
from kinestream.core.trips import IDLE
from kinestream.core.units import STANDARD_GRAVITY_MPS2

NONE, ACCELERATING, BRAKING = 0.0, 1.0, -1.0
HARSH_ACCELERATION = "harsh_acceleration"
HARSH_BRAKING = "harsh_braking"


def ends(slots: array[float], accel_mps2: float | None, p: Prepared) -> bool:
    """True when this reading's acceleration ends the event in progress."""
    state = slots[HARSH_STATE]
    if state == NONE:
        return False
    if accel_mps2 is None:
        return True
    if state == ACCELERATING:
        return accel_mps2 < p.harsh_exit_accel_mps2
    return accel_mps2 > p.harsh_exit_brake_mps2


def extend_or_begin(  # noqa: PLR0917 (hot path: positional is cheaper)
    slots: array[float],
    ts: float,
    accel_mps2: float,
    start_ts: float,
    start_speed_mps: float,
    p: Prepared,
) -> None:
    """Extend the event in progress, or begin one if ``accel_mps2`` reaches a threshold.

    Call after ``ends`` (and ``finish`` when it said so), with the interval's start.
    """
    state = slots[HARSH_STATE]
    if state == ACCELERATING:
        slots[HARSH_LAST_TS] = ts
        slots[HARSH_PEAK] = max(slots[HARSH_PEAK], accel_mps2)
    elif state == BRAKING:
        slots[HARSH_LAST_TS] = ts
        slots[HARSH_PEAK] = min(slots[HARSH_PEAK], accel_mps2)
    elif accel_mps2 >= p.harsh_enter_accel_mps2:
        _begin(slots, ACCELERATING, ts, accel_mps2, start_ts, start_speed_mps)
    elif accel_mps2 <= p.harsh_enter_brake_mps2:
        _begin(slots, BRAKING, ts, accel_mps2, start_ts, start_speed_mps)


def _begin(  # noqa: PLR0917 (hot path)
    slots: array[float],
    state: float,
    ts: float,
    accel_mps2: float,
    start_ts: float,
    start_speed_mps: float,
) -> None:
    slots[HARSH_STATE] = state
    slots[HARSH_START_TS] = start_ts
    slots[HARSH_START_SPEED] = start_speed_mps
    slots[HARSH_PEAK] = accel_mps2
    slots[HARSH_LAST_TS] = ts


def active(slots: array[float]) -> bool:
    return slots[HARSH_STATE] != NONE


def finish(
    slots: array[float], p: Prepared, vehicle_id: str, trip_id: str | None
) -> HarshEvent | None:
    """End the event in progress; it is reported (and counted in the open trip) if long enough."""
    state = slots[HARSH_STATE]
    slots[HARSH_STATE] = NONE
    if state == NONE:
        return None
    start_ts = slots[HARSH_START_TS]
    end_ts = slots[HARSH_LAST_TS]
    if end_ts - start_ts < p.harsh_min_duration_s:
        return None
    accelerating = state == ACCELERATING
    if slots[TRIP_STATE] != IDLE:
        slots[TRIP_HARSH_ACCELERATIONS if accelerating else TRIP_HARSH_BRAKINGS] += 1.0
    return HarshEvent(
        vehicle_id=vehicle_id,
        type=HARSH_ACCELERATION if accelerating else HARSH_BRAKING,
        start_ts=start_ts,
        end_ts=end_ts,
        peak_g=slots[HARSH_PEAK] / STANDARD_GRAVITY_MPS2,
        speed_at_start_mps=slots[HARSH_START_SPEED],
        trip_id=trip_id if slots[TRIP_STATE] != IDLE else None,
    )
