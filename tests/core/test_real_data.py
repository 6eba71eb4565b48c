"""Stream and batch agree bit for bit on the real drive cycles and GPS logs (tests/data)."""

from __future__ import annotations

import csv
import datetime
import pathlib

import numpy as np
import pytest

from kinestream.core.batch import process_batch
from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.core.records import HarshEvent, Kinematics, Reading, TripSummary

from .streams import run_stream

DATA = pathlib.Path(__file__).parents[1] / "data"
MPS_PER_MPH = 0.44704
EPOCH_OFFSET_S = 1_767_225_600.0  # cycles are in seconds from 0: place them in 2026


def _cycle(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    ts = np.array([float(r["cycSecs"]) for r in rows]) + EPOCH_OFFSET_S
    return ts, np.array([float(r["cycMps"]) for r in rows])


def _gps(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    utc = datetime.UTC
    ts = [
        datetime.datetime.fromisoformat(r["timestamp"]).replace(tzinfo=utc).timestamp()
        for r in rows
    ]
    return np.array(ts), np.array([float(r["speed_mph"]) for r in rows]) * MPS_PER_MPH


INPUTS = {p.stem: (_cycle, p) for p in sorted((DATA / "cycles").glob("*.csv"))} | {
    p.parent.name: (_gps, p) for p in sorted((DATA / "recorded").glob("*/2*.csv"))
}


@pytest.mark.parametrize("method", [Method.KALMAN, Method.DIFFERENCE])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_stream_and_batch_are_identical_on_real_data(name, method):
    """Every kinematics row, trip and event: exactly the same numbers on both paths."""
    loader, path = INPUTS[name]
    ts, speed = loader(path)
    params = TrackerParams(estimator=EstimatorParams(method=method))
    stream = run_stream(
        params, [Reading(name, float(t), float(v)) for t, v in zip(ts, speed, strict=True)]
    )
    batch = process_batch(name, ts, speed, params)
    assert [r for r in stream if type(r) is Kinematics] == list(batch.kinematics())
    assert [r for r in stream if type(r) is TripSummary] == batch.trips
    assert [r for r in stream if type(r) is HarshEvent] == batch.events
    assert batch.rejections == [] and int(batch.duplicates[0]) == 0


@pytest.mark.parametrize(
    ("name", "published_km"),
    [("udds", 11.99), ("hwfet", 16.51), ("us06", 12.89), ("wltc_3b", 23.266)],
)
def test_cycle_distance_matches_the_published_figure(name, published_km):
    """The odometer over each regulatory cycle is its published length within 0.1%."""
    ts, speed = _cycle(DATA / "cycles" / f"{name}.csv")
    result = process_batch(name, ts, speed, TrackerParams())
    assert result.distance_m[-1] == pytest.approx(published_km * 1000.0, rel=1e-3)
