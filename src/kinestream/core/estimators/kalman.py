"""``kalman`` (the default): a constant-acceleration Kalman filter driven by white jerk.

The textbook model is the state [distance, speed, acceleration] with F and Q rebuilt from
each real Δt (the discretised white-jerk model, Q = q·[[Δt⁵/20, Δt⁴/8, Δt³/6], [Δt⁴/8, Δt³/3,
Δt²/2], [Δt³/6, Δt²/2, Δt]]). Distance is never measured and never feeds back into speed or
acceleration (F is upper triangular and only speed is observed), so the [speed, acceleration]
block of the mean and covariance evolves on its own: dropping distance is an exact
marginalisation, not an approximation. What remains is 2 means + 3 covariance entries, kept
as plain floats in ``__slots__`` (the tracker integrates distance itself, from the measured
speed, with the trapezoid).

Per reading with Δt > 0 (F = [[1, Δt], [0, 1]], Q = q·[[Δt³/3, Δt²/2], [Δt²/2, Δt]], H = [1, 0]):
predict, then a scalar measurement update with R = σ_v². A non-advancing timestamp (never sent
by the tracker) is a measurement update with Δt = 0, so nothing divides by zero.

Outputs: acceleration and its standard deviation √P₁₁ from the second reading after a restart
on (the first only initialises: speed as measured, acceleration 0 with a wide prior); jerk
as the backward difference of consecutive filtered accelerations (= K₁·innovation/Δt), from the
third reading on. Jerk is a second derivative of a noisy signal: only meaningful at higher
sample rates (≥ 5 Hz); at 1 Hz it mostly reflects the filter's own corrections.
``predict`` gives the expected next *measurement* and its sigma √(P₀₀⁻ + R), the innovation
standard deviation, which is what a step check should gate against.

Batch: readings are split into independent segments at each restart; segments run in
lockstep (numpy over the segments, one loop iteration per step), with exactly the scalar
arithmetic in the same order, so stream and batch agree bit for bit. Once fewer than
``_LOCKSTEP_MIN_WIDTH`` segments remain, the rest continue through the scalar class.
"""

from __future__ import annotations

import math

import numpy as np

from kinestream.core.estimators.base import (
    BatchEstimate,
    BoolArray,
    Estimate,
    FloatArray,
    Prediction,
)
from kinestream.core.params import EstimatorParams

_NONE = Estimate(None, None, None)
_new_object = object.__new__
# Per-reading results are built with tuple.__new__ directly: the same Estimate/Prediction
# object as calling the class, without the NamedTuple's Python-level __new__ (~0.15 µs each).
_new_tuple = tuple.__new__
_NAN = math.nan
# Prior on the acceleration at the first reading after a restart (1σ). Measured at 10 Hz with
# σ_v = 0.2 m/s: a 5 m/s² prior lets noise alone show |a| up to 4.6 m/s² (p99) in the first
# second, beyond the harsh-event threshold; 2 m/s² keeps that to 2.6 m/s² and still follows a
# real 3 m/s² launch within 0.5 s (2.94 m/s²). At 1 Hz the prior hardly matters.
_INITIAL_ACCEL_SIGMA_MPS2 = 2.0
# Below this many parallel segments numpy's per-call overhead costs more than pure Python.
_LOCKSTEP_MIN_WIDTH = 16


