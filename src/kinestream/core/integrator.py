"""Distance: the trapezoid of validated speed, summed with Neumaier compensation.

A lifetime odometer adds ~10⁶ small increments to a large total; plain float addition would
lose the low bits of each one. Neumaier's variant of Kahan summation keeps them in a separate
compensation term, so the total is as good as a correctly rounded sum in practice.
"""

from __future__ import annotations

import itertools
from array import array

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


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


def compensated_cumsum(x: FloatArray) -> FloatArray:
    """Every partial Neumaier sum of non-negative ``x``: bit for bit ``neumaier_add`` in a loop.

    Neumaier's running total is the plain left-to-right sum (``np.cumsum`` is sequential), and
    its compensation is the plain running sum of each step's exact rounding error, which only
    needs the previous total: both vectorise. For non-negative terms "the larger magnitude"
    of (previous total, term) is simply the larger value.
    """
    return _compensated_rows(x[np.newaxis, :])[0]


def segmented_compensated_cumsum(x: FloatArray, starts: IntArray) -> FloatArray:
    """``compensated_cumsum`` restarted at each index in ``starts`` (sorted, ``starts[0] == 0``).

    Segments run as rows of one 2-D array, padded with zeros after a segment's end (adding
    zeros changes neither sum nor compensation); very uneven lengths run one by one.
    """
    n = x.shape[0]
    if n == 0:
        return np.empty(0)
    lengths = np.diff(np.append(starts, n))
    width = int(lengths.max())
    if len(lengths) * width == n:  # equal lengths: a reshape, no copy
        return _compensated_rows(x.reshape(len(lengths), width)).reshape(n)
    if len(lengths) * width <= 2 * n + 1024:
        rows = np.zeros((len(lengths), width))
        row_of = np.repeat(np.arange(len(lengths)), lengths)
        columns = np.arange(n) - np.repeat(starts, lengths)
        rows[row_of, columns] = x
        return _compensated_rows(rows)[row_of, columns]
    out = np.empty(n)
    for start, end in itertools.pairwise(np.append(starts, n)):
        out[start:end] = compensated_cumsum(x[start:end])
    return out


def _compensated_rows(rows: FloatArray) -> FloatArray:
    total = np.cumsum(rows, axis=1)
    previous = np.zeros_like(total)
    previous[:, 1:] = total[:, :-1]
    # Neumaier's error term: (larger - new total) + smaller, exactly as neumaier_add orders it.
    error = np.maximum(previous, rows)
    error -= total
    error += np.minimum(previous, rows)
    total += np.cumsum(error, axis=1)
    return total
