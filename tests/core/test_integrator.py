"""Trapezoid distance and Neumaier summation, streaming and vectorised."""

from array import array

import numpy as np
import pytest

from kinestream.core.integrator import (
    compensated,
    compensated_cumsum,
    neumaier_add,
    segmented_compensated_cumsum,
    trapezoid_m,
)


def test_trapezoid_is_the_mean_speed_times_the_interval():
    """(10 + 20) / 2 m/s over 3 s is 45 m."""
    assert trapezoid_m(10.0, 20.0, 3.0) == 45.0


def test_neumaier_keeps_increments_plain_addition_loses():
    """1e8 m plus ten million 1e-9 m increments: the compensated sum keeps the 0.01 m."""
    slots = array("d", [0.0, 0.0])
    neumaier_add(slots, 0, 1e8)
    plain = 1e8
    for _ in range(10_000_000 // 1000):  # 10 000 adds of 1e-6 m = 0.01 m
        neumaier_add(slots, 0, 1e-6)
        plain += 1e-6
    assert compensated(slots, 0) == 1e8 + 0.01
    assert plain != 1e8 + 0.01


def test_vectorised_sums_match_the_loop_bit_for_bit():
    """compensated_cumsum gives exactly the partial sums of neumaier_add in a loop."""
    rng = np.random.default_rng(7)
    x = rng.random(3000) * rng.choice([1e-9, 1.0, 1e7], 3000)
    slots = array("d", [0.0, 0.0])
    expected = []
    for value in x.tolist():
        neumaier_add(slots, 0, value)
        expected.append(compensated(slots, 0))
    assert compensated_cumsum(x).tolist() == expected


def test_segments_restart_from_zero():
    """Each segment is summed on its own, whether segments are even or uneven."""
    x = np.arange(1.0, 11.0)
    even = segmented_compensated_cumsum(x, np.array([0, 5]))
    assert even.tolist() == [1, 3, 6, 10, 15, 6, 13, 21, 30, 40]
    uneven = segmented_compensated_cumsum(x, np.array([0, 1, 9]))
    assert uneven.tolist() == [1, 2, 5, 9, 14, 20, 27, 35, 44, 10]


def _loop_sums(x: np.ndarray, skip_first: bool) -> list[float]:
    slots = array("d", [0.0, 0.0])
    out = []
    for k, value in enumerate(x.tolist()):
        if not (skip_first and k == 0):
            neumaier_add(slots, 0, value)
        out.append(compensated(slots, 0))
    return out


@pytest.mark.parametrize("skip_first", [False, True])
@pytest.mark.parametrize(
    "lengths",
    [
        [1000] * 7,  # equal segments: the reshape path
        [1, 2, 3, 500, 7, 260, 1200, 1, 90, 91, 4000],  # uneven: several padded buckets
        [1, 1, 1],  # with skip_first nothing is left to sum
    ],
)
def test_segmented_sums_match_the_loop_bit_for_bit(lengths, skip_first):
    """Every layout (reshape, padded buckets, single rows) gives neumaier_add's exact bits."""
    rng = np.random.default_rng(len(lengths))
    n = sum(lengths)
    x = rng.random(n) * rng.choice([1e-9, 1.0, 1e7], n)
    starts = np.cumsum([0, *lengths[:-1]])
    got = segmented_compensated_cumsum(x, starts, skip_first=skip_first)
    expected = []
    for start, length in zip(starts, lengths, strict=True):
        expected += _loop_sums(x[start : start + length], skip_first)
    assert got.tolist() == expected
