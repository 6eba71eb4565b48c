"""What ``process_batch`` returns: kinematics as columns, the other records as lists."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kinestream.core.arrays import BoolArray, FloatArray, IntArray
from kinestream.core.records import HarshEvent, Kinematics, Rejection, TripSummary
from kinestream.core.tracker import BRIDGED_GAP_FLAG
from kinestream.core.validation import CLAMPED_FLAG


class KinematicsColumns(NamedTuple):
    """Rows of kinematics as one list per ``Kinematics`` field, in its field order.

    For writers that encode many rows at once: no record object per row. The float lists
    hold NaN where a record holds ``None`` (``trip_id`` holds ``None`` itself).
    """

    vehicle_id: list[str]
    ts: list[float]
    speed_mps: list[float]
    acceleration_mps2: list[float]
    acceleration_sigma_mps2: list[float]
    jerk_mps3: list[float]
    distance_m: list[float]
    trip_id: list[str | None]
    trip_distance_m: list[float]
    flags: list[tuple[str, ...]]


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

    def input_order(self) -> IntArray:
        """The rows in the order of their readings in the input (the order the stream emits
        them with reorder bound 0)."""
        return np.argsort(self.index, kind="stable")

    def kinematics_columns(self, rows: IntArray) -> KinematicsColumns:
        """The kinematics of ``rows`` (row numbers, in the order wanted) as columns: the same
        values as ``row(k)`` for each ``k``, NaN standing for None."""
        vehicle_ids = np.array(self.vehicle_ids, dtype=object)
        trip_ids = np.array([*self.trip_ids, None], dtype=object)  # trip -1: None
        return KinematicsColumns(
            vehicle_id=vehicle_ids[self.vehicle[rows]].tolist(),
            ts=self.ts[rows].tolist(),
            speed_mps=self.speed_mps[rows].tolist(),
            acceleration_mps2=self.acceleration_mps2[rows].tolist(),
            acceleration_sigma_mps2=self.acceleration_sigma_mps2[rows].tolist(),
            jerk_mps3=self.jerk_mps3[rows].tolist(),
            distance_m=self.distance_m[rows].tolist(),
            trip_id=trip_ids[self.trip[rows]].tolist(),
            trip_distance_m=self.trip_distance_m[rows].tolist(),
            flags=self._flags(rows),
        )

    def _flags(self, rows: IntArray) -> list[tuple[str, ...]]:
        """Each row's flags as ``row`` builds them: the input's, then clamped, bridged_gap."""
        if self.input_flags is None:
            flags: list[tuple[str, ...]] = [()] * len(rows)
        else:
            input_flags = self.input_flags
            flags = [input_flags[i] for i in self.index[rows].tolist()]
        clamped, bridged = self.clamped[rows], self.bridged_gap[rows]
        for k in np.flatnonzero(clamped | bridged).tolist():
            extra = (CLAMPED_FLAG,) * bool(clamped[k]) + (BRIDGED_GAP_FLAG,) * bool(bridged[k])
            flags[k] = (*flags[k], *extra)
        return flags

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
