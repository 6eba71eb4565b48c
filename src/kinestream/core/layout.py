"""The packed per-vehicle state: one ``array('d')`` of named slots, not dozens of boxed floats.

A tracked vehicle must cost under 2 KB (100 000 vehicles per process), so the tracker, the
trip table and the harsh-event detector share one flat float array. Each constant below names
a slot; ``NaN`` means "not known yet". The layout is part of the persisted state: changing it
means bumping ``STATE_VERSION`` in ``tracker.py``.
"""

from __future__ import annotations

from array import array

NAN = float("nan")

# Ordering and odometer.
LAST_TS = 0  # commit point: event time of the last committed reading
LAST_SPEED = 1  # its validated speed (m/s)
MAX_SEEN_TS = 2  # event-time watermark of accepted readings (reorder buffer)
DUP_CURSOR = 3  # next slot to overwrite in the duplicate ring
ODO_SUM = 4  # lifetime odometer, Neumaier sum and compensation (m)
ODO_COMP = 5
# Trip (see trips.py).
TRIP_STATE = 6
TRIP_START_TS = 7
STOP_SINCE_TS = 8
TRIP_SUM = 9
TRIP_COMP = 10
BRIDGED_SUM = 11
BRIDGED_COMP = 12
TRIP_MAX_SPEED = 13
TRIP_MAX_ACCEL = 14
TRIP_MIN_ACCEL = 15
TRIP_STOPS = 16
TRIP_HARSH_ACCELERATIONS = 17
TRIP_HARSH_BRAKINGS = 18
# Harsh event in progress (see harsh.py).
HARSH_STATE = 19
HARSH_START_TS = 20
HARSH_START_SPEED = 21
HARSH_PEAK = 22
HARSH_LAST_TS = 23
# The duplicate ring (last committed timestamps) follows the named slots.
DUP_RING = 24

_INITIAL = {
    LAST_TS: NAN,
    LAST_SPEED: NAN,
    MAX_SEEN_TS: NAN,
    TRIP_START_TS: NAN,
    STOP_SINCE_TS: NAN,
    TRIP_MAX_SPEED: NAN,
    TRIP_MAX_ACCEL: NAN,
    TRIP_MIN_ACCEL: NAN,
    HARSH_START_TS: NAN,
    HARSH_START_SPEED: NAN,
    HARSH_PEAK: NAN,
    HARSH_LAST_TS: NAN,
}


def _named_initial() -> array[float]:
    slots = array("d", [0.0]) * DUP_RING
    for index, value in _INITIAL.items():
        slots[index] = value
    return slots


# Built once: a new vehicle copies it (one C-level concatenation instead of a Python loop
# over every slot, which cost ~2 µs per new or restored vehicle).
_NAMED_INITIAL = _named_initial()
_EMPTY_RING_SLOT = array("d", [NAN])


def fresh_state(duplicate_memory: int) -> array[float]:
    """A vehicle that has seen nothing: zeros, NaN where nothing is known, an empty ring."""
    return _NAMED_INITIAL + _EMPTY_RING_SLOT * duplicate_memory
