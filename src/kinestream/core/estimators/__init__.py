"""Acceleration estimators: one small protocol, three methods.

``make_estimator(params)`` builds the streaming estimator for one vehicle;
``estimate_batch_for(params)`` returns the matching whole-array function, and
``estimate_batch(ts, speed_mps, restart_before, params)`` calls it.
"""

from __future__ import annotations

from kinestream.core.estimators import difference, kalman, polyfit
from kinestream.core.estimators.base import (
    AccelerationEstimator,
    BatchEstimate,
    BatchFunction,
    BoolArray,
    Estimate,
    FloatArray,
    Prediction,
)
from kinestream.core.params import EstimatorParams, Method

__all__ = [
    "AccelerationEstimator",
    "BatchEstimate",
    "BatchFunction",
    "Estimate",
    "Prediction",
    "estimate_batch",
    "estimate_batch_for",
    "make_estimator",
]


def make_estimator(params: EstimatorParams) -> AccelerationEstimator:
    """A fresh streaming estimator (one per vehicle) for the configured method."""
    if params.method is Method.KALMAN:
        return kalman.KalmanEstimator.from_params(params)
    if params.method is Method.POLYFIT:
        return polyfit.PolyfitEstimator.from_params(params)
    return difference.DifferenceEstimator()


def estimate_batch_for(params: EstimatorParams) -> BatchFunction:
    """The module-level ``estimate_batch`` of the configured method."""
    if params.method is Method.KALMAN:
        return kalman.estimate_batch
    if params.method is Method.POLYFIT:
        return polyfit.estimate_batch
    return difference.estimate_batch


def estimate_batch(
    ts: FloatArray, speed_mps: FloatArray, restart_before: BoolArray, params: EstimatorParams
) -> BatchEstimate:
    """Run the configured method over whole arrays (see ``base.BatchEstimate``)."""
    return estimate_batch_for(params)(ts, speed_mps, restart_before, params)
