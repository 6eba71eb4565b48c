"""Tracker state as compact, versioned bytes (the daemon's checkpoints and evictions).

Layout (little endian): header ``<4sBBHHH`` = magic ``KST1``, format version, estimator
method code, number of packed slots, number of estimator floats, number of held readings;
then the slots (float64), the estimator state (float64), and per held reading ``<ddH`` ts,
speed and the byte length of its flags (UTF-8, joined by U+001F) followed by those bytes.
"""

from __future__ import annotations

import struct
from array import array
from typing import NamedTuple

from kinestream.core.params import Method
from kinestream.core.records import Reading

MAGIC = b"KST1"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBBHHH")
_HELD = struct.Struct("<ddH")
_FLAG_SEPARATOR = "\x1f"
METHOD_CODES: dict[Method, int] = {Method.KALMAN: 0, Method.POLYFIT: 1, Method.DIFFERENCE: 2}


class StateError(ValueError):
    """Bytes that are not a tracker state this version can read."""


class DecodedState(NamedTuple):
    method: Method
    slots: array[float]
    estimator_state: tuple[float, ...]
    held: list[Reading]


def encode(
    method: Method,
    slots: array[float],
    estimator_state: tuple[float, ...],
    held: list[Reading],
) -> bytes:
    parts = [
        _HEADER.pack(
            MAGIC, FORMAT_VERSION, METHOD_CODES[method], len(slots), len(estimator_state), len(held)
        ),
        slots.tobytes(),
        array("d", estimator_state).tobytes(),
    ]
    for reading in held:
        flags = _FLAG_SEPARATOR.join(reading.flags).encode()
        parts.append(_HELD.pack(reading.ts, reading.speed_mps, len(flags)))
        parts.append(flags)
    return b"".join(parts)


def decode(blob: bytes, vehicle_id: str) -> DecodedState:
    try:
        magic, version, method_code, n_slots, n_estimator, n_held = _HEADER.unpack_from(blob)
    except struct.error as exc:
        raise StateError(f"tracker state of {len(blob)} bytes is too short") from exc
    if magic != MAGIC or version != FORMAT_VERSION:
        raise StateError(f"not a tracker state of format {FORMAT_VERSION}: {magic!r} v{version}")
    methods = {code: method for method, code in METHOD_CODES.items()}
    if method_code not in methods:
        raise StateError(f"unknown estimator method code {method_code}")
    offset = _HEADER.size
    slots, offset = _floats(blob, offset, n_slots)
    estimator_state, offset = _floats(blob, offset, n_estimator)
    held = []
    for _ in range(n_held):
        ts, speed_mps, n_flag_bytes = _HELD.unpack_from(blob, offset)
        offset += _HELD.size
        text = blob[offset : offset + n_flag_bytes].decode()
        offset += n_flag_bytes
        flags = tuple(text.split(_FLAG_SEPARATOR)) if text else ()
        held.append(Reading(vehicle_id, ts, speed_mps, flags))
    if offset != len(blob):
        raise StateError(f"tracker state has {len(blob) - offset} unexpected trailing bytes")
    return DecodedState(methods[method_code], slots, tuple(estimator_state), held)


def _floats(blob: bytes, offset: int, count: int) -> tuple[array[float], int]:
    end = offset + 8 * count
    if end > len(blob):
        raise StateError(f"tracker state truncated: need {end} bytes, have {len(blob)}")
    values = array("d")
    values.frombytes(blob[offset:end])
    return values, end
