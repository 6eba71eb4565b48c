"""Shared helpers for the estimator tests: run a streaming estimator over arrays."""

from __future__ import annotations

import math

import numpy as np

from kinestream.core.estimators.base import AccelerationEstimator, BatchEstimate


def _value(x: float | None) -> float:
    return math.nan if x is None else x


def run_streaming(
    estimator: AccelerationEstimator,
    ts: np.ndarray,
    speed_mps: np.ndarray,
    restart_before: np.ndarray,
) -> BatchEstimate:
    """Feed readings one at a time (restarting where asked) and collect a BatchEstimate."""
    rows = []
    for t, v, fresh in zip(ts.tolist(), speed_mps.tolist(), restart_before.tolist(), strict=True):
        if fresh:
            estimator.restart()
        prediction = estimator.predict(t)
        estimate = estimator.update(t, v)
        rows.append(
            (
                _value(estimate.acceleration_mps2),
                _value(estimate.acceleration_sigma_mps2),
                _value(estimate.jerk_mps3),
                math.nan if prediction is None else prediction.speed_mps,
                math.nan if prediction is None else prediction.sigma_mps,
            )
        )
    columns = np.array(rows, dtype=np.float64).reshape(-1, 5).T
    return BatchEstimate(*columns)


def assert_same(streamed: BatchEstimate, batched: BatchEstimate, rtol: float = 1e-9) -> None:
    """Every output equal within rtol (relative; absolute near zero), NaN exactly where NaN."""
    for name, a, b in zip(BatchEstimate._fields, streamed, batched, strict=True):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name}: NaN pattern")
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12, err_msg=name)
