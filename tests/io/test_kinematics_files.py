"""Kinematics files: rows written as columns are byte for byte the records written one by one."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from kinestream.core.params import TrackerParams
from kinestream.core.records import Kinematics
from kinestream.io.kinematics_files import (
    KINEMATICS_FIELDS,
    CsvKinematicsWriter,
    JsonLinesKinematicsWriter,
)
from kinestream.offline import process_inputs

pytest.importorskip("kinestream.core.batch")

T0 = 1767225600.0


def flagged_log(path: Path) -> Path:
    """Two vehicles with every kind of flag: receive time (bare numbers), clamped (small
    negative speeds), bridged gaps, trips opening and closing, estimates still missing."""
    lines = []

    def message(t: float, vehicle: str, payload: object) -> None:
        topic = f"vehicles/{vehicle}/speed"
        lines.append(json.dumps({"t": t, "topic": topic, "payload": json.dumps(payload)}))

    ts = T0
    for i in range(300):
        ts += 10.0 if i % 50 == 49 else 1.0  # a 10 s gap now and then: bridged
        speed = max(-0.2, 9.0 * math.sin(i / 25))  # below 0 at times: clamped
        message(ts + 0.1, "a", {"ts": ts, "speed": speed})
        if i % 3 == 0:
            message(ts + 0.2, "b", -0.1 if i % 2 else speed)  # bare numbers: receive time
    path.write_text("\n".join(lines) + "\n")
    return path


def outputs(path: Path, writer_of, file_of):
    """The file written per record (row by row) and as columns, from one batch run."""
    per_record, columns = file_of(), file_of()
    record_writer, column_writer = writer_of(per_record), writer_of(columns)
    process_inputs([path], params=TrackerParams(), on_kinematics=record_writer.write)
    process_inputs([path], params=TrackerParams(), kinematics_sink=column_writer)
    return per_record.getvalue(), columns.getvalue()


def test_jsonl_columns_equal_records_byte_for_byte(tmp_path):
    """Rows encoded as columns give exactly the bytes of write() per record, flags and nulls
    included."""
    per_record, columns = outputs(
        flagged_log(tmp_path / "log.jsonl"), JsonLinesKinematicsWriter, io.BytesIO
    )
    assert columns == per_record
    records = [json.loads(line) for line in per_record.splitlines()]
    flags = {tuple(r["flags"]) for r in records}
    assert {("clamped",), ("bridged_gap",), ("receive_time",), ("receive_time", "clamped")} <= flags
    assert any(r["acceleration_mps2"] is None for r in records)
    assert any(r["trip_id"] is None for r in records) and any(r["trip_id"] for r in records)


def test_csv_columns_equal_records_byte_for_byte(tmp_path):
    """The CSV writer too: header, all digits, empty cells for missing values, flags by ';'."""
    per_record, columns = outputs(
        flagged_log(tmp_path / "log.jsonl"), CsvKinematicsWriter, io.StringIO
    )
    assert columns == per_record
    assert per_record.startswith(",".join(KINEMATICS_FIELDS) + "\r\n")
    assert ",receive_time;clamped\r\n" in per_record


def test_jsonl_record_has_the_kinematics_keys_in_order():
    """A record is written with the dataclass's field names, None as null."""
    record = Kinematics("a", T0, 1.5, None, None, None, 0.0, None, None, ("clamped",))
    file = io.BytesIO()
    JsonLinesKinematicsWriter(file).write(record)
    line = json.loads(file.getvalue())
    assert list(line) == list(KINEMATICS_FIELDS)
    assert line["acceleration_mps2"] is None
    assert line["flags"] == ["clamped"]


def test_kinematics_columns_are_the_rows_of_the_result():
    """BatchResult.kinematics_columns gives row(k)'s values (NaN for None) for the rows asked."""
    from kinestream.core.batch import process_batch

    ts = T0 + np.arange(40.0)
    speed = np.abs(np.sin(np.arange(40.0) / 5)) * 10 - 0.05
    ids = ["a", "b"] * 20
    result = process_batch(ids, ts, speed, TrackerParams())
    order = result.input_order()
    columns = result.kinematics_columns(order[5:30])
    for j, row in enumerate(order[5:30].tolist()):
        record = result.row(row)
        for name in KINEMATICS_FIELDS:
            value, expected = getattr(columns, name)[j], getattr(record, name)
            if expected is None and name != "trip_id":
                assert math.isnan(value), name
            else:
                assert value == expected, name


def test_batch_events_are_true_harsh_events():
    """The batch path's events (built from columns) are frozen HarshEvent records equal to
    the stream's, field for field."""
    import dataclasses

    from kinestream.core.batch import process_batch
    from kinestream.core.fleet import Fleet
    from kinestream.core.records import HarshEvent, Reading

    speed = np.array([0, 5, 10, 15, 20, 20, 20, 14, 8, 2, 0, 0] * 4, dtype=float)
    ts = T0 + np.arange(len(speed), dtype=float)
    ids = ["a"] * len(speed)
    batch = process_batch(ids, ts, speed, TrackerParams()).events
    fleet = Fleet(TrackerParams())
    readings = [Reading("a", t, v) for t, v in zip(ts.tolist(), speed.tolist(), strict=True)]
    stream = [r for reading in readings for r in fleet.update(reading)]
    stream += fleet.finish("a")
    stream = [r for r in stream if isinstance(r, HarshEvent)]
    assert len(batch) == len(stream) > 2
    assert all(type(e) is HarshEvent for e in batch)
    assert batch == stream
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch[0].peak_g = 0.0  # type: ignore[misc]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_rows_encoded_by_worker_processes_are_the_same_file(tmp_path, monkeypatch, suffix):
    """With jobs > 1, slices of rows encoded in forked workers make the same bytes, in order."""
    import kinestream.offline as offline
    from kinestream.cli import main

    monkeypatch.setattr(offline, "_ROWS_PER_WRITE", 97)  # many slices from a small log
    in_parallel = offline._write_rows_in_parallel
    calls = []
    monkeypatch.setattr(
        offline, "_write_rows_in_parallel", lambda *args: calls.append(in_parallel(*args))
    )
    log = flagged_log(tmp_path / "log.jsonl")
    one, two = tmp_path / f"one{suffix}", tmp_path / f"two{suffix}"
    assert main(["process", str(log), "-o", str(one), "--jobs", "1"]) == 0
    assert main(["process", str(log), "-o", str(two), "--jobs", "2"]) == 0
    assert len(calls) == 1  # only with --jobs 2
    assert one.read_bytes() == two.read_bytes()
    assert one.read_bytes().count(b"\n") > 3 * 97
