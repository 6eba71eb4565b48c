"""Distance: the trapezoid of validated speed, summed with Neumaier compensation.

A lifetime odometer adds ~10⁶ small increments to a large total; plain float addition would
lose the low bits of each one. Neumaier's variant of Kahan summation keeps them in a separate
compensation term, so the total is as good as a correctly rounded sum in practice.
"""

from __future__ import annotations

from array import array

import numpy as np

from kinestream.core.arrays import FloatArray, IntArray


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
    out = np.empty(x.shape[0])
    if x.shape[0]:
        _compensated_rows(x[np.newaxis, :], out[np.newaxis, :])
    return out


def segmented_compensated_cumsum(
    x: FloatArray, starts: IntArray, *, skip_first: bool = False
) -> FloatArray:
    """``compensated_cumsum`` restarted at each index in ``starts`` (sorted, ``starts[0] == 0``).

    With ``skip_first`` each segment's first term counts as 0 (a trip's first reading opens
    it: the interval before it is not in the trip).
    """
    n = x.shape[0]
    out = np.empty(n)
    if n == 0:
        return out
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = n
    compensated_ranges(x, starts, ends, out, skip_first=skip_first)
    return out


def compensated_ranges(
    x: FloatArray, starts: IntArray, ends: IntArray, out: FloatArray, *, skip_first: bool = False
) -> None:
    """``out[s:e] = compensated_cumsum(x[s:e])`` for each range (sorted, disjoint, non-empty).

    Ranges run as rows of 2-D arrays: equal ranges tiling ``x`` are a reshape (no copy);
    otherwise ranges of similar length (within 2x) share one zero-padded array (adding zeros
    changes neither sum nor compensation), so padding never doubles the work.
    """
    if not starts.shape[0]:
        return
    if skip_first:
        out[starts] = 0.0
        starts = starts + 1
    lengths = ends - starts
    width = int(lengths.max())
    n = x.shape[0]
    skip = int(skip_first)
    if width <= 0:
        return
    full_width = width + skip
    tiles = (
        starts.shape[0] * full_width == n
        and bool((lengths == width).all())
        and starts[0] == skip
        and bool((np.diff(starts) == full_width).all())
    )
    if tiles:  # equal ranges covering everything: 2-D views, no copies
        _compensated_rows(
            x.reshape(-1, full_width)[:, skip:], out.reshape(-1, full_width)[:, skip:]
        )
        return
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    begin = 0
    while begin < order.shape[0] and sorted_lengths[begin] > 0:
        width = int(sorted_lengths[begin])
        stop = int(np.searchsorted(-sorted_lengths, -(width // 2), side="left"))
        stop = max(stop, begin + 1)
        chosen = order[begin:stop]
        _padded_rows(x, starts[chosen], lengths[chosen], width, out)
        begin = stop


def _padded_rows(
    x: FloatArray, starts: IntArray, lengths: IntArray, width: int, out: FloatArray
) -> None:
    """Ranges of at most ``width`` terms as the zero-padded rows of one array."""
    rows = starts.shape[0]
    if rows == 1:
        start, end = int(starts[0]), int(starts[0] + lengths[0])
        _compensated_rows(x[np.newaxis, start:end], out[np.newaxis, start:end])
        return
    total = int(lengths.sum())
    offsets = np.zeros(rows, dtype=np.intp)
    np.cumsum(lengths[:-1], out=offsets[1:])
    source = np.repeat(starts - offsets, lengths)
    source += np.arange(total)
    target = np.repeat(np.arange(rows) * width - offsets, lengths)
    target += np.arange(total)
    grid = np.zeros(rows * width)
    grid[target] = x[source]
    sums = np.empty_like(grid)
    _compensated_rows(grid.reshape(rows, width), sums.reshape(rows, width))
    out[source] = sums[target]


def _compensated_rows(rows: FloatArray, out: FloatArray) -> None:
    """Row-wise partial Neumaier sums of non-negative terms into ``out`` (not ``rows``).

    Neumaier's error term is (larger - new total) + smaller, exactly as ``neumaier_add``
    orders it. The running total is larger than the next term except near a row's start,
    so the error is written as (total - new total) + term in two passes and the few places
    where the term is larger are redone the other way round.
    """
    np.cumsum(rows, axis=1, out=out)
    previous, terms, totals = out[:, :-1], rows[:, 1:], out[:, 1:]
    error = np.empty(rows.shape)
    tail = error[:, 1:]
    np.subtract(previous, totals, out=tail)
    tail += terms
    swapped = np.nonzero(previous < terms)
    if swapped[0].shape[0]:
        tail[swapped] = (terms[swapped] - totals[swapped]) + previous[swapped]
    first = rows[:, 0]
    error[:, 0] = (np.maximum(0.0, first) - out[:, 0]) + np.minimum(0.0, first)
    np.cumsum(error, axis=1, out=error)
    out += error
