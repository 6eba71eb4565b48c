"""The figure: one vehicle's speed, acceleration and distance rendered to a real PNG."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from kinestream.cli import main
from kinestream.core.params import TrackerParams
from kinestream.core.records import HarshEvent, Kinematics, TripSummary
from kinestream.errors import UsageError
from kinestream.plot import render_png, select_view, time_axis_for

DATA = Path(__file__).parent / "data"
T0 = 1767225600.0  # 2026-01-01T00:00:00Z

matplotlib_image = pytest.importorskip("matplotlib.image", reason="matplotlib (plot extra)")


def _kinematics(vehicle_id: str, ts: float, speed_mps: float, trip_id: str | None = None):
    return Kinematics(vehicle_id, ts, speed_mps, 0.0, None, None, 0.0, trip_id, None, ())


def assert_png_has_a_picture(path: Path) -> None:
    """A valid PNG whose pixels vary and are not almost all white background."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib_image.imread(path)[..., :3]
    height, width = pixels.shape[:2]
    assert height > 400
    assert width > 600
    assert pixels.std() > 0.05
    non_white = (pixels.min(axis=-1) < 0.9).mean()
    assert non_white > 0.03


def test_plot_command_draws_the_udds_cycle(tmp_path, capsys):
    """`kinestream plot udds.csv -o out.png` runs the cycle through the core and writes a PNG
    with real content, naming the trip it found."""
    out = tmp_path / "udds.png"
    assert main(["plot", str(DATA / "cycles" / "udds.csv"), "-o", str(out)]) == 0
    assert_png_has_a_picture(out)
    printed = capsys.readouterr().out
    assert "trip 1: udds-" in printed
    assert f"wrote {out}" in printed


def test_plot_command_counts_unreadable_lines_on_stderr(tmp_path, capsys):
    """A log line that is not JSON is skipped and reported on stderr, not dropped silently;
    the readable lines are still drawn."""
    log = tmp_path / "log.jsonl"
    log.write_text(
        '{"t": 1767225600.0, "topic": "vehicles/a/speed", "payload": "1.5"}\n'
        "not json\n"
        '{"t": 1767225601.0, "topic": "vehicles/a/speed", "payload": "2.5"}\n'
    )
    assert main(["plot", str(log), "-o", str(tmp_path / "a.png")]) == 0
    captured = capsys.readouterr()
    assert "kinestream plot: 1 lines or topics skipped:" in captured.err
    assert "line 2" in captured.err
    assert "2 readings" in captured.out


def test_plot_command_refuses_an_output_that_is_not_png(tmp_path, capsys):
    """The figure is PNG only: another extension is a usage error (exit 2), nothing written."""
    out = tmp_path / "udds.svg"
    assert main(["plot", str(DATA / "cycles" / "udds.csv"), "-o", str(out)]) == 2
    assert "PNG" in capsys.readouterr().err
    assert not out.exists()


def test_missing_acceleration_and_long_gaps_still_render(tmp_path):
    """A first reading without acceleration and a gap beyond max_gap_s do not break drawing."""
    records = [
        Kinematics("v", T0, 0.0, None, None, None, 0.0, None, None, ()),
        Kinematics("v", T0 + 1, 1.0, 1.0, None, None, 0.5, None, None, ()),
        Kinematics("v", T0 + 1000, 2.0, None, None, None, 0.5, None, None, ()),
        Kinematics("v", T0 + 1001, 3.0, 1.0, None, None, 3.0, None, None, ()),
    ]
    view = select_view(
        records, vehicle_id="v", trip_id=None, method="kalman", params=TrackerParams()
    )
    out = tmp_path / "gap.png"
    render_png(view, out)
    assert_png_has_a_picture(out)


def test_several_vehicles_need_a_choice():
    """With more than one vehicle and no --vehicle, the error lists the vehicles."""
    records = [_kinematics("a", T0, 1.0), _kinematics("b", T0, 1.0)]
    with pytest.raises(UsageError, match=r"2 vehicles \['a', 'b'\].*--vehicle"):
        select_view(records, vehicle_id=None, trip_id=None, method="kalman", params=TrackerParams())


def test_unknown_vehicle_is_a_usage_error():
    """Asking for a vehicle the input lacks names the vehicles present."""
    with pytest.raises(UsageError, match=r"'zz' is not in the input.*'a'"):
        select_view(
            [_kinematics("a", T0, 1.0)],
            vehicle_id="zz",
            trip_id=None,
            method="kalman",
            params=TrackerParams(),
        )


