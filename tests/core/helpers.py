"""Small builders shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterable

from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.core.records import Kinematics, Reading, Record

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DIFFERENCE = EstimatorParams(method=Method.DIFFERENCE)


def params(**overrides: object) -> TrackerParams:
    """Tracker params with the `difference` estimator (exact, hand-checkable numbers)."""
    overrides.setdefault("estimator", DIFFERENCE)
    return TrackerParams(**overrides)  # type: ignore[arg-type]


def readings(
    speeds: Iterable[float], vehicle_id: str = "truck-7", start: float = T0, dt: float = 1.0
):
    return [Reading(vehicle_id, start + i * dt, float(v)) for i, v in enumerate(speeds)]


def kinematics(records: Iterable[Record]) -> list[Kinematics]:
    return [r for r in records if isinstance(r, Kinematics)]


def of_type(records: Iterable[Record], kind: type) -> list:
    return [r for r in records if isinstance(r, kind)]
