"""``difference``: plain backward differences, the semantics of Telegraf, Kapacitor and Flux.

acceleration_i = (v_i - v_{i-1}) / (t_i - t_{i-1}) and jerk_i = (a_i - a_{i-1}) / (t_i - t_{i-1}),
i.e. the same derivative applied twice to the series as those tools would do when chained.
Nothing exists for the first reading after a restart (no acceleration) nor for the second
(no jerk). The prediction of the next speed is simply the last speed, with sigma 0.

A timestamp that does not advance (the tracker never sends one, but the estimator must not
crash on it) restarts the history, in the streaming and the batch path alike.
"""

from __future__ import annotations

import math

import numpy as np

from kinestream.core.arrays import BoolArray, FloatArray
from kinestream.core.estimators.base import (
    BatchEstimate,
    Estimate,
    Prediction,
    no_sigma,
)
from kinestream.core.params import EstimatorParams

_NONE = Estimate(None, None, None)
_new_tuple = tuple.__new__  # Estimate/Prediction per reading without NamedTuple.__new__
_NAN = math.nan


class DifferenceEstimator:
    """Backward Δv/Δt for one vehicle; state is three floats (NaN where nothing is known)."""

    __slots__ = ("_accel_mps2", "_speed_mps", "_ts")

    def __init__(self) -> None:
        self._ts = _NAN
        self._speed_mps = _NAN
        self._accel_mps2 = _NAN

    def predict(self, ts: float) -> Prediction | None:
        if math.isnan(self._ts):  # no reading since the last restart
            return None
        return _new_tuple(Prediction, (self._speed_mps, 0.0))

    def update(self, ts: float, speed_mps: float) -> Estimate:
        dt_s = ts - self._ts
        if not dt_s > 0.0:  # first reading (NaN) or a timestamp that does not advance
            self._ts, self._speed_mps, self._accel_mps2 = ts, speed_mps, _NAN
            return _NONE
        accel = (speed_mps - self._speed_mps) / dt_s
        previous_accel = self._accel_mps2
        self._ts, self._speed_mps, self._accel_mps2 = ts, speed_mps, accel
        if math.isnan(previous_accel):
            return _new_tuple(Estimate, (accel, None, None))
        return _new_tuple(Estimate, (accel, None, (accel - previous_accel) / dt_s))

    def fresh(self) -> DifferenceEstimator:
        return DifferenceEstimator()

    def restart(self) -> None:
        self._ts = self._speed_mps = self._accel_mps2 = _NAN

    def state(self) -> tuple[float, ...]:
        return (self._ts, self._speed_mps, self._accel_mps2)

    def load_state(self, state: tuple[float, ...]) -> None:
        self._ts, self._speed_mps, self._accel_mps2 = (float(x) for x in state)


def estimate_batch(
    ts: FloatArray,
    speed_mps: FloatArray,
    restart_before: BoolArray,
    params: EstimatorParams | None = None,
    *,
    dt_s: FloatArray | None = None,
) -> BatchEstimate:
    """The streaming arithmetic over whole arrays: same operations, so identical numbers.

    Each column is one pass written in place; NaN is then put where the stream has nothing:
    acceleration after a restart (which also makes the next jerk NaN, as in the stream).
    """
    ts = np.asarray(ts, dtype=np.float64)
    speed_mps = np.asarray(speed_mps, dtype=np.float64)
    n = ts.shape[0]
    if n == 0:
        return BatchEstimate(*(np.empty(0) for _ in BatchEstimate._fields))
    restart = np.asarray(restart_before, dtype=bool)
    forgets = np.flatnonzero(restart)  # restarts the caller asked for
    with np.errstate(all="ignore"):
        if dt_s is None:
            dt_s = np.empty(n)
            np.subtract(ts[1:], ts[:-1], out=dt_s[1:])
        accel = np.empty(n)
        np.subtract(speed_mps[1:], speed_mps[:-1], out=accel[1:])
        np.divide(accel[1:], dt_s[1:], out=accel[1:])
        accel[0] = np.nan
        accel[forgets] = np.nan
        # A non-advancing timestamp restarts too, exactly as in the streaming class.
        stalls = np.flatnonzero(~(dt_s[1:] > 0.0))
        accel[stalls + 1] = np.nan
        jerk = np.empty(n)
        jerk[0] = np.nan
        np.subtract(accel[1:], accel[:-1], out=jerk[1:])  # NaN after a restart: no previous
        np.divide(jerk[1:], dt_s[1:], out=jerk[1:])
    # The prediction only needs a previous speed: a non-advancing timestamp keeps one.
    predicted = np.empty(n)
    predicted[0] = np.nan
    predicted[1:] = speed_mps[:-1]
    predicted[forgets] = np.nan
    predicted_sigma = np.zeros(n)
    predicted_sigma[0] = np.nan
    predicted_sigma[forgets] = np.nan
    return BatchEstimate(accel, no_sigma(n), jerk, predicted, predicted_sigma)
