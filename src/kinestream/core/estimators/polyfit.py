"""``polyfit``: causal least-squares quadratic over a trailing time window (irregular S-G).

At each reading, the speeds of the readings no older than ``window_s`` (at most
``_MAX_WINDOW_POINTS`` of them) are fitted with v(τ) = c₀ + c₁τ + c₂τ² on their real
timestamps, with τ = t - t_newest (so τ ≤ 0 and the sums stay well conditioned). Speed is what
is fitted, so the derivative at the newest point is the acceleration, c₁, and the
second derivative of the same fit is the jerk, 2·c₂ (noisy: meaningful at high sample rates
only). With two points in the window the fit is a line (acceleration, no jerk); with one, or
when the points are too close in time to separate the terms, nothing is claimed.

The prediction of the next speed extrapolates the fit's value and slope at the newest point
(sigma 0: the fit carries no noise model). A non-advancing timestamp restarts the window.

Batch: the same sums over the window offsets j = 0, 1, … (newest first, as the streaming loop
adds them), masked per reading, so stream and batch are bit-identical.
"""

from __future__ import annotations

from array import array

import numpy as np

from kinestream.core.arrays import BoolArray, FloatArray, IntArray
from kinestream.core.estimators.base import (
    BatchEstimate,
    Estimate,
    Prediction,
    no_sigma,
)
from kinestream.core.params import EstimatorParams

_NONE = Estimate(None, None, None)
_new_tuple = tuple.__new__  # Estimate/Prediction per reading without NamedTuple.__new__
# Bounds memory and per-reading work (2 × 64 doubles); above ~20 Hz this, not window_s,
# sets the window.
_MAX_WINDOW_POINTS = 64
# A normal-equation determinant below this share of its scale means the times are too
# close together to tell the terms apart.
_DEGENERATE = 1e-10


def _solve(sums: tuple[float, ...]) -> tuple[float, float, float | None, float | None]:
    """(value c₀, slope c₁, acceleration or None, jerk or None) from the window's sums."""
    n, s1, s2, s3, s4, y0, y1, y2 = sums
    if n >= 3.0:
        m0 = s2 * s4 - s3 * s3
        m1 = s1 * s4 - s3 * s2
        m2 = s1 * s3 - s2 * s2
        det = n * m0 - s1 * m1 + s2 * m2
        if det > _DEGENERATE * n * s2 * s4:
            c0 = (y0 * m0 - s1 * (y1 * s4 - s3 * y2) + s2 * (y1 * s3 - s2 * y2)) / det
            c1 = (n * (y1 * s4 - s3 * y2) - y0 * m1 + s2 * (s1 * y2 - y1 * s2)) / det
            c2 = (n * (s2 * y2 - y1 * s3) - s1 * (s1 * y2 - y1 * s2) + y0 * m2) / det
            return c0, c1, c1, 2.0 * c2
    if n >= 2.0:
        det = n * s2 - s1 * s1
        if det > _DEGENERATE * n * s2:
            c1 = (n * y1 - s1 * y0) / det
            return (y0 - c1 * s1) / n, c1, c1, None
    return y0 / n, 0.0, None, None


class PolyfitEstimator:
    """Trailing-window quadratic fit for one vehicle; the window is two bounded arrays."""

    __slots__ = ("_slope", "_speeds", "_times", "_value", "_window_s")

    def __init__(self, window_s: float = 3.0) -> None:
        if not window_s > 0.0:
            raise ValueError(f"polyfit needs window_s > 0, got {window_s!r}")
        self._window_s = float(window_s)
        self._times = array("d")
        self._speeds = array("d")
        self._value = self._slope = 0.0

    @classmethod
    def from_params(cls, params: EstimatorParams) -> PolyfitEstimator:
        return cls(params.polyfit_window_s)

    def fresh(self) -> PolyfitEstimator:
        return PolyfitEstimator(self._window_s)

    def restart(self) -> None:
        del self._times[:], self._speeds[:]
        self._value = self._slope = 0.0

    def predict(self, ts: float) -> Prediction | None:
        if not self._times:
            return None
        return _new_tuple(Prediction, (self._value + self._slope * (ts - self._times[-1]), 0.0))

    def update(self, ts: float, speed_mps: float) -> Estimate:
        times, speeds = self._times, self._speeds
        if times and not ts - times[-1] > 0.0:
            self.restart()
        times.append(ts)
        speeds.append(speed_mps)
        drop = max(len(times) - _MAX_WINDOW_POINTS, 0)
        while drop < len(times) - 1 and ts - times[drop] > self._window_s:
            drop += 1
        if drop:
            del times[:drop], speeds[:drop]
        self._value, self._slope, accel, jerk = _solve(_sums(times, speeds))
        if accel is None:
            return _NONE
        return _new_tuple(Estimate, (accel, None, jerk))

    def state(self) -> tuple[float, ...]:
        return (self._value, self._slope, *self._times, *self._speeds)

    def load_state(self, state: tuple[float, ...]) -> None:
        self._value, self._slope = float(state[0]), float(state[1])
        half = (len(state) - 2) // 2
        self._times = array("d", state[2 : 2 + half])
        self._speeds = array("d", state[2 + half :])


def _sums(times: array, speeds: array) -> tuple[float, ...]:
    """Σ1, Στ, Στ², Στ³, Στ⁴, Σv, Σvτ, Σvτ², newest first (the batch adds in this order)."""
    newest = times[-1]
    s1 = s2 = s3 = s4 = y0 = y1 = y2 = 0.0
    for j in range(len(times) - 1, -1, -1):
        tau = times[j] - newest
        v = speeds[j]
        tau2 = tau * tau
        s1 += tau
        s2 += tau2
        s3 += tau2 * tau
        s4 += tau2 * tau2
        y0 += v
        y1 += v * tau
        y2 += v * tau2
    return (float(len(times)), s1, s2, s3, s4, y0, y1, y2)


