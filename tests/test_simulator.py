"""The demo's simulated fleet: bundled traces loaded right, vehicles moving, noise bounded."""

import itertools
import re

from kinestream.simulator import (
    DriveProfile,
    build_fleet,
    bundled_profiles,
    load_cycle,
    load_gps_log,
    shorten_idle_runs,
)

VEHICLE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def trapezoid_m(speeds_mps):
    return sum((a + b) / 2 for a, b in itertools.pairwise(speeds_mps))


def test_udds_loads_with_its_published_distance():
    """The bundled UDDS trace integrates to EPA's published 11.99 km (1 Hz, trapezoid)."""
    assert abs(trapezoid_m(load_cycle("udds").speeds_mps) - 11_990) < 12


def test_wltc_with_byte_order_mark_loads_with_its_published_distance():
    """wltc_3b.csv starts with a BOM and still loads: 23.266 km per UNECE GTR 15."""
    assert abs(trapezoid_m(load_cycle("wltc_3b").speeds_mps) - 23_266) < 24


def test_idle_runs_are_shortened_but_motion_is_kept():
    """Only zero samples beyond max_idle_s in a row are dropped."""
    assert shorten_idle_runs([0, 0, 0, 0, 0, 1.5, 0, 0, 0], 2) == (0, 0, 1.5, 0, 0)


def test_gps_log_reports_in_mph_with_short_standstills():
    """A GPS vehicle sends mph like its source, and no standstill lasts more than 60 s."""
    profile = load_gps_log("cmap_4115957_1")
    assert profile.unit == "mph"
    longest, run = 0, 0
    for speed in profile.speeds_mps:
        run = run + 1 if speed <= 0 else 0
        longest = max(longest, run)
    assert longest <= 60
    assert 25 < max(profile.speeds_mps) < 40  # a car on Chicago roads, in m/s


def test_fleet_vehicles_start_moving_with_valid_distinct_ids():
    """Each vehicle starts mid-drive (above 2 m/s), has a topic-safe id, and a distinct
    start offset within one period so messages interleave."""
    fleet = build_fleet(bundled_profiles(), vehicles=12, seed=3)
    assert len({v.vehicle_id for v in fleet}) == 12
    assert all(VEHICLE_ID.match(v.vehicle_id) for v in fleet)
    assert all(v.true_speed_mps(0) > 2.0 for v in fleet)
    delays = [v.start_delay_s for v in fleet]
    assert len(set(delays)) == 12 and all(0 <= d < 1 for d in delays)


def test_noisy_samples_are_never_negative_and_sometimes_lost():
    """Noise is clipped at 0 (a speed is a magnitude); some fixes are dropped."""
    profile = DriveProfile("still", (0.0,) * 10)
    (vehicle,) = build_fleet([profile], vehicles=1, seed=1)
    vehicle.drop_probability = 0.1
    samples = [vehicle.sample_mps(step) for step in range(2000)]
    kept = [s for s in samples if s is not None]
    assert min(kept) == 0.0
    assert 100 < samples.count(None) < 300


def test_same_seed_gives_the_same_samples():
    """The fleet is reproducible from its seed."""
    first, second = (build_fleet(bundled_profiles(), 4, seed=9) for _ in range(2))
    assert [v.sample_mps(s) for v in first for s in range(20)] == [
        v.sample_mps(s) for v in second for s in range(20)
    ]


def test_payload_uses_the_device_unit():
    """A GPS vehicle sends mph (20 m/s = 44.739 mph), a cycle vehicle m/s."""
    gps = DriveProfile("gps", (1.0,), unit="mph")
    cycle = DriveProfile("cyc", (1.0,))
    (gps_vehicle,) = build_fleet([gps], 1)
    (cycle_vehicle,) = build_fleet([cycle], 1)
    assert gps_vehicle.payload(1767225600.0, 20.0) == {
        "ts": 1767225600.0,
        "speed": 44.739,
        "unit": "mph",
    }
    assert cycle_vehicle.payload(1767225600.0, 20.0)["unit"] == "m/s"
