"""Golden: the four regulatory drive cycles against their published distance and acceleration.

Reference figures are the published ones (EPA dynamometer schedules; UNECE GTR No. 15 for
WLTC), copied from tests/data/README.md: nothing here was computed by kinestream.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.offline import process_inputs

ROOT = Path(__file__).resolve().parents[2]
CYCLES = ROOT / "tests" / "data" / "cycles"

# name: (published distance m, published 1 Hz max acceleration m/s², rows in the file)
PUBLISHED = {
    "udds": (11_990.0, 1.475, 1370),  # 1369 s at 1 Hz, both ends included
    "hwfet": (16_510.0, 1.431, 766),  # 765 s
    "us06": (12_890.0, 3.755, 601),  # 596 s + 4 s idle in the file
    "wltc_3b": (23_266.0, 1.667, 1801),  # 1800 s
}
DISTANCE_REL = 1e-3  # 0.1 %
ACCEL_ABS_MPS2 = 1e-3


def run_cli(*argv: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "kinestream", "process", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def cli_difference_summaries() -> dict[str, dict]:
    """All four cycles in one `kinestream process --summary --method difference` run."""
    paths = [str(CYCLES / f"{name}.csv") for name in PUBLISHED]
    return {s["vehicle_id"]: s for s in run_cli(*paths, "--summary", "--method", "difference")}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_cli_distance_equals_the_published_figure(cli_difference_summaries, name):
    """Through the CLI, each cycle's odometer is its published distance within 0.1 %."""
    published_m, _, rows = PUBLISHED[name]
    summary = cli_difference_summaries[name]
    assert (summary["readings"], summary["rejected"], summary["duplicates"]) == (rows, 0, 0)
    assert summary["distance_m"] == pytest.approx(published_m, rel=DISTANCE_REL)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_cli_difference_max_acceleration_equals_the_published_figure(
    cli_difference_summaries, name
):
    """Through the CLI, `difference` max acceleration is the published 1 Hz figure within 1e-3."""
    _, published_mps2, _ = PUBLISHED[name]
    summary = cli_difference_summaries[name]
    assert summary["max_acceleration_mps2"] == pytest.approx(published_mps2, abs=ACCEL_ABS_MPS2)


@pytest.mark.parametrize("method", [Method.KALMAN, Method.POLYFIT])
def test_every_method_keeps_every_reading_and_the_published_distance(method):
    """With kalman (default) and polyfit too, no cycle reading is refused and distances hold.

    Distance integrates the measured speed, so it must not depend on the method; a method
    whose step check refused real readings would lose distance here.
    """
    paths = [CYCLES / f"{name}.csv" for name in PUBLISHED]
    params = TrackerParams(estimator=EstimatorParams(method=method))
    result = process_inputs(paths, params=params)
    assert result.problems == []
    for name, (published_m, _, rows) in PUBLISHED.items():
        summary = result.summaries[name]
        assert (summary.readings, summary.rejected) == (rows, 0)
        assert summary.distance_m == pytest.approx(published_m, rel=DISTANCE_REL)
