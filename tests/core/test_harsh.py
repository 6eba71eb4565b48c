"""Harsh acceleration / braking detection through the tracker (exact `difference` numbers)."""

import math

from kinestream.core.records import HarshEvent, TripSummary
from kinestream.core.tracker import Tracker

from .helpers import T0, of_type, params, readings


def events(speeds, dt=1.0, **overrides):
    tracker = Tracker("v", params(**overrides))
    out = [r for reading in readings(speeds, "v", dt=dt) for r in tracker.update(reading)]
    return out + tracker.finish()


def test_harsh_acceleration_over_threshold_for_one_interval():
    """+4 m/s² (0.41 g > 0.37 g) over one 1 s interval is an event of 1 s."""
    (event,) = of_type(events([5, 5, 9, 9]), HarshEvent)
    assert event.type == "harsh_acceleration"
    assert (event.start_ts, event.end_ts, event.speed_at_start_mps) == (T0 + 1, T0 + 2, 5.0)
    assert math.isclose(event.peak_g, 4.0 / 9.80665)


def test_below_threshold_is_no_event():
    """+3.5 m/s² is 0.357 g: below the 0.37 g threshold."""
    assert not of_type(events([5, 5, 8.5, 8.5]), HarshEvent)


def test_hysteresis_keeps_one_event_through_a_dip():
    """3.8 then 3.2 (above 0.8 × threshold) then 3.8 m/s²: one event, not two."""
    (event,) = of_type(events([5, 5, 8.8, 12.0, 15.8, 15.8]), HarshEvent)
    assert (event.start_ts, event.end_ts) == (T0 + 1, T0 + 4)


def test_event_counts_in_its_trip_and_names_it():
    """The event carries the open trip's id and the trip counts it."""
    out = events([5, 5, 9, 9, 0] + [0] * 5)  # +4 m/s² for 1 s, then 9 → 0 is -9 m/s²
    accelerating, braking = of_type(out, HarshEvent)
    (trip,) = of_type(out, TripSummary)
    assert (accelerating.type, braking.type) == ("harsh_acceleration", "harsh_braking")
    assert accelerating.trip_id == braking.trip_id == trip.trip_id
    assert (trip.harsh_accelerations, trip.harsh_brakings) == (1, 1)


def test_braking_threshold_is_separate():
    """-3.7 m/s² is 0.377 g: harsh acceleration would count it, braking (0.38 g) does not."""
    assert not of_type(events([10, 10, 6.3, 6.3]), HarshEvent)
    (event,) = of_type(events([10, 10, 6.2, 6.2]), HarshEvent)
    assert event.type == "harsh_braking" and event.peak_g < 0


def test_min_duration_counts_from_the_interval_start():
    """At 10 Hz, 0.4 s over the threshold is too short; 0.5 s is an event."""
    ramp = [10.0] * 3
    short = ramp + [10.4, 10.8, 11.2, 11.6] + [11.6] * 3  # 4 readings: 0.4 s of +4 m/s²
    long = ramp + [10.4, 10.8, 11.2, 11.6, 12.0] + [12.0] * 3  # 5 readings: 0.5 s
    assert not of_type(events(short, dt=0.1), HarshEvent)
    (event,) = of_type(events(long, dt=0.1), HarshEvent)
    assert math.isclose(event.end_ts - event.start_ts, 0.5)
