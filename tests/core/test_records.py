"""Record value objects."""

import dataclasses

import pytest

from kinestream.core.records import Kinematics, _MutableKinematics, make_kinematics

ARGS = ("truck-7", 1767225600.0, 12.5, 0.5, None, None, 100.0, "truck-7-1", 10.0, ("clamped",))


def test_fast_kinematics_is_a_true_frozen_kinematics():
    """make_kinematics gives an object equal to, and as frozen as, the dataclass's own."""
    fast = make_kinematics(*ARGS)
    assert type(fast) is Kinematics
    assert fast == Kinematics(*ARGS)
    assert dataclasses.asdict(fast) == dataclasses.asdict(Kinematics(*ARGS))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.ts = 0.0  # type: ignore[misc]


def test_fast_kinematics_keeps_the_field_order():
    """The twin's constructor takes the dataclass's fields in the same order."""
    names = [f.name for f in dataclasses.fields(Kinematics)]
    code = _MutableKinematics.__init__.__code__
    assert list(code.co_varnames[1 : code.co_argcount]) == names