class KalmanEstimator:
    """Constant-acceleration Kalman filter for one vehicle; nine floats of state."""

    __slots__ = ("_a", "_n", "_p00", "_p01", "_p11", "_q", "_r2", "_t", "_v")

    def __init__(self, jerk_psd_m2ps5: float = 1.0, speed_sigma_mps: float = 0.2) -> None:
        if not (jerk_psd_m2ps5 >= 0.0 and speed_sigma_mps > 0.0):
            raise ValueError(
                f"kalman needs jerk_psd_m2ps5 >= 0 and speed_sigma_mps > 0, got "
                f"{jerk_psd_m2ps5!r} and {speed_sigma_mps!r}"
            )
        self._q = float(jerk_psd_m2ps5)
        self._r2 = float(speed_sigma_mps) * float(speed_sigma_mps)
        self.restart()

    @classmethod
    def from_params(cls, params: EstimatorParams) -> KalmanEstimator:
        return cls(params.kalman_jerk_psd_m2ps5, params.kalman_speed_sigma_mps)

    def fresh(self) -> KalmanEstimator:
        """A new filter with these (already validated) parameters: a new vehicle's estimator
        costs a third of ``from_params``, which re-validates and re-derives them."""
        new = _new_object(KalmanEstimator)
        new._q, new._r2 = self._q, self._r2
        new.restart()
        return new

    def restart(self) -> None:
        self._n = 0  # readings since the restart, counted up to 2
        self._t = self._v = self._a = _NAN
        self._p00 = self._p01 = self._p11 = _NAN

    def predict(self, ts: float) -> Prediction | None:
        if self._n == 0:
            return None
        dt = ts - self._t
        if not dt > 0.0:
            dt = 0.0
        p00p = self._p00 + dt * (2.0 * self._p01 + dt * self._p11) + self._q * dt * dt * dt / 3.0
        s = p00p + self._r2
        # `0.0 if s < 0.0 else s` is max(s, 0.0) (NaN passes through too) without the call.
        return _new_tuple(Prediction, (self._v + dt * self._a, math.sqrt(0.0 if s < 0.0 else s)))

    def update(self, ts: float, speed_mps: float) -> Estimate:
        n = self._n
        if n == 0:
            self._n = 1
            self._t, self._v, self._a = ts, speed_mps, 0.0
            self._p00, self._p01 = self._r2, 0.0
            self._p11 = _INITIAL_ACCEL_SIGMA_MPS2 * _INITIAL_ACCEL_SIGMA_MPS2
            return _NONE
        dt = ts - self._t
        if not dt > 0.0:
            dt = 0.0
        a, p01, p11 = self._a, self._p01, self._p11
        qdt = self._q * dt
        # Predict (F, Q from this Δt), unrolled.
        vp = self._v + dt * a
        p00p = self._p00 + dt * (2.0 * p01 + dt * p11) + qdt * dt * dt / 3.0
        p01p = p01 + dt * p11 + qdt * dt * 0.5
        p11p = p11 + qdt
        # Scalar measurement update; (I - KH)P written as R·K, which stays positive.
        r2 = self._r2
        s = p00p + r2
        k0 = p00p / s
        k1 = p01p / s
        y = speed_mps - vp
        a_new = a + k1 * y
        self._t, self._v, self._a = ts, vp + k0 * y, a_new
        p11_new = p11p - k1 * p01p
        self._p00, self._p01, self._p11 = r2 * k0, r2 * k1, p11_new
        sigma = math.sqrt(0.0 if p11_new < 0.0 else p11_new)
        if n == 1:
            self._n = 2
            return _new_tuple(Estimate, (a_new, sigma, None))
        return _new_tuple(Estimate, (a_new, sigma, (a_new - a) / dt if dt > 0.0 else None))

    def state(self) -> tuple[float, ...]:
        return (float(self._n), self._t, self._v, self._a, self._p00, self._p01, self._p11)

    def load_state(self, state: tuple[float, ...]) -> None:
        n, self._t, self._v, self._a, self._p00, self._p01, self._p11 = (float(x) for x in state)
        self._n = int(n)


def estimate_batch(
    ts: FloatArray,
    speed_mps: FloatArray,
    restart_before: BoolArray,
    params: EstimatorParams | None = None,
    *,
    dt_s: FloatArray | None = None,  # the protocol's; recomputed per segment here
) -> BatchEstimate:
    """The streaming filter over whole arrays, segments in lockstep (see the module doc)."""
    return _estimate_batch(ts, speed_mps, restart_before, params or EstimatorParams())


class _Segments:
    """Independent runs between restarts, longest first, laid out step-major for lockstep."""

    def __init__(self, restart_before: BoolArray, n: int, min_width: int) -> None:
        fresh = np.asarray(restart_before, dtype=bool).copy()
        fresh[0] = True
        starts = np.flatnonzero(fresh)
        lengths = np.diff(np.append(starts, n))
        order = np.argsort(-lengths, kind="stable")
        self.starts = starts[order]
        self.lengths = lengths[order]
        # Lockstep runs while at least min_width segments are still active.
        self.steps = int(self.lengths[min_width - 1]) if len(starts) >= min_width else 0
        self.widths = np.searchsorted(-self.lengths, -np.arange(self.steps), side="left")
        self.offsets = np.concatenate(([0], np.cumsum(self.widths)))
        covered = np.minimum(self.lengths, self.steps)
        rank = np.repeat(np.arange(len(starts)), covered)
        step = np.arange(int(covered.sum())) - np.repeat(np.cumsum(covered) - covered, covered)
        self.perm = np.empty(len(rank), dtype=np.intp)
        self.perm[self.offsets[step] + rank] = self.starts[rank] + step

    def rows(self) -> list[tuple[int, int, int]]:
        """(start of step k's row, its width, start of step k-1's row) for k ≥ 1."""
        offsets, widths = self.offsets.tolist(), self.widths.tolist()
        return [(offsets[k], widths[k], offsets[k - 1]) for k in range(1, self.steps)]


def _estimate_batch(
    ts: FloatArray,
    speed_mps: FloatArray,
    restart_before: BoolArray,
    params: EstimatorParams,
    min_width: int = _LOCKSTEP_MIN_WIDTH,
) -> BatchEstimate:
    ts = np.asarray(ts, dtype=np.float64)
    speed_mps = np.asarray(speed_mps, dtype=np.float64)
    n = ts.shape[0]
    out = [np.full(n, np.nan) for _ in BatchEstimate._fields]
    if n == 0:
        return BatchEstimate(*out)
    segments = _Segments(restart_before, n, max(min_width, 1))
    with np.errstate(all="ignore"):
        state = _lockstep(ts, speed_mps, segments, params, out)
    _scalar_tail(ts, speed_mps, segments, params=params, state=state, out=out)
    return BatchEstimate(*out)


