"""The trip state table."""

from kinestream.core import trips
from kinestream.core.trips import CRUISE, FAST, IDLE, MOVING, SLOW, STOPPED, TRANSITIONS


def test_table_is_complete():
    """Every (state, speed class) pair has exactly one transition."""
    assert set(TRANSITIONS) == {
        (s, c) for s in (IDLE, MOVING, STOPPED) for c in (SLOW, CRUISE, FAST)
    }


def test_only_a_fast_reading_starts_a_trip():
    """Idle stays idle below the start speed; above it, a trip starts."""
    assert TRANSITIONS[(IDLE, CRUISE)] == (IDLE, None)
    assert TRANSITIONS[(IDLE, FAST)] == (MOVING, trips.START)


def test_rest_and_resume():
    """Slow while moving is a rest; any reading at or above the stop speed resumes."""
    assert TRANSITIONS[(MOVING, SLOW)] == (STOPPED, trips.STOP)
    assert TRANSITIONS[(STOPPED, CRUISE)] == (MOVING, trips.RESUME)
    assert TRANSITIONS[(STOPPED, SLOW)] == (STOPPED, None)


def test_trip_id_is_deterministic_milliseconds():
    """The id is the vehicle id and the start time in whole milliseconds."""
    assert trips.trip_id_for("truck-7", 1767225600.1234) == "truck-7-1767225600123"