def test_trip_selects_its_window_and_events():
    """--trip keeps the readings within the trip's bounds and only that trip's marks."""
    records = [
        _kinematics("a", T0 + 0, 0.0),
        _kinematics("a", T0 + 10, 5.0, "t1"),
        _kinematics("a", T0 + 20, 5.0, "t1"),
        _kinematics("a", T0 + 30, 0.0),
        _kinematics("a", T0 + 40, 5.0, "t2"),
        TripSummary("a", "t1", T0 + 10, T0 + 20, 10, 50, 0, 5, 0.5, -0.5, 0, 0, 0, "stop"),
        TripSummary("a", "t2", T0 + 40, T0 + 50, 10, 50, 0, 5, 0.5, -0.5, 0, 0, 0, "stop"),
        HarshEvent("a", "harsh_braking", T0 + 15, T0 + 16, -0.5, 5.0, "t1"),
        HarshEvent("a", "harsh_braking", T0 + 45, T0 + 46, -0.5, 5.0, "t2"),
    ]
    view = select_view(
        records, vehicle_id="a", trip_id="t1", method="kalman", params=TrackerParams()
    )
    assert [k.ts - T0 for k in view.kinematics] == [10, 20]
    assert [t.trip_id for t in view.trips] == ["t1"]
    assert [e.start_ts - T0 for e in view.events] == [15]


def test_open_trip_is_found_from_its_readings():
    """A trip that has not ended yet (no summary) is bounded by its own readings."""
    records = [
        _kinematics("a", T0, 0.0),
        _kinematics("a", T0 + 5, 3.0, "t9"),
        _kinematics("a", T0 + 6, 4.0, "t9"),
    ]
    view = select_view(
        records, vehicle_id=None, trip_id="t9", method="kalman", params=TrackerParams()
    )
    assert [k.ts - T0 for k in view.kinematics] == [5, 6]


def test_unknown_trip_lists_the_known_ones():
    """Asking for a trip the vehicle never had names the trips it had."""
    records = [_kinematics("a", T0, 3.0, "t1")]
    with pytest.raises(UsageError, match=r"no trip 'nope'.*'t1'"):
        select_view(
            records, vehicle_id=None, trip_id="nope", method="kalman", params=TrackerParams()
        )


@pytest.mark.parametrize(
    ("span_s", "label"),
    [(1369.0, "time (s)"), (3 * 3600.0, "time (min)"), (9 * 3600.0, "time (h)")],
)
def test_time_axis_unit_follows_the_span(span_s, label):
    """A drive cycle reads in seconds, a long trip in minutes, a whole day in hours."""
    assert time_axis_for(span_s).label == label


def test_missing_matplotlib_is_a_usage_error_naming_the_extra(monkeypatch, tmp_path):
    """Without matplotlib, rendering fails with a usage error that says how to install it."""
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    view = select_view(
        [_kinematics("a", T0, 1.0)],
        vehicle_id=None,
        trip_id=None,
        method="kalman",
        params=TrackerParams(),
    )
    with pytest.raises(UsageError, match=r"install kinestream\[plot\]"):
        render_png(view, tmp_path / "never.png")
    assert not (tmp_path / "never.png").exists()


def test_trip_can_be_chosen_by_its_figure_number():
    """--trip 2 means the vehicle's second trip by start time, as the figure labels it."""
    records = [
        _kinematics("a", T0 + 10, 5.0, "late"),
        _kinematics("a", T0 + 40, 5.0, "early"),
        TripSummary("a", "late", T0 + 40, T0 + 50, 10, 50, 0, 5, 0.5, -0.5, 0, 0, 0, "stop"),
        TripSummary("a", "early", T0 + 10, T0 + 20, 10, 50, 0, 5, 0.5, -0.5, 0, 0, 0, "stop"),
    ]
    view = select_view(
        records, vehicle_id=None, trip_id="2", method="kalman", params=TrackerParams()
    )
    assert [t.trip_id for t in view.trips] == ["late"]
    assert view.trip_numbers == (2,)


def test_plot_takes_tracker_parameters_from_the_config(tmp_path, capsys):
    """--config applies the daemon's tracker settings: with a harsh threshold of 0.1 g from the
    config, UDDS (peaks of 1.475 m/s², 0.15 g) shows harsh accelerations."""
    config = tmp_path / "kinestream.toml"
    config.write_text('[tracker]\nmethod = "difference"\nharsh_acceleration_g = 0.1\n')
    out = tmp_path / "udds.png"
    udds = str(DATA / "cycles" / "udds.csv")
    assert main(["plot", udds, "-o", str(out), "--config", str(config)]) == 0
    summary_line = capsys.readouterr().out.strip().splitlines()[-1]
    harsh_events = int(re.search(r"(\d+) harsh events", summary_line).group(1))
    assert harsh_events > 0
    assert_png_has_a_picture(out)