def _lockstep(
    ts: FloatArray,
    speed_mps: FloatArray,
    seg: _Segments,
    params: EstimatorParams,
    out: list[FloatArray],
) -> tuple[FloatArray, ...]:
    """Run the first ``seg.steps`` readings of every segment with numpy across segments.

    What depends only on Δt, and the square roots of stored variances, are computed for all
    steps at once; the loop keeps only the recursion. Element-wise IEEE arithmetic with the
    scalar class's expressions in the same order gives the same bits.
    """
    if seg.steps == 0:
        return ()
    q = float(params.kalman_jerk_psd_m2ps5)
    r2 = float(params.kalman_speed_sigma_mps) * float(params.kalman_speed_sigma_mps)
    t_sm, z_sm = ts[seg.perm], speed_mps[seg.perm]
    rows = seg.rows()
    dt_sm = np.zeros(len(seg.perm))
    for lo, w, prev in rows:
        np.subtract(t_sm[lo : lo + w], t_sm[prev : prev + w], out=dt_sm[lo : lo + w])
    dt_sm = np.where(dt_sm > 0.0, dt_sm, 0.0)
    qdt_sm = q * dt_sm
    cubic_sm = qdt_sm * dt_sm * dt_sm / 3.0
    half_sm = qdt_sm * dt_sm * 0.5
    vp_sm, s_sm, a_sm, p11_sm, jerk_sm = (np.full(len(seg.perm), np.nan) for _ in range(5))
    w = int(seg.widths[0])
    v = z_sm[:w].copy()
    a, p00, p01 = np.zeros(w), np.full(w, r2), np.zeros(w)
    p11 = np.full(w, _INITIAL_ACCEL_SIGMA_MPS2 * _INITIAL_ACCEL_SIGMA_MPS2)
    for k, (lo, w, _) in enumerate(rows, start=1):
        hi = lo + w
        v, a, p00, p01, p11 = v[:w], a[:w], p00[:w], p01[:w], p11[:w]
        dt = dt_sm[lo:hi]
        vp = v + dt * a
        dt_p11 = dt * p11
        p00p = p00 + dt * (2.0 * p01 + dt_p11) + cubic_sm[lo:hi]
        p01p = p01 + dt_p11 + half_sm[lo:hi]
        p11p = p11 + qdt_sm[lo:hi]
        s = p00p + r2
        k0 = p00p / s
        k1 = p01p / s
        y = z_sm[lo:hi] - vp
        a_new = a + k1 * y
        if k >= 2:
            np.divide(a_new - a, dt, out=jerk_sm[lo:hi])
        a, v = a_new, vp + k0 * y
        p00, p01, p11 = r2 * k0, r2 * k1, p11p - k1 * p01p
        vp_sm[lo:hi], s_sm[lo:hi], a_sm[lo:hi], p11_sm[lo:hi] = vp, s, a, p11
    jerk_sm[dt_sm == 0.0] = np.nan  # no jerk across a non-advancing timestamp
    results = (
        a_sm,
        np.sqrt(np.maximum(p11_sm, 0.0)),
        jerk_sm,
        vp_sm,
        np.sqrt(np.maximum(s_sm, 0.0)),
    )
    for column, values in zip(out, results, strict=True):
        column[seg.perm] = values
    last = seg.perm[seg.offsets[seg.steps - 1] : seg.offsets[seg.steps]]
    return (ts[last], v, a, p00, p01, p11)


def _scalar_tail(
    ts: FloatArray,
    speed_mps: FloatArray,
    seg: _Segments,
    *,
    params: EstimatorParams,
    state: tuple[FloatArray, ...],
    out: list[FloatArray],
) -> None:
    """Finish the segments longer than the lockstep part one reading at a time."""
    estimator = KalmanEstimator.from_params(params)
    for rank in np.flatnonzero(seg.lengths > seg.steps).tolist():
        start, length = int(seg.starts[rank]), int(seg.lengths[rank])
        estimator.restart()
        if seg.steps > 0:
            n_seen = min(seg.steps, 2)
            estimator.load_state((float(n_seen), *(float(x[rank]) for x in state)))
        ts_list = ts[start + seg.steps : start + length].tolist()
        z_list = speed_mps[start + seg.steps : start + length].tolist()
        for i, (t, z) in enumerate(zip(ts_list, z_list, strict=True), start + seg.steps):
            prediction = estimator.predict(t)
            if prediction is not None:
                out[3][i], out[4][i] = prediction
            estimate = estimator.update(t, z)
            for column, value in zip(out, estimate, strict=False):
                if value is not None:
                    column[i] = value
