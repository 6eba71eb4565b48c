"""Trips as a state table: idle → moving ⇄ stopped → (ended) idle.

Each committed reading is classified by speed (slow < stop speed ≤ cruise ≤ start speed < fast)
and the table below says where the trip goes and what to do. A trip ends outside the table,
when a deadline passes in event time (``due_reason``): ``trip_end_stop_s`` after the vehicle
came to rest, or a gap longer than ``max_gap_s``; the earlier deadline names the reason, so the
same trip record comes out whether a later reading or ``tick`` noticed it.

A trip holds the readings from the first fast one (its ``start_ts``) until it ends; it ends at
the moment the vehicle came to rest if it was stopped, else at its last reading. ``stops``
counts the rests the trip resumed from (not the final one).
"""

from __future__ import annotations

import math
from array import array

from kinestream.core.integrator import compensated, neumaier_add
from kinestream.core.layout import (
    BRIDGED_COMP,
    BRIDGED_SUM,
    LAST_TS,
    STOP_SINCE_TS,
    TRIP_COMP,
    TRIP_HARSH_ACCELERATIONS,
    TRIP_HARSH_BRAKINGS,
    TRIP_MAX_ACCEL,
    TRIP_MAX_SPEED,
    TRIP_MIN_ACCEL,
    TRIP_START_TS,
    TRIP_STATE,
    TRIP_STOPS,
    TRIP_SUM,
)
from kinestream.core.prepared import Prepared
from kinestream.core.records import TripSummary

IDLE, MOVING, STOPPED = 0, 1, 2
SLOW, CRUISE, FAST = 0, 1, 2
START, STOP, RESUME = "start", "stop", "resume"

TRANSITIONS: dict[tuple[int, int], tuple[int, str | None]] = {
    (IDLE, SLOW): (IDLE, None),
    (IDLE, CRUISE): (IDLE, None),
    (IDLE, FAST): (MOVING, START),
    (MOVING, SLOW): (STOPPED, STOP),
    (MOVING, CRUISE): (MOVING, None),
    (MOVING, FAST): (MOVING, None),
    (STOPPED, SLOW): (STOPPED, None),
    (STOPPED, CRUISE): (MOVING, RESUME),
    (STOPPED, FAST): (MOVING, RESUME),
}
# The same table flattened for the hot path: index state * 3 + speed class.
_TABLE = tuple(TRANSITIONS[(state, cls)] for state in (IDLE, MOVING, STOPPED) for cls in range(3))

END_STOPPED = "stopped"
END_GAP = "gap"
END_OF_DATA = "end_of_data"


def speed_class(speed_mps: float, p: Prepared) -> int:
    if speed_mps > p.trip_start_speed_mps:
        return FAST
    return SLOW if speed_mps < p.trip_stop_speed_mps else CRUISE


def trip_id_for(vehicle_id: str, start_ts: float) -> str:
    """Deterministic: replays and restarts give the same id (start time in milliseconds)."""
    return f"{vehicle_id}-{round(start_ts * 1000.0)}"


def step(  # noqa: PLR0912, PLR0917 (hot path, one call per reading: positional, inlined)
    slots: array[float],
    ts: float,
    speed_mps: float,
    accel_mps2: float | None,
    increment_m: float,
    bridged: bool,
    p: Prepared,
) -> bool:
    """Apply one committed reading; True when it starts a trip."""
    state = int(slots[TRIP_STATE])
    if speed_mps > p.trip_start_speed_mps:  # speed_class, inlined: this runs per reading
        cls = FAST
    else:
        cls = SLOW if speed_mps < p.trip_stop_speed_mps else CRUISE
    next_state, action = _TABLE[state * 3 + cls]
    if next_state != state:
        slots[TRIP_STATE] = next_state
    if action is START:
        _open(slots, ts, speed_mps, accel_mps2)
        return True
    if state != IDLE:
        # Neumaier add of a non-negative increment to a non-negative sum (integrator.py, inlined).
        total = slots[TRIP_SUM]
        new_total = total + increment_m
        if total >= increment_m:
            slots[TRIP_COMP] += (total - new_total) + increment_m
        else:
            slots[TRIP_COMP] += (increment_m - new_total) + total
        slots[TRIP_SUM] = new_total
        if bridged:
            neumaier_add(slots, BRIDGED_SUM, increment_m)
        # max() exactly (it keeps the first unless beaten) without its call, per reading.
        if speed_mps > slots[TRIP_MAX_SPEED]:  # noqa: PLR1730
            slots[TRIP_MAX_SPEED] = speed_mps
        if accel_mps2 is not None:
            # ``not <=`` so that a NaN (no estimate yet) is replaced by the first real value.
            if not accel_mps2 <= slots[TRIP_MAX_ACCEL]:
                slots[TRIP_MAX_ACCEL] = accel_mps2
            if not accel_mps2 >= slots[TRIP_MIN_ACCEL]:
                slots[TRIP_MIN_ACCEL] = accel_mps2
        if action is STOP:
            slots[STOP_SINCE_TS] = ts
        elif action is RESUME:
            slots[TRIP_STOPS] += 1.0
    return False


