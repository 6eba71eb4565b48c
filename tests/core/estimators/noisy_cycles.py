"""The noisy-cycle procedure of issue 2 ("Noise"), shared by the accuracy test and benchmark.

Each 1 Hz regulatory cycle is interpolated with PCHIP; sample times on a grid of the chosen
rate are jittered uniformly by up to ±20 % of the period; white noise σ = 0.2 m/s is added to
the interpolated speed and the result clipped at 0 (a speed is a magnitude). The truth is the
interpolant's derivative at the jittered sample times. The same procedure serves 10 Hz and
1 Hz, so at 1 Hz the samples fall between the schedule's own points and the truth is still
the PCHIP derivative there.
"""

from __future__ import annotations

import csv
import pathlib
from typing import NamedTuple

import numpy as np
from scipy.interpolate import PchipInterpolator

CYCLES_DIR = pathlib.Path(__file__).parents[2] / "data" / "cycles"
CYCLE_NAMES = ("udds", "hwfet", "us06", "wltc_3b")
NOISE_SIGMA_MPS = 0.2
JITTER_FRACTION = 0.2
SEED = 20_260_101
EPOCH_S = 1_767_225_600.0


class NoisyCycle(NamedTuple):
    ts: np.ndarray  # epoch s, strictly increasing
    speed_mps: np.ndarray  # noisy, clipped at 0
    true_accel_mps2: np.ndarray  # PCHIP derivative at ts
    true_accel: PchipInterpolator  # the derivative as a function of cycle seconds
    t0: float  # epoch of the cycle's second 0


def load_cycle(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(cycle seconds, speed m/s) of one bundled cycle; the WLTC file's BOM is fine."""
    with (CYCLES_DIR / f"{name}.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    return (
        np.array([float(r["cycSecs"]) for r in rows]),
        np.array([float(r["cycMps"]) for r in rows]),
    )


def noisy_cycle(name: str, rate_hz: float, seed: int = SEED) -> NoisyCycle:
    """The cycle sampled at ``rate_hz`` with jitter and noise, reproducible from ``seed``."""
    secs, speed = load_cycle(name)
    interpolant = PchipInterpolator(secs, speed)
    rng = np.random.default_rng([seed, CYCLE_NAMES.index(name), round(rate_hz * 1000)])
    period_s = 1.0 / rate_hz
    grid = np.arange(secs[0], secs[-1] + period_s / 2, period_s)
    jitter = rng.uniform(-JITTER_FRACTION, JITTER_FRACTION, grid.shape) * period_s
    t = np.clip(grid + jitter, secs[0], secs[-1])
    noisy = np.maximum(interpolant(t) + rng.normal(0.0, NOISE_SIGMA_MPS, t.shape), 0.0)
    derivative = interpolant.derivative()
    return NoisyCycle(EPOCH_S + t, noisy, derivative(t), derivative, EPOCH_S)


def rmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Root-mean-square error over the readings that have an estimate."""
    has = ~np.isnan(estimate)
    return float(np.sqrt(np.mean((estimate[has] - truth[has]) ** 2)))


def lag_s(cycle: NoisyCycle, estimate: np.ndarray, max_lag_s: float = 3.0) -> float:
    """Delay of the estimate: the shift L maximising corr(estimate(t), truth(t - L))."""
    has = ~np.isnan(estimate)
    t = cycle.ts[has] - cycle.t0
    lags = np.arange(-1.0, max_lag_s + 1e-9, 0.01)
    corr = [np.corrcoef(estimate[has], cycle.true_accel(t - lag))[0, 1] for lag in lags]
    return float(lags[int(np.argmax(corr))])
