"""Issue 2 "Noise": default-method acceleration accuracy on the noisy regulatory cycles.

The procedure (PCHIP, jitter, σ = 0.2 m/s noise clipped at 0, fixed seed) lives in
``noisy_cycles.py``; ``benchmarks/accuracy.py`` prints the full table with lags.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from kinestream.core.estimators import estimate_batch
from kinestream.core.params import EstimatorParams, Method

from .noisy_cycles import CYCLE_NAMES, load_cycle, noisy_cycle, rmse

# Issue 2's bounds at 10 Hz for the default method.
MAX_RMSE_10HZ_MPS2 = {"udds": 0.30, "hwfet": 0.30, "wltc_3b": 0.30, "us06": 0.40}
MIN_IMPROVEMENT_OVER_DIFFERENCE = 5.0


@functools.cache
def _rmse(name: str, rate_hz: float, method: Method) -> float:
    cycle = noisy_cycle(name, rate_hz)
    restart_before = np.zeros(len(cycle.ts), dtype=bool)
    restart_before[0] = True
    params = EstimatorParams(method=method)
    accel = estimate_batch(cycle.ts, cycle.speed_mps, restart_before, params).acceleration_mps2
    return rmse(accel, cycle.true_accel_mps2)


def test_default_method_is_kalman():
    """The thresholds below are promised for the default method, which is the Kalman filter."""
    assert EstimatorParams().method is Method.KALMAN


@pytest.mark.parametrize("name", CYCLE_NAMES)
def test_default_rmse_at_10hz_within_issue_bound(name):
    """At 10 Hz with jitter and σ = 0.2 m/s noise the default RMSE is within the issue's bound."""
    assert _rmse(name, 10.0, Method.KALMAN) <= MAX_RMSE_10HZ_MPS2[name]


@pytest.mark.parametrize("name", CYCLE_NAMES)
def test_default_at_10hz_is_five_times_better_than_difference(name):
    """Raw backward differences amplify 10 Hz noise; the default is at least 5× more accurate."""
    improvement = _rmse(name, 10.0, Method.DIFFERENCE) / _rmse(name, 10.0, Method.KALMAN)
    assert improvement >= MIN_IMPROVEMENT_OVER_DIFFERENCE


@pytest.mark.parametrize("name", CYCLE_NAMES)
def test_default_at_1hz_no_worse_than_difference(name):
    """At 1 Hz (same procedure) smoothing must not cost accuracy against plain differences."""
    assert _rmse(name, 1.0, Method.KALMAN) <= _rmse(name, 1.0, Method.DIFFERENCE)


def test_procedure_has_the_specified_jitter_and_noise():
    """The test data is what the issue specifies: intervals within (1 ± 0.4)·period (each time
    moved by at most 20 % of it), noise of σ ≈ 0.2 m/s where clipping at 0 cannot act."""
    cycle = noisy_cycle("wltc_3b", 10.0)
    intervals = np.diff(cycle.ts)
    assert intervals.min() >= 0.06 - 1e-9 and intervals.max() <= 0.14 + 1e-9
    assert intervals.std() > 0.01  # really jittered
    secs, speed = load_cycle("wltc_3b")
    clean = PchipInterpolator(secs, speed)(cycle.ts - cycle.t0)
    moving = clean > 2.0
    assert np.std(cycle.speed_mps[moving] - clean[moving]) == pytest.approx(0.2, rel=0.05)
    assert (cycle.speed_mps >= 0.0).all()
