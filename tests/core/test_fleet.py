"""Fleet: one tracker per vehicle, state as bytes."""

import pytest

from kinestream.core.codec import StateError
from kinestream.core.fleet import Fleet
from kinestream.core.records import Kinematics, Reading

from .helpers import T0, kinematics, params, readings


def test_vehicles_are_created_on_first_reading_and_evicted():
    """A vehicle appears with its first reading and leaves with evict."""
    fleet = Fleet(params())
    fleet.update(Reading("a", T0, 1.0))
    assert "a" in fleet and len(fleet) == 1
    fleet.evict("a")
    assert "a" not in fleet and len(fleet) == 0


def test_evicted_state_resumes_the_odometer():
    """Exported bytes carry the odometer, the trip and the estimator history."""
    fleet = Fleet(params())
    for r in readings([0, 4, 8], "a"):
        fleet.update(r)
    blob = fleet.evict("a")
    fleet.import_state("a", blob)
    (k,) = kinematics(fleet.update(Reading("a", T0 + 3, 8.0)))
    assert isinstance(k, Kinematics)
    assert (k.distance_m, k.acceleration_mps2) == (2 + 6 + 8, 0.0)
    assert k.trip_id == f"a-{round((T0 + 1) * 1000)}" and k.trip_distance_m == 14.0


def test_state_is_compact():
    """A vehicle's exported state is a few hundred bytes."""
    fleet = Fleet(params())
    for r in readings(range(50), "a", dt=0.1):
        fleet.update(r)
    assert len(fleet.export_state("a")) < 512


def test_foreign_bytes_are_refused_with_a_reason():
    """Bytes that are not a tracker state raise StateError, and the fleet is unchanged."""
    fleet = Fleet(params())
    with pytest.raises(StateError):
        fleet.import_state("a", b"not a state")
    assert "a" not in fleet


def test_unknown_vehicle_ticks_to_nothing():
    """Ticking or finishing a vehicle never seen returns no records."""
    fleet = Fleet(params())
    assert (
        fleet.tick("x", T0) == [] and fleet.finish("x") == [] and fleet.next_deadline("x") is None
    )


def test_state_from_another_method_restarts_the_estimator():
    """A state saved under `difference` resumes under `kalman` with distance kept."""
    from kinestream.core.params import TrackerParams

    old = Fleet(params())
    for r in readings([0, 4, 8], "a"):
        old.update(r)
    new = Fleet(TrackerParams())
    new.import_state("a", old.export_state("a"))
    (k,) = kinematics(new.update(Reading("a", T0 + 3, 8.0)))
    assert k.distance_m == 16.0
