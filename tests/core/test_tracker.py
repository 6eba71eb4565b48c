"""One vehicle's tracker, with the exact `difference` estimator so numbers are hand-checkable."""

import math

from kinestream.core.records import (
    Duplicate,
    HarshEvent,
    Kinematics,
    Reading,
    Rejection,
    RejectReason,
    TripSummary,
)
from kinestream.core.tracker import Tracker

from .helpers import T0, kinematics, of_type, params, readings


def feed(tracker, items):
    out = []
    for reading in items:
        out.extend(tracker.update(reading))
    return out


def test_trapezoid_distance_and_difference_acceleration():
    """Distance is the trapezoid of speed; acceleration Δv/Δt; jerk from the second reading on."""
    out = kinematics(feed(Tracker("truck-7", params()), readings([0, 2, 6])))
    assert [k.distance_m for k in out] == [0.0, 1.0, 5.0]
    assert [k.acceleration_mps2 for k in out] == [None, 2.0, 4.0]
    assert [k.jerk_mps3 for k in out] == [None, None, 2.0]


def test_late_reading_is_rejected_with_values_and_changes_nothing():
    """Older than the commit point (and not a duplicate) → LATE with the documented message."""
    tracker = Tracker("truck-7", params(duplicate_memory=1))
    feed(tracker, [Reading("truck-7", T0 + 12.0, 1.0), Reading("truck-7", T0 + 15.0, 1.0)])
    before = tracker.export_state()
    (rejection,) = tracker.update(Reading("truck-7", T0 + 12.5, 1.0))
    assert isinstance(rejection, Rejection) and rejection.reason is RejectReason.LATE
    assert rejection.message == (
        "timestamp 1767225612.5 is before the last committed 1767225615.0 for vehicle "
        "'truck-7' (late by 2.5 s, bound 0.0 s)"
    )
    assert tracker.export_state() == before


def test_duplicate_is_counted_and_changes_nothing():
    """A timestamp already committed gives a Duplicate record and leaves the state as it was."""
    tracker = Tracker("truck-7", params())
    feed(tracker, readings([1, 2, 3]))
    before = tracker.export_state()
    assert tracker.update(Reading("truck-7", T0 + 1.0, 9.0)) == [Duplicate("truck-7", T0 + 1.0)]
    assert tracker.export_state() == before


def test_negative_noise_is_clamped_and_flagged():
    """-0.3 m/s counts as 0 m/s with the `clamped` flag."""
    (k,) = Tracker("v", params()).update(Reading("v", T0, -0.3))
    assert isinstance(k, Kinematics) and k.speed_mps == 0.0 and k.flags == ("clamped",)


def test_impossible_step_is_rejected_and_changes_nothing():
    """0 → 30 m/s in one second exceeds 15 m/s² plus the 1.5 m/s allowance."""
    tracker = Tracker("v", params())
    feed(tracker, readings([0.0], "v"))
    before = tracker.export_state()
    (rejection,) = tracker.update(Reading("v", T0 + 1.0, 30.0))
    assert isinstance(rejection, Rejection) and rejection.reason is RejectReason.IMPLAUSIBLE_STEP
    assert tracker.export_state() == before
    (ok,) = tracker.update(Reading("v", T0 + 1.0, 16.0))  # 16 ≤ 15·1 + 1.5
    assert isinstance(ok, Kinematics)


def test_bridged_gap_counts_distance_and_is_flagged():
    """A 60 s interval (min_gap 5 s < 60 ≤ max_gap 120 s) is bridged by the trapezoid."""
    tracker = Tracker("v", params())
    out = feed(
        tracker, [Reading("v", T0, 10.0), Reading("v", T0 + 1, 10.0), Reading("v", T0 + 61, 10.0)]
    )
    last = kinematics(out)[-1]
    assert last.distance_m == 610.0 and "bridged_gap" in last.flags
    (summary,) = of_type(tracker.finish(), TripSummary)
    assert summary.bridged_distance_m == 600.0 and summary.distance_m == 610.0


def test_long_gap_adds_nothing_restarts_and_ends_the_trip():
    """A 200 s interval adds no distance, ends the trip (reason gap) and restarts the estimator."""
    tracker = Tracker("v", params())
    out = feed(
        tracker, [Reading("v", T0, 10.0), Reading("v", T0 + 1, 10.0), Reading("v", T0 + 201, 10.0)]
    )
    (summary,) = of_type(out, TripSummary)
    assert summary.end_reason == "gap" and summary.end_ts == T0 + 1 and summary.distance_m == 10.0
    last = kinematics(out)[-1]
    assert last.distance_m == 10.0 and last.acceleration_mps2 is None
    assert last.trip_id == f"v-{round((T0 + 201) * 1000)}"


