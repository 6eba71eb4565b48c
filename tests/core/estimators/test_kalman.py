"""``kalman``: the constant-acceleration filter, by hand on one step and on exact ramps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinestream.core.estimators import kalman
from kinestream.core.estimators.kalman import KalmanEstimator
from kinestream.core.params import EstimatorParams

from .helpers import assert_same, run_streaming
from .strategies import reading_sequences


def test_one_step_matches_hand_computation():
    """q=1, σ=0.5, prior σ_a=2, readings (0 s, 10) then (1 s, 11): P⁻ = [[4.5833, 4.5], [4.5, 5]],
    gain on acceleration 4.5/4.8333 applied to a 1 m/s innovation."""
    estimator = KalmanEstimator(jerk_psd_m2ps5=1.0, speed_sigma_mps=0.5)
    assert estimator.update(0.0, 10.0).acceleration_mps2 is None
    prediction = estimator.predict(1.0)
    assert prediction.speed_mps == 10.0
    assert prediction.sigma_mps == pytest.approx(2.198484, rel=1e-5)  # √(0.25 + 4 + 1/3 + 0.25)
    estimate = estimator.update(1.0, 11.0)
    assert estimate.acceleration_mps2 == pytest.approx(0.931034, rel=1e-5)
    assert estimate.acceleration_sigma_mps2 == pytest.approx(0.900192, rel=1e-5)  # √(5 - 0.931·4.5)
    assert estimate.jerk_mps3 is None


def test_converges_to_a_constant_acceleration_with_shrinking_sigma():
    """Noise-free v = 3 + 2t at 10 Hz: after 20 s the estimate is 2 m/s² and jerk near 0."""
    estimator = KalmanEstimator()
    sigmas = []
    for i in range(201):
        t = 0.1 * i
        estimate = estimator.update(1_000.0 + t, 3.0 + 2.0 * t)
        sigmas.append(estimate.acceleration_sigma_mps2)
    assert estimate.acceleration_mps2 == pytest.approx(2.0, abs=1e-6)
    assert abs(estimate.jerk_mps3) < 1e-6
    assert sigmas[1] > sigmas[10] > 0.0


def test_repeated_timestamp_is_a_measurement_only_update():
    """A reading at the same time as the last one refines the state without dividing by zero."""
    estimator = KalmanEstimator()
    for t, v in [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)]:
        estimator.update(t, v)
    estimate = estimator.update(2.0, 2.1)
    assert estimate.acceleration_mps2 is not None
    assert estimate.jerk_mps3 is None


def test_rejects_parameters_without_measurement_noise():
    """σ = 0 would make the update divide by zero: refused at construction, values named."""
    with pytest.raises(ValueError, match="speed_sigma_mps > 0"):
        KalmanEstimator(jerk_psd_m2ps5=1.0, speed_sigma_mps=0.0)


@settings(max_examples=100, deadline=None)
@given(
    vehicles=st.lists(reading_sequences(max_size=25), min_size=1, max_size=8),
    min_width=st.integers(min_value=1, max_value=4),
)
def test_lockstep_batch_equals_streaming(vehicles, min_width):
    """Segments run in lockstep across vehicles (any width threshold) give the stream's numbers."""
    ts = np.concatenate([v[0] for v in vehicles])  # each vehicle starts with a restart
    speed = np.concatenate([v[1] for v in vehicles])
    restart_before = np.concatenate([v[2] for v in vehicles])
    params = EstimatorParams()
    streamed = run_streaming(KalmanEstimator.from_params(params), ts, speed, restart_before)
    batched = kalman._estimate_batch(ts, speed, restart_before, params, min_width=min_width)
    assert_same(streamed, batched, rtol=1e-12)


def test_jerk_is_the_backward_difference_of_filtered_accelerations():
    """Jerk comes from the same filter: (a_k - a_(k-1)) / Δt of its own accelerations."""
    estimator = KalmanEstimator()
    readings = [(0.0, 5.0), (0.1, 5.3), (0.25, 5.2), (0.3, 5.9), (0.42, 6.4)]
    estimates = [estimator.update(1e9 + t, v) for t, v in readings]
    for k in (3, 4):
        dt = readings[k][0] - readings[k - 1][0]
        change = estimates[k].acceleration_mps2 - estimates[k - 1].acceleration_mps2
        assert estimates[k].jerk_mps3 == pytest.approx(change / dt, rel=1e-6)
