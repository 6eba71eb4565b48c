"""``difference``: backward Δv/Δt as Telegraf/Kapacitor compute it, on hand data and real cycles."""

from __future__ import annotations

import csv
import pathlib

import numpy as np
import pytest

from kinestream.core.estimators.difference import DifferenceEstimator, estimate_batch

CYCLES = pathlib.Path(__file__).parents[2] / "data" / "cycles"


def test_acceleration_and_jerk_are_backward_differences():
    """Readings (0 s, 0), (1 s, 2), (3 s, 8): accelerations 2 and 3 m/s², jerk (3-2)/2 m/s³."""
    estimator = DifferenceEstimator()
    assert estimator.update(100.0, 0.0).acceleration_mps2 is None
    second = estimator.update(101.0, 2.0)
    assert second.acceleration_mps2 == 2.0
    assert second.jerk_mps3 is None
    third = estimator.update(103.0, 8.0)
    assert third.acceleration_mps2 == 3.0
    assert third.jerk_mps3 == 0.5
    assert third.acceleration_sigma_mps2 is None


def test_prediction_is_last_speed_with_zero_sigma():
    """The expected next speed is the last measured one, with no uncertainty claimed."""
    estimator = DifferenceEstimator()
    assert estimator.predict(5.0) is None
    estimator.update(5.0, 7.5)
    prediction = estimator.predict(6.0)
    assert (prediction.speed_mps, prediction.sigma_mps) == (7.5, 0.0)


def test_non_advancing_timestamp_restarts_instead_of_dividing_by_zero():
    """A repeated timestamp gives no acceleration and the next reading differs from it."""
    estimator = DifferenceEstimator()
    estimator.update(10.0, 1.0)
    assert estimator.update(10.0, 3.0).acceleration_mps2 is None
    assert estimator.update(12.0, 7.0).acceleration_mps2 == 2.0


@pytest.mark.parametrize(
    ("name", "published_max_mps2"),
    [("udds", 1.475), ("hwfet", 1.431), ("us06", 3.755), ("wltc_3b", 1.667)],
)
def test_cycle_max_acceleration_matches_published_1hz_figure(name, published_max_mps2):
    """On the 1 Hz regulatory cycles the max backward difference is the published figure."""
    with (CYCLES / f"{name}.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    ts = np.array([float(r["cycSecs"]) for r in rows])
    speed = np.array([float(r["cycMps"]) for r in rows])
    restart_before = np.zeros(len(ts), dtype=bool)
    restart_before[0] = True
    accel = estimate_batch(ts, speed, restart_before).acceleration_mps2
    assert np.nanmax(accel) == pytest.approx(published_max_mps2, abs=1e-3)
