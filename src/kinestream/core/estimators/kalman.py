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

from kinestream.core.arrays import BoolArray, FloatArray
from kinestream.core.estimators.base import (
    BatchEstimate,
    Estimate,
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
    dt_s: FloatArray | None = None,
) -> BatchEstimate:
    """The streaming filter over whole arrays, segments in lockstep (see the module doc)."""
    return _estimate_batch(ts, speed_mps, restart_before, params or EstimatorParams(), dt_s=dt_s)


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
    *,
    dt_s: FloatArray | None = None,
) -> BatchEstimate:
    ts = np.asarray(ts, dtype=np.float64)
    speed_mps = np.asarray(speed_mps, dtype=np.float64)
    n = ts.shape[0]
    if n == 0:
        return BatchEstimate(*(np.empty(0) for _ in BatchEstimate._fields))
    segments = _Segments(restart_before, n, max(min_width, 1))
    # Lockstep writes every reading it covers: only a scalar tail needs NaN to start from.
    fill = np.empty if len(segments.perm) == n else lambda size: np.full(size, np.nan)
    out = [fill(n) for _ in BatchEstimate._fields]
    with np.errstate(all="ignore"):
        state = _lockstep(ts, speed_mps, segments, params, out, dt_s)
    _scalar_tail(ts, speed_mps, segments, params=params, state=state, out=out)
    return BatchEstimate(*out)


def _lockstep(  # noqa: PLR0917
    ts: FloatArray,
    speed_mps: FloatArray,
    seg: _Segments,
    params: EstimatorParams,
    out: list[FloatArray],
    dt_s: FloatArray | None,
) -> tuple[FloatArray, ...]:
    """Run the first ``seg.steps`` readings of every segment with numpy across segments.

    What depends only on Δt, and the square roots of stored variances, are computed for all
    steps at once; the loop (``_recursion``) keeps only the recursion. Element-wise IEEE
    arithmetic with the scalar class's expressions in the same order gives the same bits.
    """
    if seg.steps == 0:
        return ()
    perm = seg.perm
    if dt_s is None:
        dt_s = np.empty(ts.shape[0])
        np.subtract(ts[1:], ts[:-1], out=dt_s[1:])
    dt_sm = dt_s[perm]  # a row's predecessor is the reading before it in its segment
    dt_sm[: seg.widths[0]] = 0.0  # step 0 has no interval
    dt_sm[~(dt_sm > 0.0)] = 0.0
    rows = [np.empty(len(perm)) for _ in range(5)]
    for column in rows:
        column[: seg.widths[0]] = np.nan  # the first reading only initialises
    vp_sm, s_sm, a_sm, p11_sm, jerk_sm = rows
    jerk_sm[seg.offsets[1] : seg.offsets[2] if seg.steps > 1 else 0] = np.nan
    state = _recursion(seg, params, speed_mps[perm], dt_sm, rows)
    last = perm[seg.offsets[seg.steps - 1] : seg.offsets[seg.steps]]
    jerk_sm[dt_sm == 0.0] = np.nan  # no jerk across a non-advancing timestamp
    for variance in (p11_sm, s_sm):
        np.maximum(variance, 0.0, out=variance)
        np.sqrt(variance, out=variance)
    for column, values in zip(out, (a_sm, p11_sm, jerk_sm, vp_sm, s_sm), strict=True):
        column[perm] = values
    return (ts[last], *state)


def _recursion(
    seg: _Segments,
    params: EstimatorParams,
    z_sm: FloatArray,
    dt_sm: FloatArray,
    rows: list[FloatArray],
) -> tuple[FloatArray, ...]:
    """The filter's recursion, one step per iteration: each operation written in place into
    the step's row of ``rows`` (vp, s, a, p11, jerk) or a scratch buffer, no temporaries.
    Returns the state (v, a, p00, p01, p11) after the last step."""
    q = float(params.kalman_jerk_psd_m2ps5)
    r2 = float(params.kalman_speed_sigma_mps) * float(params.kalman_speed_sigma_mps)
    qdt_sm = q * dt_sm
    cubic_sm = qdt_sm * dt_sm * dt_sm / 3.0
    half_sm = qdt_sm * dt_sm * 0.5
    vp_sm, s_sm, a_sm, p11_sm, jerk_sm = rows
    width = int(seg.widths[0])
    v_buf = z_sm[:width].copy()
    p00_buf, p01_buf = np.full(width, r2), np.zeros(width)
    scratch = [np.empty(width) for _ in range(6)]
    a = np.zeros(width)
    p11 = np.full(width, _INITIAL_ACCEL_SIGMA_MPS2 * _INITIAL_ACCEL_SIGMA_MPS2)
    v, p00, p01 = v_buf, p00_buf, p01_buf
    t1, p01p, p00p, p11p, k0, k1 = scratch
    for k, (lo, w, _) in enumerate(seg.rows(), start=1):
        hi = lo + w
        if w != width:  # some segments have ended: the rest are a prefix
            width = w
            v, p00, p01, a, p11 = v_buf[:w], p00_buf[:w], p01_buf[:w], a[:w], p11[:w]
            t1, p01p, p00p, p11p, k0, k1 = (b[:w] for b in scratch)
        dt = dt_sm[lo:hi]
        np.multiply(dt, p11, out=t1)  # dt·p11
        np.add(p01, t1, out=p01p)  # p01 + dt·p11 + qdt·dt/2
        p01p += half_sm[lo:hi]
        np.multiply(p01, 2.0, out=p00p)  # p00 + dt·(2·p01 + dt·p11) + qdt·dt²/3
        p00p += t1
        p00p *= dt
        p00p += p00
        p00p += cubic_sm[lo:hi]
        np.add(p11, qdt_sm[lo:hi], out=p11p)
        s = np.add(p00p, r2, out=s_sm[lo:hi])
        np.divide(p00p, s, out=k0)
        np.divide(p01p, s, out=k1)
        vp = np.multiply(dt, a, out=vp_sm[lo:hi])  # v + dt·a
        vp += v
        y = np.subtract(z_sm[lo:hi], vp, out=t1)  # the innovation (dt·p11 is used up)
        a_new = np.multiply(k1, y, out=a_sm[lo:hi])  # a + k1·y
        a_new += a
        if k >= 2:
            jerk = np.subtract(a_new, a, out=jerk_sm[lo:hi])
            jerk /= dt
        np.multiply(k0, y, out=v)  # vp + k0·y
        v += vp
        np.multiply(k0, r2, out=p00)
        np.multiply(k1, r2, out=p01)
        np.multiply(k1, p01p, out=k0)  # p11p - k1·p01p (k0 is used up)
        a, p11 = a_new, np.subtract(p11p, k0, out=p11_sm[lo:hi])
    return (v.copy(), a.copy(), p00.copy(), p01.copy(), p11.copy())


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