def _open(slots: array[float], ts: float, speed_mps: float, accel_mps2: float | None) -> None:
    for index in (
        TRIP_SUM,
        TRIP_COMP,
        BRIDGED_SUM,
        BRIDGED_COMP,
        TRIP_STOPS,
    ):
        slots[index] = 0.0
    slots[TRIP_HARSH_ACCELERATIONS] = slots[TRIP_HARSH_BRAKINGS] = 0.0
    slots[TRIP_START_TS] = ts
    slots[STOP_SINCE_TS] = math.nan
    slots[TRIP_MAX_SPEED] = speed_mps
    accel = math.nan if accel_mps2 is None else accel_mps2
    slots[TRIP_MAX_ACCEL] = slots[TRIP_MIN_ACCEL] = accel


def due_reason(slots: array[float], t: float, p: Prepared) -> str | None:
    """Why the open trip has ended by event time ``t``, or None (idle, or still going)."""
    state = slots[TRIP_STATE]
    if state == IDLE:
        return None
    gap_deadline = slots[LAST_TS] + p.max_gap_s  # due strictly after it
    stop_deadline = slots[STOP_SINCE_TS] + p.trip_end_stop_s if state == STOPPED else math.inf
    if t > gap_deadline and not stop_deadline <= gap_deadline:
        return END_GAP
    if t >= stop_deadline:
        return END_STOPPED
    return None


def deadline(slots: array[float], p: Prepared) -> float | None:
    """Earliest event time at which ``due_reason`` answers, or None while idle."""
    state = slots[TRIP_STATE]
    if state == IDLE:
        return None
    gap_due = math.nextafter(slots[LAST_TS] + p.max_gap_s, math.inf)
    if state == STOPPED:
        return min(gap_due, slots[STOP_SINCE_TS] + p.trip_end_stop_s)
    return gap_due


def in_trip(slots: array[float]) -> bool:
    return slots[TRIP_STATE] != IDLE


def close(slots: array[float], vehicle_id: str, trip_id: str, reason: str) -> TripSummary:
    """End the open trip: its summary, and the table back to idle."""
    start_ts = slots[TRIP_START_TS]
    stopped = slots[TRIP_STATE] == STOPPED
    end_ts = slots[STOP_SINCE_TS] if stopped else slots[LAST_TS]
    summary = TripSummary(
        vehicle_id=vehicle_id,
        trip_id=trip_id,
        start_ts=start_ts,
        end_ts=end_ts,
        duration_s=end_ts - start_ts,
        distance_m=compensated(slots, TRIP_SUM),
        bridged_distance_m=compensated(slots, BRIDGED_SUM),
        max_speed_mps=slots[TRIP_MAX_SPEED],
        max_acceleration_mps2=_optional(slots[TRIP_MAX_ACCEL]),
        max_deceleration_mps2=_optional(slots[TRIP_MIN_ACCEL]),
        stops=int(slots[TRIP_STOPS]),
        harsh_accelerations=int(slots[TRIP_HARSH_ACCELERATIONS]),
        harsh_brakings=int(slots[TRIP_HARSH_BRAKINGS]),
        end_reason=reason,
    )
    slots[TRIP_STATE] = IDLE
    return summary


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else value
