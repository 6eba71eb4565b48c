"""Tracker state bytes: versioned, compact, refusing what they are not."""

import struct

import pytest

from kinestream.core.codec import MAGIC, StateError, decode
from kinestream.core.records import Reading
from kinestream.core.tracker import Tracker

from .helpers import T0, params


def test_held_readings_survive_a_round_trip_with_their_flags():
    """Readings in the reorder buffer are part of the state, flags included."""
    tracker = Tracker("v", params(reorder_bound_s=5.0))
    tracker.update(Reading("v", T0, 1.0, ("receive_time",)))
    tracker.update(Reading("v", T0 + 1, 2.0))
    decoded = decode(tracker.export_state(), "v")
    assert decoded.held == [Reading("v", T0, 1.0, ("receive_time",)), Reading("v", T0 + 1, 2.0)]


def test_starts_with_magic_and_version():
    """The first bytes name the format, so a future version can be told apart."""
    blob = Tracker("v", params()).export_state()
    assert blob[:4] == MAGIC and blob[4] == 1


@pytest.mark.parametrize(
    "blob",
    [b"", b"KST1", b"XXXX" + bytes(20), MAGIC + bytes([9]) + bytes(20)],
)
def test_foreign_or_truncated_bytes_raise_state_error(blob):
    """Anything that is not a complete state of this version is a StateError, not a crash."""
    with pytest.raises(StateError):
        decode(blob, "v")


def test_trailing_bytes_are_refused():
    """A state with extra bytes at the end is corrupt."""
    blob = Tracker("v", params()).export_state() + struct.pack("<d", 1.0)
    with pytest.raises(StateError):
        decode(blob, "v")
