"""Distance: the trapezoid of validated speed, summed with Neumaier compensation.

A lifetime odometer adds ~10⁶ small increments to a large total; plain float addition would
lose the low bits of each one. Neumaier's variant of Kahan summation keeps them in a separate
compensation term, so the total is as good as a correctly rounded sum in practice.
"""

from __future__ import annotations

from array import array


def trapezoid_m(speed0_mps: float, speed1_mps: float, dt_s: float) -> float:
    """Distance over one interval; the batch path uses the same expression (same rounding)."""
    return 0.5 * (speed0_mps + speed1_mps) * dt_s


def neumaier_add(slots: array[float], sum_index: int, x: float) -> None:
    """Add ``x`` to the sum at ``slots[sum_index]``; its compensation lives at ``sum_index + 1``."""
    total = slots[sum_index]
    new_total = total + x
    if abs(total) >= abs(x):
        slots[sum_index + 1] += (total - new_total) + x
    else:
        slots[sum_index + 1] += (x - new_total) + total
    slots[sum_index] = new_total


def compensated(slots: array[float], sum_index: int) -> float:
    """The sum's best value: the running total plus its compensation."""
    return slots[sum_index] + slots[sum_index + 1]
