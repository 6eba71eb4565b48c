"""Trips and harsh events over whole arrays: the state machines of trips.py and harsh.py as
segmentations, giving the records the streaming tracker gives for the same readings.

Inputs are one block of committed readings, grouped by vehicle, each vehicle in commit order,
with ``fresh`` marking a restart before a reading (a vehicle's first reading, or a gap longer
than ``max_gap_s``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kinestream.core import trips as trip_rules
from kinestream.core.prepared import Prepared

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Block:
    """Committed readings of one or more vehicles, grouped by vehicle, in commit order."""

    ts: FloatArray
    speed_mps: FloatArray
    accel_mps2: FloatArray  # NaN where the estimator gives none
    fresh: BoolArray  # restart before this reading: a vehicle's first, or after a long gap
    bridged: BoolArray  # the interval before this reading is a bridged gap
    vehicle_start: BoolArray


@dataclass(frozen=True, slots=True)
class TripSpans:
    """Trips as half-open reading ranges [start, end) of the block, in order."""

    start: IntArray
    end: IntArray
    end_reason: list[str | None]  # None: still open (no ``finish``)
    end_ts: FloatArray
    of_reading: IntArray  # trip number per reading, -1 between trips


@dataclass(frozen=True, slots=True)
class HarshSpans:
    """Harsh events found: first reading over the entry threshold, last one over the exit."""

    accelerating: BoolArray
    first: IntArray
    last: IntArray
    start_ts: FloatArray
    start_speed_mps: FloatArray
    peak_mps2: FloatArray


def _run_starts(flag: BoolArray, fresh: BoolArray) -> BoolArray:
    """Where a run of ``flag`` begins: flag set, and not continuing one from the reading before."""
    previous = np.empty_like(flag)
    previous[:1] = False
    previous[1:] = flag[:-1]
    return flag & (fresh | ~previous)


def _last_start_at_or_before(starts: BoolArray) -> IntArray:
    positions = np.where(starts, np.arange(starts.shape[0]), 0)
    return np.maximum.accumulate(positions) if starts.shape[0] else positions


def segment_trips(block: Block, finish: bool, p: Prepared) -> TripSpans:
    """Trips without a loop over readings or trips.

    Every restart (a vehicle's first reading, a long gap) and every reading at which a long
    enough rest's deadline passes is a boundary: a trip that reaches one ends there, so the
    vehicle is idle at each boundary, and the first fast reading after a boundary (before the
    next one) starts a trip that ends at that next boundary.
    """
    ts, speed_mps, vehicle_start = block.ts, block.speed_mps, block.vehicle_start
    n = ts.shape[0]
    slow = speed_mps < p.trip_stop_speed_mps
    # Rests: runs of slow readings within a vehicle (a trip never spans a restart anyway).
    rest_start = _run_starts(slow, vehicle_start)
    rest_start_of = _last_start_at_or_before(rest_start)
    stop_ends = _stop_end_indices(ts, slow, rest_start, vehicle_start, p)
    restarts = np.flatnonzero(block.fresh)
    boundaries = np.union1d(restarts, stop_ends)
    following = np.append(boundaries[1:], n)
    fast = np.flatnonzero(speed_mps > p.trip_start_speed_mps)
    first_fast = np.searchsorted(fast, boundaries)
    candidate = fast[np.minimum(first_fast, len(fast) - 1)] if len(fast) else first_fast
    opens = (first_fast < len(fast)) & (candidate < following)
    starts, ends = candidate[opens].astype(np.intp), following[opens].astype(np.intp)
    reasons = _end_reasons(ends, block, stop_ends, rest_start_of, finish, p)
    last = ends - 1
    end_ts = np.where(slow[last], ts[rest_start_of[last]], ts[last]) if len(last) else np.empty(0)
    # Trip number per reading: +1 where a trip starts, back to -1 where it ends.
    marks = np.zeros(n + 1, dtype=np.intp)
    np.add.at(marks, starts, 1)
    np.add.at(marks, ends, -1)
    inside = np.cumsum(marks[:-1]) > 0
    of_reading = np.where(inside, np.cumsum(np.bincount(starts, minlength=n)[:n]) - 1, -1)
    return TripSpans(starts, ends, reasons, end_ts, of_reading)


def _end_reasons(  # noqa: PLR0917
    ends: IntArray,
    block: Block,
    stop_ends: IntArray,
    rest_start_of: IntArray,
    finish: bool,
    p: Prepared,
) -> list[str | None]:
    """Why each trip ended at its boundary (the rules of ``trips.due_reason``)."""
    n = block.ts.shape[0]
    inside = ends < n
    at = np.where(inside, ends, 0)
    data_end = ~inside | block.vehicle_start[at]
    restart = inside & block.fresh[at]
    resting_end = np.isin(ends, stop_ends)
    last = ends - 1
    stop_deadline = block.ts[rest_start_of[last]] + p.trip_end_stop_s
    gap_deadline = block.ts[last] + p.max_gap_s
    stopped_first = stop_deadline <= gap_deadline
    reasons: list[str | None] = []
    for k in range(len(ends)):
        if data_end[k]:
            reasons.append(trip_rules.END_OF_DATA if finish else None)
        elif not restart[k] or (resting_end[k] and stopped_first[k]):
            reasons.append(trip_rules.END_STOPPED)
        else:
            reasons.append(trip_rules.END_GAP)
    return reasons


def _stop_end_indices(
    ts: FloatArray, slow: BoolArray, rest_start: BoolArray, vehicle_start: BoolArray, p: Prepared
) -> IntArray:
    """For each rest long enough to end a trip, the first reading at which its deadline passed.

    A rest starting at ``a`` ends a trip at the first later reading ``k`` (inside the rest or
    the first one after it) with ``ts[k] >= ts[a] + trip_end_stop_s``, as ``trips.due_reason``.
    """
    n = ts.shape[0]
    starts = np.flatnonzero(rest_start)
    if not len(starts):
        return starts
    # Last reading of each rest, and the reading after it when it belongs to the same vehicle.
    continues = np.empty(n, dtype=bool)
    continues[:-1] = slow[1:] & ~vehicle_start[1:]
    continues[-1:] = False
    rest_last = np.flatnonzero(slow & ~continues)
    after = rest_last + 1
    has_after = after < n
    has_after[has_after] = ~vehicle_start[after[has_after]]
    horizon = np.where(has_after, after, rest_last)
    deadline = ts[starts] + p.trip_end_stop_s
    qualifies = ts[horizon] >= deadline
    found = []
    for a, h, due in zip(starts[qualifies], horizon[qualifies], deadline[qualifies], strict=True):
        found.append(a + 1 + int(np.searchsorted(ts[a + 1 : h + 1], due, side="left")))
    return np.asarray(found, dtype=np.intp)


def segment_harsh(block: Block, trip_breaks: IntArray, finish: bool, p: Prepared) -> HarshSpans:
    """Events as runs beyond the exit threshold that reach the entry threshold (hysteresis).

    A run is cut where the tracker flushes: a restart, a trip ended before a reading, and the
    end of a vehicle's data (reported there only with ``finish``).
    """
    ts, speed_mps, accel_mps2, fresh = block.ts, block.speed_mps, block.accel_mps2, block.fresh
    n = ts.shape[0]
    cut = fresh.copy()
    cut[trip_breaks[trip_breaks < n]] = True
    found = [
        _harsh_runs(
            accel_mps2 >= p.harsh_exit_accel_mps2, accel_mps2 >= p.harsh_enter_accel_mps2, cut
        ),
        _harsh_runs(
            accel_mps2 <= p.harsh_exit_brake_mps2, accel_mps2 <= p.harsh_enter_brake_mps2, cut
        ),
    ]
    first = np.concatenate([f for f, _ in found])
    last = np.concatenate([last for _, last in found])
    accelerating = np.zeros(len(first), dtype=bool)
    accelerating[: len(found[0][0])] = True
    # The acceleration at a reading describes the interval ending there, unless that was a gap.
    from_previous = ~fresh[first] & ~block.bridged[first]
    origin = np.where(from_previous, first - 1, first)
    start_ts = ts[origin]
    long_enough = ts[last] - start_ts >= p.harsh_min_duration_s
    reported = long_enough & (finish | ~_is_vehicle_end(last, block.vehicle_start))
    order = np.argsort(last[reported], kind="stable")
    first, last = first[reported][order], last[reported][order]
    accelerating = accelerating[reported][order]
    origin = origin[reported][order]
    peak = np.empty(len(first))
    for k, (a, b, up) in enumerate(zip(first, last, accelerating, strict=True)):
        peak[k] = accel_mps2[a : b + 1].max() if up else accel_mps2[a : b + 1].min()
    return HarshSpans(accelerating, first, last, ts[origin], speed_mps[origin], peak)


def _harsh_runs(
    beyond_exit: BoolArray, beyond_entry: BoolArray, cut: BoolArray
) -> tuple[IntArray, IntArray]:
    """(first entry reading, last reading) of each run of ``beyond_exit`` reaching the entry."""
    n = beyond_exit.shape[0]
    run_start = _run_starts(beyond_exit, cut)
    continues = np.zeros(n, dtype=bool)
    continues[:-1] = beyond_exit[1:] & ~cut[1:]
    run_last = np.flatnonzero(beyond_exit & ~continues)
    run_first = np.flatnonzero(run_start)
    entries = np.flatnonzero(beyond_entry)
    k = np.searchsorted(entries, run_first)
    entry = (
        np.where(k < len(entries), entries[np.minimum(k, len(entries) - 1)], n)
        if len(entries)
        else np.full(len(run_first), n)
    )
    has_entry = entry <= run_last
    return entry[has_entry].astype(np.intp), run_last[has_entry].astype(np.intp)


def _is_vehicle_end(index: IntArray, vehicle_start: BoolArray) -> BoolArray:
    n = vehicle_start.shape[0]
    following = index + 1
    at_end = following >= n
    at_end[~at_end] = vehicle_start[following[~at_end]]
    return at_end
