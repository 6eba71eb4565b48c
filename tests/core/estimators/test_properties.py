"""Properties every estimator keeps: stream == batch, resumable state, no crash on finite input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinestream.core.estimators import estimate_batch, make_estimator
from kinestream.core.params import EstimatorParams, Method

from .helpers import assert_same, run_streaming
from .strategies import reading_sequences, wild_sequences

METHODS = list(Method)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=150, deadline=None)
@given(data=reading_sequences())
def test_stream_equals_batch(method, data):
    """Feeding readings one at a time gives the batch numbers for every output (1e-9)."""
    ts, speed, restart_before = data
    params = EstimatorParams(method=method)
    streamed = run_streaming(make_estimator(params), ts, speed, restart_before)
    assert_same(streamed, estimate_batch(ts, speed, restart_before, params))


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=100, deadline=None)
@given(data=reading_sequences(), cut=st.integers(min_value=0, max_value=60))
def test_state_round_trip_resumes_identically(method, data, cut):
    """An estimator rebuilt from state() mid-stream gives exactly the outputs of the original."""
    ts, speed, restart_before = data
    params = EstimatorParams(method=method)
    cut = min(cut, len(ts))
    original = make_estimator(params)
    run_streaming(original, ts[:cut], speed[:cut], restart_before[:cut])
    state = original.state()
    assert all(isinstance(x, float) for x in state)
    resumed = make_estimator(params)
    resumed.load_state(tuple(state))
    rest = (ts[cut:], speed[cut:], restart_before[cut:])
    expected = run_streaming(original, *rest)
    got = run_streaming(resumed, *rest)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=150, deadline=None)
@given(data=wild_sequences())
def test_no_finite_input_raises(method, data):
    """Any finite timestamps and speeds, in any order, run through both paths without raising."""
    ts, speed, restart_before = data
    params = EstimatorParams(method=method)
    estimator = make_estimator(params)
    for t, v, fresh in zip(ts.tolist(), speed.tolist(), restart_before.tolist(), strict=True):
        if fresh:
            estimator.restart()
        estimator.predict(t)
        estimate = estimator.update(t, v)
        for value in estimate:
            assert value is None or isinstance(value, float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = estimate_batch(ts, speed, restart_before, params)
    assert all(len(column) == len(ts) for column in batch)


@pytest.mark.parametrize("method", METHODS)
def test_first_reading_after_restart_has_no_acceleration(method):
    """Right after a restart there is no history, so acceleration and jerk are None."""
    estimator = make_estimator(EstimatorParams(method=method))
    assert estimator.predict(1000.0) is None
    first = estimator.update(1000.0, 5.0)
    assert first.acceleration_mps2 is None and first.jerk_mps3 is None
    estimator.update(1001.0, 6.0)
    estimator.restart()
    assert estimator.predict(1500.0) is None
    again = estimator.update(1500.0, 9.0)
    assert again.acceleration_mps2 is None and again.jerk_mps3 is None
    assert not math.isnan(estimator.predict(1501.0).speed_mps)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=50, deadline=None)
@given(data=reading_sequences(), cut=st.integers(min_value=0, max_value=60))
def test_fresh_copy_of_a_used_prototype_has_no_history(method, data, cut):
    """fresh() of an estimator that has seen readings behaves exactly like a new one."""
    ts, speed, restart_before = data
    params = EstimatorParams(method=method, kalman_jerk_psd_m2ps5=2.0, polyfit_window_s=2.5)
    prototype = make_estimator(params)
    cut = min(cut, len(ts))
    run_streaming(prototype, ts[:cut], speed[:cut], restart_before[:cut])
    expected = run_streaming(make_estimator(params), ts, speed, restart_before)
    got = run_streaming(prototype.fresh(), ts, speed, restart_before)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
