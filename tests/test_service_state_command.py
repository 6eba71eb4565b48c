"""`kinestream state --state-dir DIR list|show ID|reset ID` on a saved state directory."""

import orjson
import pytest

from kinestream.cli import main
from kinestream.io.state_store import (
    WAL_DIR_NAME,
    StateStore,
    StoredVehicle,
    lock_state_dir,
    release_state_dir,
)
from kinestream.io.wal import WriteAheadLog

T0 = 1_767_225_600.0


@pytest.fixture
def state_dir(tmp_path):
    store = StateStore(tmp_path)
    record = orjson.dumps({"vehicle_id": "truck-7", "distance_m": 1234.5, "trip_id": "t1"})
    store.save([StoredVehicle("truck-7", b"blob", record, T0, T0 + 0.2)], wal_generation=1)
    store.close()
    return tmp_path


def run(capsys, *args):
    code = main(["state", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_id_time_and_odometer(state_dir, capsys):
    """`list` prints one line per vehicle with its last event time and distance."""
    code, out, _ = run(capsys, "--state-dir", str(state_dir), "list")
    assert code == 0
    [line] = [line for line in out.splitlines() if line.startswith("truck-7")]
    assert "2026-01-01T00:00:00.000+00:00" in line
    assert "1234.5" in line
    assert "t1" in line


def test_show_prints_json(state_dir, capsys):
    """`show ID` prints the saved summary as JSON, including the last kinematics record."""
    code, out, _ = run(capsys, "--state-dir", str(state_dir), "show", "truck-7")
    assert code == 0
    shown = orjson.loads(out)
    assert shown["last_kinematics"]["distance_m"] == 1234.5
    assert shown["last_ts"] == T0
    assert shown["state_bytes"] == 4


def test_reset_forgets_the_vehicle(state_dir, capsys):
    """`reset ID` deletes the vehicle; showing it afterwards fails with exit 1."""
    assert run(capsys, "--state-dir", str(state_dir), "reset", "truck-7")[0] == 0
    code, _, err = run(capsys, "--state-dir", str(state_dir), "show", "truck-7")
    assert code == 1
    assert "no saved state for vehicle 'truck-7'" in err


def test_unknown_vehicle_and_missing_dir_are_errors(state_dir, tmp_path, capsys):
    """Unknown ids and a missing state directory exit 1 with one line."""
    assert run(capsys, "--state-dir", str(state_dir), "reset", "nope")[0] == 1
    code, _, err = run(capsys, "--state-dir", str(tmp_path / "missing"), "list")
    assert code == 1
    assert len(err.strip().splitlines()) == 1


def test_refuses_while_the_directory_is_locked(state_dir, capsys):
    """While a daemon holds the lock, every action refuses (exit 1) and changes nothing."""
    handle = lock_state_dir(state_dir)
    try:
        code, _, err = run(capsys, "--state-dir", str(state_dir), "reset", "truck-7")
    finally:
        release_state_dir(handle)
    assert code == 1
    assert "in use by another kinestream process" in err
    assert StateStore(state_dir).load("truck-7") is not None


def test_reset_refuses_while_the_log_holds_uncovered_readings(state_dir, capsys):
    """After a crash the log holds readings no checkpoint covers: reset refuses until the
    daemon has folded them in (they would otherwise re-create part of the vehicle)."""
    wal = WriteAheadLog(state_dir / WAL_DIR_NAME)
    wal.open_next()
    wal.open_next()  # generation 2 >= the covered 1
    wal.append(T0, "vehicles/truck-7/speed", b"1")
    wal.close()
    code, _, err = run(capsys, "--state-dir", str(state_dir), "reset", "truck-7")
    assert code == 1
    assert "start and stop the daemon once" in err
