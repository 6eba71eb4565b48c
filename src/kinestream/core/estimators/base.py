"""The estimator protocol shared by ``kalman``, ``polyfit`` and ``difference``.

Streaming: one object per vehicle, ``update(ts, speed_mps)`` then read the returned
``Estimate``. Batch: a module-level ``estimate_batch`` per method over whole arrays that gives
the same numbers (within 1e-9 relative) as feeding the same readings one at a time.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from kinestream.core.arrays import BoolArray, FloatArray
from kinestream.core.params import EstimatorParams


class Estimate(NamedTuple):
    acceleration_mps2: float | None
    acceleration_sigma_mps2: float | None
    jerk_mps3: float | None


class Prediction(NamedTuple):
    """Expected speed at a time, for the physics step check; ``sigma_mps`` may be 0."""

    speed_mps: float
    sigma_mps: float


class AccelerationEstimator(Protocol):
    def predict(self, ts: float) -> Prediction | None:
        """Speed expected at ``ts`` from history alone; ``None`` before the first reading."""

    def update(self, ts: float, speed_mps: float) -> Estimate:
        """Take one accepted reading (``ts`` strictly after the previous one)."""

    def restart(self) -> None:
        """Forget history (a gap too long to bridge)."""

    def fresh(self) -> AccelerationEstimator:
        """A new estimator with the same parameters and no history (cloning a prototype)."""

    def state(self) -> tuple[float, ...]:
        """Everything needed to resume, as plain floats (persisted by the host)."""

    def load_state(self, state: tuple[float, ...]) -> None:
        """Resume from ``state()``."""


class BatchFunction(Protocol):
    """A method's ``estimate_batch``: ``restart_before`` marks where history is forgotten.

    ``dt_s``, when the caller has it, is ``ts[i] - ts[i - 1]`` (any value at 0 and where
    ``restart_before``): passing it saves recomputing it.
    """

    def __call__(
        self,
        ts: FloatArray,
        speed_mps: FloatArray,
        restart_before: BoolArray,
        params: EstimatorParams | None = None,
        *,
        dt_s: FloatArray | None = None,
    ) -> BatchEstimate: ...


class BatchEstimate(NamedTuple):
    """Per-reading arrays; NaN where the streaming path would give ``None``.

    A method without an acceleration sigma gives ``no_sigma(n)``: all NaN, read-only.
    """

    acceleration_mps2: FloatArray
    acceleration_sigma_mps2: FloatArray
    jerk_mps3: FloatArray
    predicted_speed_mps: FloatArray
    predicted_sigma_mps: FloatArray


def no_sigma(n: int) -> FloatArray:
    """n NaNs as a read-only broadcast view: a column the method never fills, at no cost."""
    return np.broadcast_to(np.float64(np.nan), (n,))
