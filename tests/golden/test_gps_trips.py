"""Golden: real GPS logs (Chicago 2007 travel survey) against the survey's own trip analysis.

For every trip in trips.csv, the fixes within its bounds are processed as one input with
`--method difference`; the odometer, the maximum speed and the extreme accelerations must
match the survey's `distance_total` (miles, trapezoidal), `max_speed` (mph) and
`max_acceleration/deceleration_ft_per_second_squared` (plain backward differences).

Survey conventions checked against the data (see tests/data/README.md):
- Within these trips the logger only pauses while the car stands still: every interval longer
  than 1 s (15-263 s) has speed 0 at both ends. Whether a gap is bridged by the trapezoid or
  counted as nothing (kinestream: beyond max_gap_s = 120 s) therefore adds 0 m either way,
  and a difference across a gap is 0, so neither convention moves the figures.
- Units are converted exactly: 1 mph = 0.44704 m/s, 1 ft = 0.3048 m. The survey's
  accelerations are the speed differences times 1.466667 ft/s per mph (22/15 rounded to six
  decimals: +2.27e-7 relative, reproduced to 1e-9 from the speed_mph column), so they exceed
  the exact conversion by ~5e-7 m/s², far inside the 1e-3 m/s² tolerance.
"""

import csv
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.io.csv_input import CsvOptions
from kinestream.offline import InputOptions, process_inputs

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded"
MPS_PER_MPH = 0.44704  # exact: 1609.344 m / 3600 s
M_PER_FT = 0.3048  # exact
M_PER_MILE = 1609.344  # exact
CHICAGO = ZoneInfo("America/Chicago")
DIFFERENCE = TrackerParams(estimator=EstimatorParams(method=Method.DIFFERENCE))


def survey_trips() -> list[tuple[str, int, dict[str, str]]]:
    trips = []
    for folder in sorted(RECORDED.iterdir()):
        with (folder / "trips.csv").open(newline="") as file:
            trips += [(folder.name, i, row) for i, row in enumerate(csv.DictReader(file))]
    return trips


TRIPS = survey_trips()


def trip_input(tmp_path: Path, vehicle: str, trip: dict[str, str]) -> Path:
    """The day's fixes with start_ts <= timestamp <= end_ts, as a CSV of their own."""
    with (RECORDED / vehicle / "2007-04-09.csv").open(newline="") as file:
        rows = list(csv.reader(file))
    header, fixes = rows[0], rows[1:]
    inside = [r for r in fixes if trip["start_ts"] <= r[0] <= trip["end_ts"]]
    # The same bounds in cycle_sec (start_rts..end_rts) select the same fixes.
    by_rts = [r for r in fixes if float(trip["start_rts"]) <= float(r[1]) <= float(trip["end_rts"])]
    assert inside == by_rts
    path = tmp_path / f"{vehicle}.csv"
    with path.open("w", newline="") as file:
        csv.writer(file).writerows([header, *inside])
    return path


@pytest.mark.parametrize(
    ("vehicle", "index", "trip"), TRIPS, ids=[f"{v}-trip{i}" for v, i, _ in TRIPS]
)
def test_trip_figures_match_the_survey(tmp_path, vehicle, index, trip):
    """Odometer within 0.5 %, max speed, and difference extremes within 1e-3 m/s² of trips.csv."""
    options = InputOptions(csv=CsvOptions(timezone=CHICAGO))
    result = process_inputs([trip_input(tmp_path, vehicle, trip)], options, DIFFERENCE)
    (summary,) = result.summaries.values()
    assert (summary.rejected, summary.duplicates, result.problems) == (0, 0, [])
    assert summary.distance_m / M_PER_MILE == pytest.approx(float(trip["distance_total"]), rel=5e-3)
    assert summary.max_speed_mps == pytest.approx(float(trip["max_speed"]) * MPS_PER_MPH, rel=1e-12)
    max_accel = float(trip["max_acceleration_ft_per_second_squared"]) * M_PER_FT
    max_decel = float(trip["max_deceleration_ft_per_second_squared"]) * M_PER_FT
    assert summary.max_acceleration_mps2 == pytest.approx(max_accel, abs=1e-3)
    assert summary.max_deceleration_mps2 == pytest.approx(max_decel, abs=1e-3)


@pytest.mark.parametrize("vehicle", sorted(p.name for p in RECORDED.iterdir()))
def test_whole_day_keeps_every_fix_and_covers_the_survey_trips(vehicle):
    """The whole day as one input: every fix accepted, odometer at least the surveyed trips'."""
    path = RECORDED / vehicle / "2007-04-09.csv"
    with path.open(newline="") as file:
        fixes = sum(1 for _ in file) - 1
    options = InputOptions(csv=CsvOptions(timezone=CHICAGO, vehicle_id=vehicle))
    result = process_inputs([path], options)  # the default method
    summary = result.summaries[vehicle]
    assert (summary.readings, summary.rejected) == (fixes, 0)
    surveyed_miles = sum(float(t["distance_total"]) for v, _, t in TRIPS if v == vehicle)
    assert summary.distance_m / M_PER_MILE >= surveyed_miles * (1 - 5e-3)


@pytest.mark.parametrize(
    ("vehicle", "index", "trip"), TRIPS, ids=[f"{v}-trip{i}" for v, i, _ in TRIPS]
)
def test_every_gap_inside_a_trip_is_at_standstill(vehicle, index, trip):
    """The data fact the comparison rests on: fixes more than 1 s apart have speed 0 at both
    ends, so bridging a gap or not, or differencing across it, changes no surveyed figure."""
    with (RECORDED / vehicle / "2007-04-09.csv").open(newline="") as file:
        fixes = [
            r for r in csv.DictReader(file) if trip["start_ts"] <= r["timestamp"] <= trip["end_ts"]
        ]
    for before, after in pairwise(fixes):
        if float(after["cycle_sec"]) - float(before["cycle_sec"]) > 1:
            assert float(before["speed_mph"]) == float(after["speed_mph"]) == 0.0, before
