"""``polyfit``: the causal quadratic fit, on exact polynomials and at the window's edges."""

from __future__ import annotations

import numpy as np
import pytest

from kinestream.core.estimators import polyfit
from kinestream.core.estimators.polyfit import PolyfitEstimator


def test_exact_quadratic_gives_its_slope_and_second_derivative_at_the_newest_point():
    """v = 1 + 2t + 0.5t² sampled irregularly: acceleration 2 + t, jerk 1, at the newest t."""
    estimator = PolyfitEstimator(window_s=3.0)
    for t in [0.0, 0.3, 0.9, 1.0, 1.7, 2.2, 3.1, 3.5]:
        estimate = estimator.update(100.0 + t, 1.0 + 2.0 * t + 0.5 * t * t)
    assert estimate.acceleration_mps2 == pytest.approx(2.0 + 3.5, abs=1e-9)
    assert estimate.jerk_mps3 == pytest.approx(1.0, abs=1e-9)
    assert estimate.acceleration_sigma_mps2 is None


def test_two_points_fall_back_to_a_line_without_jerk():
    """With two readings in the window the slope is Δv/Δt and no jerk is claimed."""
    estimator = PolyfitEstimator(window_s=3.0)
    assert estimator.update(10.0, 4.0).acceleration_mps2 is None
    estimate = estimator.update(12.0, 7.0)
    assert estimate.acceleration_mps2 == pytest.approx(1.5)
    assert estimate.jerk_mps3 is None


def test_readings_older_than_the_window_are_forgotten():
    """After a 5 s pause only the newest reading is in a 3 s window: nothing to differentiate."""
    estimator = PolyfitEstimator(window_s=3.0)
    for t, v in [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)]:
        estimator.update(t, v)
    assert estimator.update(7.0, 9.0).acceleration_mps2 is None
    assert estimator.update(8.0, 10.0).acceleration_mps2 == pytest.approx(1.0)


def test_window_holds_a_bounded_number_of_points():
    """At 1 kHz the window is capped in points, so memory and work per reading stay bounded."""
    estimator = PolyfitEstimator(window_s=3.0)
    for i in range(1_000):
        estimator.update(i * 1e-3, 1.0)
    assert len(estimator.state()) == 2 + 2 * polyfit._MAX_WINDOW_POINTS


def test_prediction_extrapolates_the_fitted_line():
    """On an exact ramp v = 2t the prediction 0.5 s after the newest reading is on the ramp."""
    estimator = PolyfitEstimator(window_s=3.0)
    assert estimator.predict(0.0) is None
    for t in [0.0, 1.0, 2.0]:
        estimator.update(t, 2.0 * t)
    prediction = estimator.predict(2.5)
    assert prediction.speed_mps == pytest.approx(5.0)
    assert prediction.sigma_mps == 0.0


def test_rejects_a_window_that_is_not_positive():
    """A zero window could never hold two points: refused at construction, value named."""
    with pytest.raises(ValueError, match=r"window_s > 0, got 0\.0"):
        PolyfitEstimator(window_s=0.0)


def test_batch_handles_many_points_in_the_window():
    """A long 50 Hz run (window capped in points) gives the streaming numbers in batch."""
    ts = 1e9 + np.arange(400) * 0.02
    speed = 10.0 + np.sin(ts - 1e9)
    restart_before = np.zeros(400, dtype=bool)
    restart_before[0] = True
    estimator = PolyfitEstimator(window_s=3.0)
    streamed = [estimator.update(t, v).acceleration_mps2 for t, v in zip(ts, speed, strict=True)]
    batched = polyfit.estimate_batch(ts, speed, restart_before).acceleration_mps2
    np.testing.assert_array_equal(np.array(streamed[1:]), batched[1:])
