"""kinestream.offline: the batch engine gives what the streaming Fleet gives, record for record."""

import json
import math
import random
from pathlib import Path

import pytest

from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.io.csv_input import CsvOptions
from kinestream.offline import InputOptions, process_inputs

pytest.importorskip("kinestream.core.batch")

DATA = Path(__file__).resolve().parent / "data"
T0 = 1767225600.0


def harsh_cycle_kmh(phase: int) -> float:
    """+18 km/h per second (5 m/s²) for 4 s, cruise, -24 km/h per second for 3 s, stand."""
    if phase <= 4:
        return 18.0 * phase
    if phase <= 12:
        return 72.0
    return max(0.0, 72.0 - 24.0 * (phase - 12))


def messy_log(path: Path) -> Path:
    """Three vehicles, interleaved: trips, a harsh start, gaps, duplicates, late and bad data."""
    rng = random.Random(7)
    lines = []

    def message(t, vehicle, payload):
        topic = f"vehicles/{vehicle}/speed"
        lines.append(json.dumps({"t": t, "topic": topic, "payload": json.dumps(payload)}))

    for i in range(400):
        t = T0 + i
        speed = max(0.0, 12 * math.sin(i / 40) + rng.gauss(0, 0.3))
        message(t, "a", {"ts": t, "speed": speed})
        if i < 150:  # b: 0.51 g launches and 0.68 g stops, harsh by any threshold
            message(t + 0.2, "b", {"ts": t, "speed": harsh_cycle_kmh(i % 20), "unit": "km/h"})
        if i == 200:
            message(t, "a", {"ts": t - 1, "speed": 3})  # duplicate of the previous reading
            message(t, "a", {"ts": t - 50, "speed": 3})  # late
            message(t, "a", {"ts": t + 0.5, "speed": 500})  # too fast
            message(t, "b", {"ts": t + 400, "speed": 1})  # in the future
            message(t, "c", [{"ts": t, "speed": 1}, {"ts": t + 1, "speed": "x"}])
        if 250 <= i < 260:
            message(t + 1000, "c", 7.5)  # bare numbers: receive time, flagged
    message(T0 + 2000, "a", {"ts": T0 + 2000, "speed": 5})  # after a gap beyond max_gap_s
    path.write_text("\n".join(lines) + "\n")
    return path


def run(paths, engine, method, options=None):
    records = []
    params = TrackerParams(estimator=EstimatorParams(method=method))
    options = options or InputOptions()
    result = process_inputs(paths, options, params, on_kinematics=records.append, engine=engine)
    return result, records


def assert_close(a, b, where):
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif hasattr(a, "__slots__"):
        assert type(a) is type(b), where
        for name in a.__slots__:
            assert_close(getattr(a, name), getattr(b, name), f"{where}.{name}")
    else:
        assert a == b, where


@pytest.mark.parametrize("method", list(Method))
def test_batch_engine_equals_stream_engine(tmp_path, method):
    """Same inputs, both engines: the same summaries and kinematics records (1e-9 relative)."""
    paths = [
        messy_log(tmp_path / "messy.jsonl"),
        DATA / "cycles" / "us06.csv",
        DATA / "recorded" / "cmap_4116721_2" / "2007-04-09.csv",
    ]
    stream, stream_records = run(paths, "stream", method)
    batch, batch_records = run(paths, "batch", method)
    assert stream.problems == batch.problems
    assert_close(
        {k: v.to_json() for k, v in batch.summaries.items()},
        {k: v.to_json() for k, v in stream.summaries.items()},
        "summaries",
    )
    assert_close(batch_records, stream_records, "kinematics")
    a = stream.summaries["a"]
    assert (a.duplicates, a.rejected_by_reason["late"]) == (1, 1)
    assert stream.summaries["b"].harsh_events > 0


def test_engines_agree_on_a_vehicle_split_over_inputs(tmp_path):
    """One vehicle id fed by two CSV inputs in a row is one vehicle for both engines."""
    options = InputOptions(csv=CsvOptions(vehicle_id="same"))
    paths = [DATA / "cycles" / "udds.csv", DATA / "cycles" / "hwfet.csv"]
    stream, _ = run(paths, "stream", Method.DIFFERENCE, options)
    batch, _ = run(paths, "batch", Method.DIFFERENCE, options)
    assert list(batch.summaries) == ["same"]
    assert_close(batch.summaries["same"].to_json(), stream.summaries["same"].to_json(), "same")


def test_parallel_decoding_reads_exactly_what_one_process_reads(tmp_path, monkeypatch):
    """A log decoded in parts by worker processes gives the same records, rejections and
    problems (with the same line numbers) as reading it in one process."""
    import kinestream.offline as offline

    path = messy_log(tmp_path / "messy.jsonl")
    with path.open("a") as file:
        file.write("not json\n")
        file.write(json.dumps({"t": T0, "topic": "bad/topic", "payload": "1"}) + "\n")
    monkeypatch.setattr(offline, "_PART_BYTES", 4096)  # many parts from a small log
    serial, serial_records = run([path], "batch", Method.KALMAN)
    records = []
    parallel = process_inputs([path], on_kinematics=records.append, jobs=2)
    assert parallel.problems == serial.problems
    assert [p.line_number for p in parallel.problems] == [p.line_number for p in serial.problems]
    assert len(serial.problems) == 2
    assert_close(
        {k: v.to_json() for k, v in parallel.summaries.items()},
        {k: v.to_json() for k, v in serial.summaries.items()},
        "summaries",
    )
    assert_close(records, serial_records, "kinematics")
