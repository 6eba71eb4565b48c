"""What ``process_batch`` returns: kinematics as columns, the other records as lists."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kinestream.core.records import HarshEvent, Kinematics, Rejection, TripSummary
from kinestream.core.tracker import BRIDGED_GAP_FLAG
from kinestream.core.validation import CLAMPED_FLAG

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Kinematics as columns (one row per committed reading) plus the other records.

    Rows are grouped by vehicle (in ``vehicle_ids`` order), each vehicle's in commit order.
    Float columns hold NaN where a record holds ``None``.
    """

    vehicle_ids: list[str]
    index: IntArray  # position of the row's reading in the input
    vehicle: IntArray  # index into vehicle_ids
    ts: FloatArray
    speed_mps: FloatArray
    acceleration_mps2: FloatArray
    acceleration_sigma_mps2: FloatArray
    jerk_mps3: FloatArray
    distance_m: FloatArray
    trip_distance_m: FloatArray
    trip: IntArray  # index into trip_ids, -1 between trips
    clamped: BoolArray
    bridged_gap: BoolArray
    trip_ids: list[str]  # every trip a row belongs to (closed or still open)
    trips: list[TripSummary]  # closed trips, grouped by vehicle, in time order
    events: list[HarshEvent]
    rejections: list[Rejection]  # grouped by vehicle, in arrival order
    readings: IntArray  # per vehicle: input readings
    rejected: IntArray  # per vehicle
    duplicates: IntArray  # per vehicle
    input_flags: Sequence[tuple[str, ...]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def kinematics(self) -> Iterator[Kinematics]:
        """The rows as ``Kinematics`` records (what the streaming path returns)."""
        for row in range(len(self)):
            yield self.row(row)

    def row(self, row: int) -> Kinematics:
        flags = self.input_flags[int(self.index[row])] if self.input_flags is not None else ()
        if self.clamped[row]:
            flags = (*flags, CLAMPED_FLAG)
        if self.bridged_gap[row]:
            flags = (*flags, BRIDGED_GAP_FLAG)
        trip = int(self.trip[row])
        return Kinematics(
            vehicle_id=self.vehicle_ids[int(self.vehicle[row])],
            ts=float(self.ts[row]),
            speed_mps=float(self.speed_mps[row]),
            acceleration_mps2=optional(self.acceleration_mps2[row]),
            acceleration_sigma_mps2=optional(self.acceleration_sigma_mps2[row]),
            jerk_mps3=optional(self.jerk_mps3[row]),
            distance_m=float(self.distance_m[row]),
            trip_id=self.trip_ids[trip] if trip >= 0 else None,
            trip_distance_m=optional(self.trip_distance_m[row]),
            flags=flags,
        )


def optional(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
