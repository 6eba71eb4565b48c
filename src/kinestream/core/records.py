"""Value objects that cross the core's boundary: readings in, records and verdicts out.

``Tracker.update`` and ``Tracker.tick`` return a list of these, in the order they happened
(h11-style events): the host dispatches on the type. Units live in the field names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class RejectReason(StrEnum):
    """The closed set of reasons a message or reading is refused.

    Used verbatim as the dead-letter ``reason`` and as the metric label, so adding a member is
    an interface change: document it in the README.
    """

    # Raised by the core, on a decoded reading.
    NON_FINITE = "non_finite"
    SPEED_NEGATIVE = "speed_negative"
    SPEED_TOO_HIGH = "speed_too_high"
    IMPLAUSIBLE_STEP = "implausible_step"
    TIMESTAMP_MILLISECONDS = "timestamp_milliseconds"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    LATE = "late"
    # Raised by the adapters, before a reading exists.
    MALFORMED_PAYLOAD = "malformed_payload"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_UNIT = "unknown_unit"
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_VEHICLE_ID = "invalid_vehicle_id"
    INVALID_TOPIC = "invalid_topic"
    PAYLOAD_TOO_LARGE = "payload_too_large"


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated-for-shape speed sample, already in SI units.

    ``ts`` is event time in float64 epoch seconds (never float32: 1.7e9 s needs ~31 bits of
    mantissa before the fraction). ``flags`` carries adapter facts such as ``receive_time``.
    """

    vehicle_id: str
    ts: float
    speed_mps: float
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Kinematics:
    vehicle_id: str
    ts: float
    speed_mps: float
    acceleration_mps2: float | None
    acceleration_sigma_mps2: float | None
    jerk_mps3: float | None
    distance_m: float
    trip_id: str | None
    trip_distance_m: float | None
    flags: tuple[str, ...]


class _MutableKinematics:
    """Same slots as ``Kinematics``, built by plain attribute stores, then re-classed.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (about
    3 µs for ten fields on CPython 3.11, the largest single cost of a reading); plain stores
    into the same slots cost a third of that. The object becomes a true, frozen ``Kinematics``
    before anyone sees it. ``tests/core/test_records.py`` keeps the two layouts in step.
    """

    __slots__ = Kinematics.__slots__

    def __init__(  # noqa: PLR0917 (mirrors the dataclass's positional constructor)
        self,
        vehicle_id: str,
        ts: float,
        speed_mps: float,
        acceleration_mps2: float | None,
        acceleration_sigma_mps2: float | None,
        jerk_mps3: float | None,
        distance_m: float,
        trip_id: str | None,
        trip_distance_m: float | None,
        flags: tuple[str, ...],
    ) -> None:
        self.vehicle_id = vehicle_id
        self.ts = ts
        self.speed_mps = speed_mps
        self.acceleration_mps2 = acceleration_mps2
        self.acceleration_sigma_mps2 = acceleration_sigma_mps2
        self.jerk_mps3 = jerk_mps3
        self.distance_m = distance_m
        self.trip_id = trip_id
        self.trip_distance_m = trip_distance_m
        self.flags = flags
        self.__class__ = Kinematics  # type: ignore[assignment]


make_kinematics: Callable[..., Kinematics] = _MutableKinematics  # type: ignore[assignment]
"""Build a ``Kinematics`` (same positional arguments) at a third of the cost: the hot path."""


@dataclass(frozen=True, slots=True)
class TripSummary:
    vehicle_id: str
    trip_id: str
    start_ts: float
    end_ts: float
    duration_s: float
    distance_m: float
    bridged_distance_m: float
    max_speed_mps: float
    max_acceleration_mps2: float | None
    max_deceleration_mps2: float | None
    stops: int
    harsh_accelerations: int
    harsh_brakings: int
    end_reason: str


@dataclass(frozen=True, slots=True)
class HarshEvent:
    vehicle_id: str
    type: str  # "harsh_acceleration" | "harsh_braking"
    start_ts: float
    end_ts: float
    peak_g: float
    speed_at_start_mps: float
    trip_id: str | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A reading (or message) refused; ``message`` names the offending values."""

    vehicle_id: str | None
    ts: float | None
    reason: RejectReason
    message: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A reading whose timestamp the tracker already committed: counted, changes nothing."""

    vehicle_id: str
    ts: float


Record = Kinematics | TripSummary | HarshEvent | Rejection | Duplicate
