"""process_batch on hand-checkable inputs (the property tests compare it with the stream)."""

import math

import numpy as np

from kinestream.core.batch import process_batch

from .helpers import T0, params


def test_columns_for_one_vehicle():
    """Trapezoid distance, Δv/Δt, the trip id and the input index of each row."""
    result = process_batch("v", T0 + np.arange(4.0), [0.0, 3.0, 6.0, 6.0], params())
    assert result.distance_m.tolist() == [0.0, 1.5, 6.0, 12.0]
    assert math.isnan(result.acceleration_mps2[0])
    assert result.acceleration_mps2[1:].tolist() == [3.0, 3.0, 0.0]
    assert result.index.tolist() == [0, 1, 2, 3]
    assert result.trip.tolist() == [-1, 0, 0, 0]  # 3 m/s is above the 2 m/s start speed
    assert result.trip_ids == [f"v-{round((T0 + 1) * 1000)}"]
    (trip,) = result.trips
    assert (trip.distance_m, trip.end_reason) == (10.5, "end_of_data")


def test_rows_are_grouped_by_vehicle_in_first_appearance_order():
    """Interleaved arrivals come out per vehicle, with each row's input index."""
    ids = ["b", "a", "b", "a"]
    result = process_batch(ids, [T0, T0, T0 + 1, T0 + 1], [1.0, 2.0, 1.0, 2.0], params())
    assert result.vehicle_ids == ["b", "a"]
    assert result.index.tolist() == [0, 2, 1, 3]
    assert result.distance_m.tolist() == [0.0, 1.0, 0.0, 2.0]


def test_invalid_readings_are_counted_and_explained():
    """Rejected readings give no row, a Rejection each and a per-vehicle count."""
    result = process_batch("v", [T0, T0 + 1, T0 + 2], [1.0, 130.0, math.nan], params())
    assert len(result) == 1
    assert [r.reason.value for r in result.rejections] == ["speed_too_high", "non_finite"]
    assert result.rejected.tolist() == [2] and result.readings.tolist() == [3]


def test_duplicates_are_counted():
    """A repeated timestamp is a duplicate: counted, no row, nothing else changes."""
    result = process_batch("v", [T0, T0 + 1, T0 + 1, T0 + 2], [1.0, 1.0, 1.0, 1.0], params())
    assert result.duplicates.tolist() == [1] and len(result) == 3


def test_step_violation_is_dropped_like_the_stream():
    """An impossible spike is rejected and the reading after it is judged without it."""
    result = process_batch("v", T0 + np.arange(4.0), [10.0, 40.0, 11.0, 12.0], params())
    assert result.ts.tolist() == [T0, T0 + 2, T0 + 3]
    (rejection,) = result.rejections
    assert rejection.reason.value == "implausible_step" and rejection.ts == T0 + 1
    assert result.distance_m.tolist() == [0.0, 21.0, 32.5]


def test_empty_input():
    """No readings: no rows, no vehicles."""
    result = process_batch([], [], [], params())
    assert len(result) == 0 and result.vehicle_ids == [] and result.trips == []


def test_late_reading_is_rejected_with_the_commit_point():
    """Out of order with bound 0: the older reading is LATE, named against the commit point."""
    result = process_batch("v", [T0, T0 + 2, T0 + 1, T0 + 3], [1.0, 1.0, 1.0, 1.0], params())
    assert result.ts.tolist() == [T0, T0 + 2, T0 + 3]
    (late,) = result.rejections
    assert late.reason.value == "late" and f"last committed {T0 + 2!r}" in late.message
