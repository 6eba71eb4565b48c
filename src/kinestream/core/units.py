"""Speed units: everything inside the core is SI (m/s, m, s)."""

from __future__ import annotations

from enum import StrEnum


class SpeedUnit(StrEnum):
    METRES_PER_SECOND = "m/s"
    KILOMETRES_PER_HOUR = "km/h"
    MILES_PER_HOUR = "mph"
    KNOTS = "kn"


# Exact by definition: 1 mile = 1609.344 m, 1 nautical mile = 1852 m.
MPS_PER_UNIT: dict[SpeedUnit, float] = {
    SpeedUnit.METRES_PER_SECOND: 1.0,
    SpeedUnit.KILOMETRES_PER_HOUR: 1000.0 / 3600.0,
    SpeedUnit.MILES_PER_HOUR: 1609.344 / 3600.0,
    SpeedUnit.KNOTS: 1852.0 / 3600.0,
}

STANDARD_GRAVITY_MPS2 = 9.80665


def to_mps(speed: float, unit: SpeedUnit) -> float:
    return speed * MPS_PER_UNIT[unit]


def parse_unit(text: str) -> SpeedUnit:
    """Map a unit string to a ``SpeedUnit``; raises ``ValueError`` naming the accepted set."""
    try:
        return SpeedUnit(text)
    except ValueError:
        accepted = ", ".join(repr(unit.value) for unit in SpeedUnit)
        raise ValueError(f"unknown speed unit {text!r} (accepted: {accepted})") from None
