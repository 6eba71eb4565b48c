"""The demo's table: latest state per vehicle, rate over a window, unreadable records shown."""

from kinestream.fleet_view import FleetView


def kinematics(vehicle_id="truck-7", **fields):
    record = {
        "vehicle_id": vehicle_id,
        "ts": 1767225600.0,
        "speed_mps": 10.0,
        "acceleration_mps2": 0.5,
        "distance_m": 1234.0,
        "trip_id": "t1",
        "trip_distance_m": 500.0,
    }
    return record | fields


def test_table_shows_latest_values_in_display_units():
    """10 m/s shows as 36.0 km/h, 1234 m as 1.234 km, acceleration signed."""
    view = FleetView()
    view.on_kinematics(kinematics(speed_mps=5.0), received_at=100.0)
    view.on_kinematics(kinematics(), received_at=101.0)
    (row,) = view.table_rows(now=101.0)
    assert row == ("truck-7", "36.0", "+0.50", "1.234", "t1", "0.500", "1.0")


def test_rate_of_a_new_vehicle_counts_from_its_first_record():
    """Records at 0, 1 and 2 s are one per second (two intervals in 2 s), not 3 per window."""
    view = FleetView(rate_window_s=5.0)
    for second in (0.0, 1.0, 2.0):
        view.on_kinematics(kinematics(), received_at=second)
    (row,) = view.table_rows(now=2.0)
    assert row[-1] == "1.0"


def test_rate_counts_only_the_window():
    """The rate is records received in the last window_s seconds divided by window_s."""
    view = FleetView(rate_window_s=5.0)
    for second in range(10):
        view.on_kinematics(kinematics(), received_at=float(second))
    (row,) = view.table_rows(now=9.5)
    assert row[-1] == "1.0"


def test_between_trips_and_without_acceleration_shows_dashes():
    """trip_id null and acceleration null render as '-'."""
    view = FleetView()
    view.on_kinematics(kinematics(trip_id=None, trip_distance_m=None, acceleration_mps2=None), 1.0)
    (row,) = view.table_rows(now=1.0)
    assert row[2] == "-" and row[4] == "-" and row[5] == "-"


def test_unreadable_records_are_counted_and_shown():
    """Records without vehicle_id or with non-numeric fields are counted in the footer."""
    view = FleetView()
    view.on_kinematics({"speed_mps": 3}, 1.0)
    view.on_kinematics(kinematics(distance_m="far"), 1.0)
    view.on_kinematics([1, 2], 1.0)
    view.on_trip("nonsense")
    assert view.vehicles == {}
    assert view.render(now=1.0)[-1] == "0 vehicles, 0 kinematics records, 4 unreadable records"


def test_render_aligns_header_and_rows():
    """Every line of the table has the same width; vehicles are sorted."""
    view = FleetView()
    view.on_kinematics(kinematics("b-2"), 1.0)
    view.on_kinematics(kinematics("a-long-vehicle-name"), 1.0)
    lines = view.render(now=1.0)
    assert len({len(line) for line in lines[:-1]}) == 1
    assert lines[1].startswith("a-long-vehicle-name") and lines[2].startswith("b-2")
