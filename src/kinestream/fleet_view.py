"""The demo's table: the latest kinematics per vehicle and its output rate, as text lines.

Fed the JSON records the daemon publishes (kinematics, trips) with their receive time; it
keeps no clock of its own, so tests pass time in. Records it cannot read are counted and
shown, never dropped silently.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

MPS_TO_KMH = 3.6
HEADER = ("vehicle", "speed km/h", "accel m/s²", "distance km", "trip", "trip km", "rate /s")


@dataclass(slots=True)
class VehicleRow:
    vehicle_id: str
    speed_mps: float = 0.0
    acceleration_mps2: float | None = None
    distance_m: float = 0.0
    trip_id: str | None = None
    trip_distance_m: float | None = None
    trips_completed: int = 0
    receive_times: deque[float] = field(default_factory=deque)
    first_received_at: float | None = None

    def rate_per_s(self, now: float, window_s: float) -> float:
        """Records per second over the last window_s (or since the first, if more recent)."""
        while self.receive_times and self.receive_times[0] <= now - window_s:
            self.receive_times.popleft()
        if self.first_received_at is None:
            return 0.0
        since_first_s = now - self.first_received_at
        if since_first_s >= window_s:
            return len(self.receive_times) / window_s
        # Young vehicle: n records since the first one span n - 1 intervals.
        return (len(self.receive_times) - 1) / since_first_s if since_first_s >= 1.0 else 0.0


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class FleetView:
    """Latest state per vehicle from the daemon's output records."""

    def __init__(self, rate_window_s: float = 5.0) -> None:
        self.rate_window_s = rate_window_s
        self.vehicles: dict[str, VehicleRow] = {}
        self.kinematics_received = 0
        self.unreadable = 0

    def on_kinematics(self, record: object, received_at: float) -> None:
        """Take one kinematics record (the daemon's JSON, already parsed)."""
        if not isinstance(record, dict) or not isinstance(record.get("vehicle_id"), str):
            self.unreadable += 1
            return
        speed, distance = _number(record.get("speed_mps")), _number(record.get("distance_m"))
        if speed is None or distance is None:
            self.unreadable += 1
            return
        row = self.vehicles.setdefault(record["vehicle_id"], VehicleRow(record["vehicle_id"]))
        row.speed_mps, row.distance_m = speed, distance
        row.acceleration_mps2 = _number(record.get("acceleration_mps2"))
        trip_id = record.get("trip_id")
        row.trip_id = trip_id if isinstance(trip_id, str) else None
        row.trip_distance_m = _number(record.get("trip_distance_m"))
        row.receive_times.append(received_at)
        if row.first_received_at is None:
            row.first_received_at = received_at
        self.kinematics_received += 1

    def on_trip(self, record: object) -> None:
        """Count a completed trip for its vehicle."""
        if not isinstance(record, dict) or not isinstance(record.get("vehicle_id"), str):
            self.unreadable += 1
            return
        vehicle_id = record["vehicle_id"]
        self.vehicles.setdefault(vehicle_id, VehicleRow(vehicle_id)).trips_completed += 1

    def table_rows(self, now: float) -> list[tuple[str, ...]]:
        rows = []
        for vehicle_id in sorted(self.vehicles):
            row = self.vehicles[vehicle_id]
            accel = "-" if row.acceleration_mps2 is None else f"{row.acceleration_mps2:+.2f}"
            trip_km = "-" if row.trip_distance_m is None else f"{row.trip_distance_m / 1000:.3f}"
            rows.append(
                (
                    vehicle_id,
                    f"{row.speed_mps * MPS_TO_KMH:.1f}",
                    accel,
                    f"{row.distance_m / 1000:.3f}",
                    row.trip_id or "-",
                    trip_km,
                    f"{row.rate_per_s(now, self.rate_window_s):.1f}",
                )
            )
        return rows

    def render(self, now: float) -> list[str]:
        """The table as aligned text lines, header first, then a one-line footer."""
        rows = [HEADER, *self.table_rows(now)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
        lines = [
            "  ".join(
                cell.ljust(w) if i in (0, 4) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        footer = f"{len(self.vehicles)} vehicles, {self.kinematics_received} kinematics records"
        if self.unreadable:
            footer += f", {self.unreadable} unreadable records"
        return [*lines, footer]