def test_trip_ends_after_180_s_at_rest_on_tick_with_its_figures():
    """Start above 2 m/s; a rest of 180 s ends the trip, dated when the vehicle came to rest."""
    tracker = Tracker("v", params())
    speeds = [0, 3, 5, 5, 0.2, 3, 0] + [0] * 100  # one resumed stop, then a long rest
    out = feed(tracker, readings(speeds, "v"))
    assert not of_type(out, TripSummary)
    rest_ts = T0 + 6
    assert tracker.next_deadline() == rest_ts + 180.0
    assert tracker.tick(rest_ts + 179.0) == []
    (summary,) = tracker.tick(rest_ts + 180.0)
    assert summary.end_reason == "stopped"
    assert (summary.start_ts, summary.end_ts, summary.duration_s) == (T0 + 1, rest_ts, 5.0)
    assert summary.stops == 1 and summary.max_speed_mps == 5.0
    # intervals after the start: 4 + 5 + 2.6 + 1.6 + 1.5 (into the rest), then zeros
    assert math.isclose(summary.distance_m, 14.7)
    # the start reading's own acceleration (0 → 3 m/s in 1 s) belongs to the trip
    assert summary.max_acceleration_mps2 == 3.0 and summary.max_deceleration_mps2 == -4.8
    assert (summary.harsh_brakings, summary.harsh_accelerations) == (1, 0)  # -4.8 m/s² for 1 s


def test_tick_and_a_later_reading_give_the_same_trip():
    """Whether tick or the next reading notices the end, the trip record is the same."""
    items = [*readings([0, 3, 5, 0], "v"), Reading("v", T0 + 300.0, 0.0)]
    by_reading = of_type(feed(Tracker("v", params()), items), TripSummary)
    ticked = Tracker("v", params())
    out = feed(ticked, items[:-1]) + ticked.tick(T0 + 250.0) + ticked.update(items[-1])
    assert by_reading == of_type(out, TripSummary) and len(by_reading) == 1


def test_harsh_braking_event_with_interval_start():
    """-4 m/s² (0.41 g) for 3 s is harsh braking starting at the reading before the first one."""
    tracker = Tracker("v", params())
    out = feed(tracker, readings([12, 12, 8, 4, 0, 0], "v"))
    (event,) = of_type(out, HarshEvent)
    assert (event.type, event.start_ts, event.end_ts) == ("harsh_braking", T0 + 1, T0 + 4)
    assert event.speed_at_start_mps == 12.0
    assert math.isclose(event.peak_g, -4.0 / 9.80665)


def test_short_spike_is_not_an_event():
    """One 0.2 s spike at 10 Hz is shorter than harsh_min_duration_s (0.5 s)."""
    speeds = [10.0] * 5 + [10.8] + [10.8] * 5
    out = feed(Tracker("v", params()), readings(speeds, "v", dt=0.2))
    assert not of_type(out, HarshEvent)


def test_reorder_buffer_releases_in_event_time_order():
    """With a bound of 2 s, a reading 1 s out of order is held and released in ts order."""
    tracker = Tracker("v", params(reorder_bound_s=2.0))
    arrival = [Reading("v", T0 + t, 5.0) for t in (0.0, 2.0, 1.0, 3.0, 4.0)]
    out = feed(tracker, arrival)
    assert [k.ts - T0 for k in kinematics(out)] == [0.0, 1.0, 2.0]
    assert tracker.next_deadline() == T0 + 3.0 + 2.0
    assert [k.ts - T0 for k in kinematics(tracker.tick(T0 + 6.0))] == [3.0, 4.0]


def test_bad_input_never_raises():
    """Nonsense values come back as rejections, never exceptions."""
    tracker = Tracker("v", params())
    for ts, speed in [(math.nan, 1.0), (T0, math.nan), (-1e308, 1e308), (1e300, -1e300)]:
        (record,) = tracker.update(Reading("v", ts, speed))
        assert isinstance(record, Rejection)


def test_tick_without_a_time_does_nothing():
    """tick(NaN) releases nothing and ends nothing (a broken clock is not "infinitely late")."""
    tracker = Tracker("v", params(reorder_bound_s=2.0))
    tracker.update(Reading("v", T0, 5.0))
    assert tracker.tick(math.nan) == []
    assert tracker.next_deadline() == T0 + 2.0


def test_finish_dates_a_resting_trip_from_when_it_came_to_rest():
    """End of data while at rest: the trip ends (end_of_data) at the moment it stopped."""
    tracker = Tracker("v", params())
    feed(tracker, readings([0, 5, 5, 0, 0, 0], "v"))
    (summary,) = of_type(tracker.finish(), TripSummary)
    assert (summary.end_reason, summary.end_ts) == ("end_of_data", T0 + 3)


def test_deadline_with_a_reorder_bound_is_shifted_by_the_bound():
    """tick judges at now - B, so the rest deadline is announced B later."""
    tracker = Tracker("v", params(reorder_bound_s=2.0))
    feed(tracker, readings([0, 5, 5] + [0] * 100, "v"))  # at rest from T0 + 3 to T0 + 102
    tracker.tick(T0 + 104.0)  # releases everything up to T0 + 102
    assert tracker.next_deadline() == T0 + 3 + 180.0 + 2.0
    assert of_type(tracker.tick(T0 + 3 + 180.0 + 1.9), TripSummary) == []
    (summary,) = of_type(tracker.tick(T0 + 3 + 180.0 + 2.0), TripSummary)
    assert summary.end_reason == "stopped"
