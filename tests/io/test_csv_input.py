"""CSV speed inputs: column recognition, units, times, bad rows, replayable messages."""

from pathlib import Path

import pytest

from kinestream.core.records import RejectReason
from kinestream.core.units import SpeedUnit
from kinestream.errors import UsageError
from kinestream.io.csv_input import EPOCH_2000_S, CsvOptions, CsvSpeedReader, default_vehicle_id
from kinestream.io.payloads import decode_speed_payload

DATA = Path(__file__).resolve().parents[1] / "data"


def write_csv(tmp_path: Path, text: str, name: str = "run-1.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def test_drive_cycle_columns_are_recognised_and_placed_after_2000():
    """A bundled cycle (cycSecs/cycMps, BOM) reads as m/s; 0.. s offsets start at 2000-01-01."""
    reader = CsvSpeedReader(DATA / "cycles" / "wltc_3b.csv")
    samples = list(reader.samples())
    assert (reader.time_column, reader.speed_column, reader.unit) == (
        "cycSecs",
        "cycMps",
        SpeedUnit.METRES_PER_SECOND,
    )
    assert reader.vehicle_id == "wltc_3b"
    assert len(samples) == 1801  # 0..1800 s, as the file has
    assert samples[0][0] == 946684800.0  # date -u -d 2000-01-01 +%s
    assert samples[-1][0] - samples[0][0] == 1800.0
    assert reader.bad_rows == []


def test_gps_log_columns_are_recognised_as_wall_clock_and_mph():
    """A bundled GPS log (timestamp/speed_mph) reads its wall-clock time in --timezone, in mph."""
    from zoneinfo import ZoneInfo

    path = DATA / "recorded" / "cmap_4115957_1" / "2007-04-09.csv"
    utc = CsvSpeedReader(path)
    chicago = CsvSpeedReader(path, CsvOptions(timezone=ZoneInfo("America/Chicago")))
    assert (utc.time_column, utc.speed_column, utc.unit) == (
        "timestamp",
        "speed_mph",
        SpeedUnit.MILES_PER_HOUR,
    )
    first_utc, first_chicago = next(utc.rows()), next(chicago.rows())
    assert first_utc == (1176104843.0, 0.0)  # date -u -d '2007-04-09 07:47:23Z' +%s
    assert first_chicago[0] - first_utc[0] == 5 * 3600  # CDT is UTC-5


def test_explicit_columns_unit_and_vehicle_id(tmp_path):
    """--time-column/--speed-column/--speed-unit/--vehicle-id override recognition."""
    path = write_csv(tmp_path, "when,v,other\n1767225600,36,x\n1767225601.5,72,y\n")
    options = CsvOptions(
        time_column="when",
        speed_column="v",
        speed_unit=SpeedUnit.KILOMETRES_PER_HOUR,
        vehicle_id="van-3",
    )
    reader = CsvSpeedReader(path, options)
    assert reader.vehicle_id == "van-3"
    assert [(ts, pytest.approx(v)) for ts, v, _ in reader.samples()] == [
        (1767225600.0, 10.0),
        (1767225601.5, 20.0),
    ]


def test_iso_times_with_and_without_offsets(tmp_path):
    """ISO times with an offset keep it; those without take the timezone option (default UTC)."""
    text = (
        "time,speed\n2026-01-01T00:00:00Z,1\n2026-01-01 00:00:01,1\n2026-01-01T02:00:02+02:00,1\n"
    )
    path = write_csv(tmp_path, text, bom=True)
    assert [ts for ts, _ in CsvSpeedReader(path).rows()] == [
        1767225600.0,
        1767225601.0,
        1767225602.0,
    ]


def test_bad_rows_are_counted_with_line_numbers(tmp_path):
    """Rows with a bad speed, bad time or missing cells are skipped and kept with line numbers."""
    text = "time,speed\n1767225600,1\n1767225601,fast\nnoon,2\n1767225603\n\n1767225604,4\n"
    reader = CsvSpeedReader(write_csv(tmp_path, text))
    assert [ts for ts, _ in reader.rows()] == [1767225600.0, 1767225604.0]
    assert [(b.line_number, b.reason) for b in reader.bad_rows] == [
        (3, RejectReason.INVALID_FIELD),
        (4, RejectReason.INVALID_TIMESTAMP),
        (5, RejectReason.MALFORMED_PAYLOAD),
    ]
    assert "'fast'" in reader.bad_rows[0].message
    assert "'noon'" in reader.bad_rows[1].message


def test_speed_without_unit_in_its_name_uses_the_default_unit(tmp_path):
    """A plain "speed" column takes --speed-unit, else the default unit."""
    path = write_csv(tmp_path, "ts,speed\n1767225600,10\n")
    knots = CsvSpeedReader(path, CsvOptions(default_unit=SpeedUnit.KNOTS))
    assert knots.unit is SpeedUnit.KNOTS
    mph = CsvSpeedReader(path, CsvOptions(speed_unit=SpeedUnit.MILES_PER_HOUR))
    assert mph.unit is SpeedUnit.MILES_PER_HOUR


def test_missing_columns_are_a_usage_error_naming_the_header(tmp_path):
    """No recognisable time/speed column: UsageError naming what the header has and the flag."""
    path = write_csv(tmp_path, "a,b\n1,2\n")
    with pytest.raises(UsageError, match=r"no time column.*\['a', 'b'\].*--time-column"):
        CsvSpeedReader(path)
    with pytest.raises(UsageError, match="--speed-column"):
        CsvSpeedReader(path, CsvOptions(time_column="a"))
    with pytest.raises(UsageError, match="empty CSV"):
        CsvSpeedReader(write_csv(tmp_path, "", name="empty.csv"))


def test_csv_rows_become_replayable_messages():
    """messages() turns rows into (t, topic, payload) that the payload decoder reads back."""
    path = DATA / "recorded" / "cmap_4116721_2" / "2007-04-09.csv"
    reader = CsvSpeedReader(path, CsvOptions(vehicle_id="car-2"))
    t, topic, payload = next(reader.messages())
    assert topic == "vehicles/car-2/speed"
    readings, _ = decode_speed_payload(payload, "car-2", t, SpeedUnit.METRES_PER_SECOND)
    assert readings[0].ts == t == 1176107706.0  # date -u -d '2007-04-09 08:35:06Z' +%s
    speeds_mps = [s for _, s, _ in CsvSpeedReader(path).samples()]
    all_messages = list(reader.messages())
    decoded = [
        decode_speed_payload(p, "car-2", t, SpeedUnit.METRES_PER_SECOND)[0][0].speed_mps
        for t, _, p in all_messages
    ]
    assert decoded == speeds_mps


def test_default_vehicle_id_is_the_stem_made_valid():
    """The default vehicle id is the file stem, with characters not allowed in ids replaced."""
    assert default_vehicle_id(Path("runs/udds.csv")) == "udds"
    assert default_vehicle_id(Path("my run (2).csv")) == "my_run__2_"
    assert default_vehicle_id(Path("log.jsonl.gz")) == "log"


def test_numeric_epoch_times_are_not_shifted(tmp_path):
    """Numeric times after 2000-01-01 are epoch seconds and are used as they are."""
    path = write_csv(tmp_path, "t,speed_mps\n946684800.5,1\n")
    assert next(CsvSpeedReader(path).rows()) == (946684800.5, 1.0)
    assert EPOCH_2000_S == 946684800.0


def test_undecodable_bytes_and_nul_bytes_spoil_only_their_rows(tmp_path):
    """Invalid UTF-8 or a NUL byte in a row makes that row bad (counted), not the file."""
    path = tmp_path / "dirty.csv"
    path.write_bytes(
        b"ts,speed_mps\n1767225600,1\n17672256\xff01,2\n1767225602,3\x00\n1767225603,4\n"
    )
    reader = CsvSpeedReader(path)
    assert [ts for ts, _ in reader.rows()] == [1767225600.0, 1767225603.0]
    assert [b.line_number for b in reader.bad_rows] == [3, 4]
