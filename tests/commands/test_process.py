"""`kinestream process`: inputs, summaries, output files, counting, and exit codes."""

import argparse
import csv
import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from kinestream.cli import main
from kinestream.commands.process import load_command_settings
from kinestream.offline import InputOptions, process_inputs

SRC = Path(__file__).resolve().parents[2] / "src"
T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def log_line(t: float, vehicle: str, payload: object) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return json.dumps({"t": t, "topic": f"vehicles/{vehicle}/speed", "payload": text})


def write_log(tmp_path: Path, lines: list[str], name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(capsys, *argv: str):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def summaries(out: str) -> dict[str, dict]:
    objects = [json.loads(line) for line in out.splitlines()]
    return {o["vehicle_id"]: o for o in objects}


@pytest.fixture
def ramp_log(tmp_path):
    """Vehicle a: 0, 2, 4 m/s at 1 s steps (hand-checkable), vehicle b: one reading."""
    lines = [
        log_line(T0, "a", {"ts": T0, "speed": 0}),
        log_line(T0 + 1, "a", {"ts": T0 + 1, "speed": 7.2, "unit": "km/h"}),
        log_line(T0 + 1.5, "b", {"ts": T0 + 1.5, "speed": 1}),
        log_line(T0 + 2, "a", {"ts": T0 + 2, "speed": 4}),
    ]
    return write_log(tmp_path, lines)


def test_summary_has_one_compact_object_per_vehicle(capsys, ramp_log):
    """--summary prints one JSON object per line per vehicle with the documented fields."""
    code, out, err = run_cli(
        capsys, "process", str(ramp_log), "--summary", "--method", "difference"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(" " not in line for line in lines)  # compact
    a = summaries(out)["a"]
    # Hand-computed: trapezoids 0.5*(0+2)*1 + 0.5*(2+4)*1 = 4 m; Δv/Δt = 2 m/s² twice.
    assert a["readings"] == 3
    assert (a["rejected"], a["duplicates"]) == (0, 0)
    assert a["duration_s"] == 2.0
    assert a["distance_m"] == pytest.approx(4.0, rel=1e-12)
    assert a["max_speed_mps"] == 4.0
    assert a["max_acceleration_mps2"] == pytest.approx(2.0, rel=1e-12)
    assert a["trips"] == [] or isinstance(a["trips"], list)
    for key in ("max_deceleration_mps2", "trips"):
        assert key in a


def test_trips_in_the_summary_are_trip_records(capsys, tmp_path):
    """A vehicle that drives and stops shows its trip with the documented trip fields."""
    speeds = [0.0] * 3 + [5.0] * 10 + [0.0] * 3
    lines = [log_line(T0 + i, "car", {"ts": T0 + i, "speed": v}) for i, v in enumerate(speeds)]
    code, out, _ = run_cli(capsys, "process", str(write_log(tmp_path, lines)), "--summary")
    assert code == 0
    (trip,) = summaries(out)["car"]["trips"]
    for key in ("trip_id", "start_ts", "end_ts", "distance_m", "max_speed_mps", "end_reason"):
        assert key in trip
    assert trip["max_speed_mps"] == 5.0


def test_every_input_reading_is_accounted_for(capsys, tmp_path):
    """Readings end as accepted, rejected or duplicate; unreadable lines are reported on stderr."""
    lines = [
        log_line(T0, "a", {"ts": T0, "speed": 1}),
        log_line(T0 + 1, "a", {"ts": T0, "speed": 1}),  # duplicate
        log_line(T0 + 2, "a", {"ts": T0 + 2, "speed": "fast"}),  # invalid field
        log_line(T0 + 3, "a", {"ts": T0 + 3, "speed": 1, "unit": "parsec/s"}),  # unknown unit
        log_line(T0 + 4, "a", {"ts": T0 + 400, "speed": 1}),  # > 10 s after its receive time
        log_line(T0 + 6, "a", {"ts": T0 + 6, "speed": 999}),  # too fast
        log_line(T0 + 7, "a", '[1, {"speed": 2}]'),  # whole message refused
        log_line(T0 + 8, "bad id!", {"speed": 1}),  # belongs to no vehicle
        "this is not json",
        log_line(T0 + 9, "a", {"ts": T0 + 9, "speed": 2}),
        log_line(T0 + 10, "a", {"ts": T0 + 5, "speed": 1}),  # late
    ]
    code, out, err = run_cli(capsys, "process", str(write_log(tmp_path, lines)), "--summary")
    assert code == 0
    a = summaries(out)["a"]
    assert (a["readings"], a["duplicates"], a["rejected"]) == (2, 1, 6)
    assert a["rejected_by_reason"] == {
        "invalid_field": 1,
        "unknown_unit": 1,
        "timestamp_in_future": 1,
        "late": 1,
        "speed_too_high": 1,
        "malformed_payload": 1,
    }
    assert "2 lines or topics skipped" in err
    assert "line 9: not JSON" in err
    assert "line 8: vehicle id 'bad id!'" in err


def test_default_unit_applies_to_payloads_without_one(capsys, tmp_path):
    """--default-unit converts payloads that name no unit (bare numbers and objects)."""
    lines = [log_line(T0, "a", {"ts": T0, "speed": 36}), log_line(T0 + 1, "a", "72")]
    path = write_log(tmp_path, lines)
    _, out, _ = run_cli(capsys, "process", str(path), "--summary", "--default-unit", "km/h")
    assert summaries(out)["a"]["max_speed_mps"] == pytest.approx(20.0, rel=1e-12)


def test_output_jsonl_has_one_kinematics_record_per_accepted_reading(capsys, ramp_log, tmp_path):
    """-o OUT.jsonl writes the kinematics records with the documented field names, in order."""
    out_path = tmp_path / "out.jsonl"
    code, out, _ = run_cli(capsys, "process", str(ramp_log), "-o", str(out_path))
    assert code == 0
    assert out == ""
    records = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [(r["vehicle_id"], r["ts"]) for r in records] == [
        ("a", T0),
        ("a", T0 + 1),
        ("b", T0 + 1.5),
        ("a", T0 + 2),
    ]
    assert list(records[0]) == [
        "vehicle_id",
        "ts",
        "speed_mps",
        "acceleration_mps2",
        "acceleration_sigma_mps2",
        "jerk_mps3",
        "distance_m",
        "trip_id",
        "trip_distance_m",
        "flags",
    ]
    assert records[1]["speed_mps"] == pytest.approx(2.0)
    assert records[0]["flags"] == []


def test_output_csv_by_extension(capsys, ramp_log, tmp_path):
    """-o OUT.csv writes the same records as CSV; null becomes an empty cell."""
    out_path = tmp_path / "out.csv"
    assert main(["process", str(ramp_log), "-o", str(out_path), "--method", "difference"]) == 0
    rows = list(csv.DictReader(out_path.open()))
    assert len(rows) == 4
    assert rows[0]["vehicle_id"] == "a"
    assert rows[0]["acceleration_mps2"] == ""  # no difference before a second reading
    assert float(rows[3]["acceleration_mps2"]) == pytest.approx(2.0)
    assert float(rows[3]["distance_m"]) == pytest.approx(4.0)


def test_receive_time_flag_reaches_the_output(capsys, tmp_path):
    """A bare-number payload is stamped with the log's receive time and flagged receive_time."""
    out_path = tmp_path / "out.jsonl"
    main(["process", str(write_log(tmp_path, [log_line(T0 + 0.5, "a", "3")])), "-o", str(out_path)])
    (record,) = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert (record["ts"], record["flags"]) == (T0 + 0.5, ["receive_time"])


def test_csv_options_are_applied(capsys, tmp_path):
    """--time-column, --speed-column, --speed-unit and --vehicle-id shape a CSV input."""
    path = tmp_path / "drive.csv"
    path.write_text("when,v\n2026-01-01 00:00:00,0\n2026-01-01 00:00:01,10\n")
    argv = ["process", str(path), "--summary", "--time-column", "when", "--speed-column", "v"]
    argv += ["--speed-unit", "mph", "--vehicle-id", "van-1", "--timezone", "Europe/Paris"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    van = summaries(out)["van-1"]
    assert van["max_speed_mps"] == pytest.approx(4.4704, rel=1e-12)
    assert van["first_ts"] == T0 - 3600  # Paris is UTC+1 in January


def test_csv_default_vehicle_id_is_the_stem(capsys, tmp_path):
    """Without --vehicle-id a CSV's readings belong to a vehicle named after the file stem."""
    path = tmp_path / "morning-run.csv"
    path.write_text("ts,speed_kmh\n1767225600,0\n1767225601,36\n")
    _, out, _ = run_cli(capsys, "process", str(path), "--summary")
    assert summaries(out)["morning-run"]["max_speed_mps"] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["process", "{missing}", "--summary"], "no such file"),
        (["process", "{txt}", "--summary"], "cannot tell the input format"),
        (["process", "{log}"], "nothing to do"),
        (["process", "{csv_no_cols}", "--summary"], "no time column"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, tmp_path, argv, named):
    """Bad inputs or arguments exit 2 with one line on stderr naming the problem."""
    files = {
        "missing": tmp_path / "missing.jsonl",
        "txt": tmp_path / "notes.txt",
        "log": write_log(tmp_path, [log_line(T0, "a", "1")]),
        "csv_no_cols": tmp_path / "x.csv",
    }
    files["txt"].write_text("hello\n")
    files["csv_no_cols"].write_text("a,b\n1,2\n")
    code, out, err = run_cli(capsys, *[arg.format(**files) for arg in argv])
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert named in err


@pytest.mark.parametrize(
    "argv", [["--default-unit", "furlongs"], ["--timezone", "Mars/Olympus"], ["--method", "magic"]]
)
def test_bad_option_values_are_usage_errors(capsys, ramp_log, argv):
    """Unknown units, time zones or methods are refused by the argument parser (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        main(["process", str(ramp_log), "--summary", *argv])
    assert exited.value.code == 2
    assert argv[1] in capsys.readouterr().err


def test_unwritable_output_exits_1(capsys, ramp_log, tmp_path):
    """An output that cannot be written is a run-time failure: exit 1, one line on stderr."""
    out_path = tmp_path / "no-such-dir" / "out.jsonl"
    code, _, err = run_cli(capsys, "process", str(ramp_log), "-o", str(out_path))
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "cannot write" in err


def test_python_api_matches_the_cli(capsys, ramp_log):
    """process_inputs (the Python API) gives the summaries the CLI prints."""
    result = process_inputs([ramp_log], InputOptions())
    _, out, _ = run_cli(capsys, "process", str(ramp_log), "--summary")
    printed = summaries(out)
    for vehicle_id, summary in result.summaries.items():
        assert printed[vehicle_id]["distance_m"] == summary.distance_m
        assert printed[vehicle_id]["readings"] == summary.readings


def test_cli_subprocess_runs_process(ramp_log):
    """`python -m kinestream process ... --summary` works as a separate process (exit 0)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-m", "kinestream", "process", str(ramp_log), "--summary"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert set(summaries(result.stdout)) == {"a", "b"}


def test_input_messages_gives_replayable_messages_for_logs_and_csvs(tmp_path, ramp_log):
    """input_messages reads a log as recorded and a CSV row as a {"ts","speed","unit"} message."""
    from kinestream.offline import input_messages

    assert [m[0] for m in input_messages(ramp_log, InputOptions())] == [
        T0,
        T0 + 1,
        T0 + 1.5,
        T0 + 2,
    ]
    path = tmp_path / "van.csv"
    path.write_text("ts,speed_mph\n1767225600,10\nnot-a-time,3\n")
    problems = []
    messages = list(input_messages(path, InputOptions(), problems))
    assert messages == [
        (T0, "vehicles/van/speed", b'{"ts":1767225600.0,"speed":10.0,"unit":"mph"}')
    ]
    assert [p.line_number for p in problems] == [3]


def test_progress_is_reported_with_readings_and_bytes(tmp_path, monkeypatch):
    """on_progress gets growing reading counts and input bytes (once per block of lines read),
    never beyond the input size."""
    from kinestream.io import logs

    monkeypatch.setattr(logs, "BLOCK_BYTES", 100_000)
    lines = [log_line(T0 + i, "a", {"ts": T0 + i, "speed": 1}) for i in range(20_000)]
    path = write_log(tmp_path, lines)
    calls = []
    process_inputs([path], on_progress=lambda readings, done: calls.append((readings, done)))
    assert len(calls) > 5
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in pairwise(calls))
    assert calls[-1] == (20_000, path.stat().st_size)


def test_config_file_sets_method_unit_and_topic_prefix_and_flags_win(capsys, tmp_path):
    """--config supplies the daemon's settings (method, default unit, topic prefix); flags win."""
    config = tmp_path / "kinestream.toml"
    config.write_text(
        '[mqtt]\ntopic_prefix = "fleet"\n\n'
        '[tracker]\nmethod = "difference"\ndefault_unit = "km/h"\n'
    )
    lines = [
        json.dumps(
            {"t": T0, "topic": "fleet/a/speed", "payload": json.dumps({"ts": T0, "speed": 0})}
        ),
        json.dumps(
            {"t": T0 + 1, "topic": "fleet/a/speed", "payload": '{"ts": %r, "speed": 10}' % (T0 + 1)}
        ),
    ]
    path = write_log(tmp_path, lines)
    code, out, err = run_cli(capsys, "process", str(path), "--summary", "--config", str(config))
    assert code == 0, err
    a = summaries(out)["a"]
    assert a["max_speed_mps"] == pytest.approx(10 / 3.6)  # 10 km/h
    assert a["max_acceleration_mps2"] == pytest.approx(10 / 3.6)  # difference: Δv in 1 s
    _, out, _ = run_cli(
        capsys, "process", str(path), "--summary", "--config", str(config), "--default-unit", "m/s"
    )
    assert summaries(out)["a"]["max_speed_mps"] == 10.0


def test_bad_config_is_a_usage_error(capsys, ramp_log, tmp_path):
    """An invalid configuration value exits 2 with one line naming the key."""
    config = tmp_path / "bad.toml"
    config.write_text("[tracker]\nmax_gap_s = -1\n")
    code, _, err = run_cli(capsys, "process", str(ramp_log), "--summary", "--config", str(config))
    assert code == 2
    assert "max_gap_s" in err
    assert len(err.strip().splitlines()) == 1


def test_csvs_sharing_a_stem_are_noted_on_stderr(capsys, tmp_path):
    """Two CSV inputs whose stems give the same default vehicle id are pointed out on stderr."""
    for folder in ("car-1", "car-2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "day.csv").write_text("ts,speed_mps\n1767225600,1\n")
    paths = [str(tmp_path / f / "day.csv") for f in ("car-1", "car-2")]
    code, out, err = run_cli(capsys, "process", *paths, "--summary")
    assert code == 0
    assert "all feed vehicle 'day'" in err
    assert list(summaries(out)) == ["day"]


def test_gzip_log_input(capsys, tmp_path):
    """A recorded log compressed as .jsonl.gz is read like the plain one."""
    import gzip

    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress((log_line(T0, "a", {"ts": T0, "speed": 2}) + "\n").encode()))
    code, out, _ = run_cli(capsys, "process", str(path), "--summary")
    assert code == 0
    assert summaries(out)["a"]["readings"] == 1


def test_progress_line_shows_bar_percentage_and_rate(capsys):
    """The terminal progress line has a bar, the share of input bytes read and the readings."""
    from kinestream.commands.process import _Progress

    progress = _Progress(total_bytes=1000)
    progress.update(16384, 500)
    progress.done()
    err = capsys.readouterr().err
    assert err.startswith("\rprocess [")
    assert "50%" in err
    assert "16,384 readings" in err


@pytest.mark.parametrize("content", [b"not gzip at all", b"\x1f\x8b\x08\x00truncated"])
def test_corrupt_gzip_input_exits_1_with_one_line(capsys, tmp_path, content):
    """An input that fails while being read (a corrupt .gz) is a run-time failure: exit 1."""
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(content)
    code, out, err = run_cli(capsys, "process", str(path), "--summary")
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("method", [None, "polyfit"])
def test_without_config_or_variables_the_settings_are_the_configurations(monkeypatch, method):
    """No --config and no KINESTREAM_* variable: the settings process uses without loading
    the configuration are the ones the configuration gives (its defaults are the same)."""
    for name in list(os.environ):
        if name.upper().startswith("KINESTREAM_"):
            monkeypatch.delenv(name)
    args = argparse.Namespace(config=None, method=method)
    without = load_command_settings(args)
    monkeypatch.setenv("KINESTREAM_LOG_LEVEL", "info")  # any variable: the configuration is read
    assert load_command_settings(args) == without
    assert without.params.estimator.method.value == (method or "kalman")


def test_environment_variables_configure_process(capsys, monkeypatch, ramp_log):
    """KINESTREAM_TRACKER__METHOD applies to process as to run; --method wins over it."""
    _, kalman, _ = run_cli(capsys, "process", str(ramp_log), "--summary")
    _, difference, _ = run_cli(
        capsys, "process", str(ramp_log), "--summary", "--method", "difference"
    )
    assert kalman != difference
    monkeypatch.setenv("KINESTREAM_TRACKER__METHOD", "difference")
    assert run_cli(capsys, "process", str(ramp_log), "--summary")[1] == difference
    flagged = run_cli(capsys, "process", str(ramp_log), "--summary", "--method", "kalman")
    assert flagged[1] == kalman