def estimate_batch(
    ts: FloatArray,
    speed_mps: FloatArray,
    restart_before: BoolArray,
    params: EstimatorParams | None = None,
    *,
    dt_s: FloatArray | None = None,
) -> BatchEstimate:
    """The streaming fit over whole arrays: window sums by offset, then the same solve."""
    params = params or EstimatorParams()
    ts = np.asarray(ts, dtype=np.float64)
    speed_mps = np.asarray(speed_mps, dtype=np.float64)
    n = ts.shape[0]
    if n == 0:
        return BatchEstimate(*(np.empty(0) for _ in BatchEstimate._fields))
    restart = np.asarray(restart_before, dtype=bool).copy()
    restart[0] = True
    with np.errstate(all="ignore"):
        if dt_s is None:
            dt_s = np.empty(n)
            np.subtract(ts[1:], ts[:-1], out=dt_s[1:])
        fresh = restart.copy()
        fresh[1:] |= ~(dt_s[1:] > 0.0)  # a non-advancing timestamp restarts the window
        sums = _window_sums(ts, speed_mps, fresh, float(params.polyfit_window_s))
        value, slope, accel, jerk = _solve_arrays(sums)
        predicted = np.empty(n)
        predicted[0] = np.nan
        np.multiply(slope[:-1], dt_s[1:], out=predicted[1:])
        predicted[1:] += value[:-1]
    forgets = np.flatnonzero(restart)
    predicted[forgets] = np.nan
    predicted_sigma = np.zeros(n)
    predicted_sigma[forgets] = np.nan
    return BatchEstimate(accel, no_sigma(n), jerk, predicted, predicted_sigma)


def _window_sums(
    ts: FloatArray, speed_mps: FloatArray, fresh: BoolArray, window_s: float
) -> list[FloatArray]:
    """The eight sums of ``_sums`` per reading, adding window offset j = 0, 1, … in turn.

    Offset j pairs reading i with reading i - j: two aligned slices, no gathers. Terms
    outside the window are zeroed, and adding zero leaves these sums' bits unchanged.
    """
    n = ts.shape[0]
    starts = np.flatnonzero(fresh)
    age = np.arange(n)  # readings since the window last restarted
    age -= np.repeat(starts, np.diff(np.append(starts, n)))
    # Offset 0, the newest point itself: τ = 0, so only the count and Σv get more than zero.
    count = np.ones(n)
    s1, s2, s3, s4 = (np.zeros(n) for _ in range(4))
    y0 = speed_mps + 0.0
    y1 = speed_mps * 0.0
    y1 += 0.0
    y2 = y1.copy()
    for j in range(1, _MAX_WINDOW_POINTS):
        inside = age[j:] >= j
        inside &= ts[j:] - ts[:-j] <= window_s
        if not inside.any():
            break
        tau = ts[:-j] - ts[j:]
        v = speed_mps[:-j]
        outside = np.flatnonzero(~inside)
        if outside.shape[0]:
            tau[outside] = 0.0
            v = v.copy()
            v[outside] = 0.0
        tau2 = tau * tau
        count[j:] += inside
        s1[j:] += tau
        s2[j:] += tau2
        s3[j:] += tau2 * tau
        s4[j:] += tau2 * tau2
        y0[j:] += v
        y1[j:] += v * tau
        y2[j:] += v * tau2
    return [count, s1, s2, s3, s4, y0, y1, y2]


def _solve_arrays(sums: list[FloatArray]) -> tuple[FloatArray, ...]:
    """``_solve`` element-wise: the same expressions; the quadratic is solved everywhere and
    the few readings where it does not hold (fewer than three points, degenerate times) are
    redone as a line or a constant."""
    n, s1, s2, s3, s4, y0, y1, y2 = sums
    m0 = s2 * s4 - s3 * s3
    m1 = s1 * s4 - s3 * s2
    m2 = s1 * s3 - s2 * s2
    det = n * m0 - s1 * m1 + s2 * m2
    quad = n >= 3.0
    quad &= det > _DEGENERATE * n * s2 * s4
    a = y1 * s4 - s3 * y2  # shared by c₀ and c₁ (the same expression in both)
    c = s1 * y2 - y1 * s2  # shared by c₁ and c₂
    value = y0 * m0 - s1 * a + s2 * (y1 * s3 - s2 * y2)
    value /= det
    slope = n * a - y0 * m1 + s2 * c
    slope /= det
    jerk = n * (s2 * y2 - y1 * s3) - s1 * c + y0 * m2
    jerk /= det
    jerk *= 2.0
    accel = slope.copy()
    other = np.flatnonzero(~quad)
    if other.shape[0]:
        _solve_lines(other, sums, value, slope, accel, jerk)
    return value, slope, accel, jerk


def _solve_lines(  # noqa: PLR0917
    at: IntArray,
    sums: list[FloatArray],
    value: FloatArray,
    slope: FloatArray,
    accel: FloatArray,
    jerk: FloatArray,
) -> None:
    """Where the quadratic does not hold: a line (two points), else a constant."""
    n, s1, s2, _, _, y0, y1, _ = (x[at] for x in sums)
    det_line = n * s2 - s1 * s1
    line = (n >= 2.0) & (det_line > _DEGENERATE * n * s2)
    l1 = (n * y1 - s1 * y0) / det_line
    l0 = (y0 - l1 * s1) / n
    value[at] = np.where(line, l0, y0 / n)
    slope[at] = np.where(line, l1, 0.0)
    accel[at] = np.where(line, l1, np.nan)
    jerk[at] = np.nan
