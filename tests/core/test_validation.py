"""Stateless checks of one reading."""

import math

import pytest

from kinestream.core.params import TrackerParams
from kinestream.core.records import Reading, RejectReason
from kinestream.core.validation import check_not_future, check_reading

from .helpers import T0

P = TrackerParams()


@pytest.mark.parametrize(
    ("ts", "speed", "reason"),
    [
        (math.nan, 1.0, RejectReason.NON_FINITE),
        (T0, math.inf, RejectReason.NON_FINITE),
        (T0, -0.51, RejectReason.SPEED_NEGATIVE),
        (T0, 120.01, RejectReason.SPEED_TOO_HIGH),
        (T0 * 1000.0, 1.0, RejectReason.TIMESTAMP_MILLISECONDS),
        (946_684_799.0, 1.0, RejectReason.TIMESTAMP_TOO_OLD),
    ],
)
def test_bad_readings_are_refused_with_their_reason(ts, speed, reason):
    """Each rule of issue 2 maps to its own machine-readable reason."""
    rejection = check_reading(Reading("v", ts, speed), P)
    assert rejection is not None
    assert rejection.reason is reason
    assert "'v'" in rejection.message


@pytest.mark.parametrize("speed", [-0.5, -0.1, 0.0, 120.0])
def test_boundary_speeds_pass(speed):
    """-0.5..0 is sensor noise (clamped later) and 120 m/s itself is allowed."""
    assert check_reading(Reading("v", T0, speed), P) is None


def test_message_names_the_values():
    """The message carries the offending speed and the limit."""
    rejection = check_reading(Reading("truck-7", T0, 130.0), P)
    assert rejection is not None
    assert "130.0" in rejection.message and "120.0" in rejection.message


def test_not_future_allows_up_to_the_bound():
    """A reading at most max_future_s ahead of its receive time passes; beyond it, refused."""
    assert check_not_future(Reading("v", T0 + 10.0, 1.0), T0, 10.0) is None
    rejection = check_not_future(Reading("v", T0 + 10.5, 1.0), T0, 10.0)
    assert rejection is not None and rejection.reason is RejectReason.TIMESTAMP_IN_FUTURE


def test_relative_times_pass_when_the_floor_is_lowered():
    """Offline inputs with seconds-from-zero timestamps pass with min_timestamp_s lowered."""
    assert check_reading(Reading("v", 0.0, 1.0), TrackerParams(min_timestamp_s=-math.inf)) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"duplicate_memory": 0},
        {"reorder_bound_s": -1.0},
        {"min_gap_s": 200.0},
        {"trip_stop_speed_mps": 3.0},
        {"harsh_exit_fraction": 1.5},
    ],
)
def test_impossible_params_are_refused_with_the_values(overrides):
    """TrackerParams refuses settings the tracker cannot honour, naming the value."""
    with pytest.raises(ValueError, match=str(next(iter(overrides.values())))):
        TrackerParams(**overrides)
