"""Trips and harsh events over whole arrays: the state machines of trips.py and harsh.py as
segmentations, giving the records the streaming tracker gives for the same readings.

Inputs are one block of committed readings, grouped by vehicle, each vehicle in commit order,
with ``fresh`` marking a restart before a reading (a vehicle's first reading, or a gap longer
than ``max_gap_s``).

Cost: a few element-wise passes per state machine (a comparison against a threshold, the
edges where it flips); everything after that works on the edges, rests, trips and events,
which are far fewer than the readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinestream.core import trips as trip_rules
from kinestream.core.arrays import BoolArray, FloatArray, IntArray
from kinestream.core.batch_plan import Plan
from kinestream.core.integrator import compensated_ranges, segmented_compensated_cumsum
from kinestream.core.prepared import Prepared


@dataclass(frozen=True, slots=True)
class Block:
    """Committed readings of one or more vehicles, grouped by vehicle, in commit order."""

    ts: FloatArray
    speed_mps: FloatArray
    accel_mps2: FloatArray  # NaN where the estimator gives none
    fresh: BoolArray  # restart before this reading: a vehicle's first, or after a long gap
    bridged: BoolArray  # the interval before this reading is a bridged gap
    vehicle_start: BoolArray
    starts: IntArray  # where ``vehicle_start``
    restarts: IntArray  # where ``fresh``


@dataclass(frozen=True, slots=True)
class TripSpans:
    """Trips as half-open reading ranges [start, end) of the block, in order."""

    start: IntArray
    end: IntArray
    end_reason: list[str | None]  # None: still open (no ``finish``)
    end_ts: FloatArray
    of_reading: IntArray  # trip number per reading, -1 between trips
    stops: IntArray  # per trip: rests it resumed from (stopped -> moving)


@dataclass(frozen=True, slots=True)
class HarshSpans:
    """Harsh events found: first reading over the entry threshold, last one over the exit."""

    accelerating: BoolArray
    first: IntArray
    last: IntArray
    start_ts: FloatArray
    start_speed_mps: FloatArray
    peak_mps2: FloatArray


def _rising(flag: BoolArray) -> IntArray:
    """Where ``flag`` turns on (index 0 included when it starts on)."""
    edges = np.flatnonzero(flag[1:] > flag[:-1])
    edges += 1
    return np.concatenate(([0], edges)) if flag.shape[0] and flag[0] else edges


def _falling(flag: BoolArray) -> IntArray:
    """Last index of each run of ``flag`` (the array's last index when it ends on)."""
    edges = np.flatnonzero(flag[:-1] > flag[1:])
    n = flag.shape[0]
    return np.append(edges, n - 1) if n and flag[-1] else edges


def _runs(flag: BoolArray, starts: IntArray) -> tuple[IntArray, IntArray]:
    """(first, end) of each maximal run of equal ``flag`` values within a vehicle."""
    n = flag.shape[0]
    edges = np.flatnonzero(flag[1:] != flag[:-1])
    edges += 1
    first = np.union1d(edges, starts)
    end = np.empty_like(first)
    end[:-1] = first[1:]
    end[-1:] = n
    return first, end


def segment_trips(block: Block, finish: bool, p: Prepared) -> TripSpans:
    """Trips without a loop over readings or trips.

    Every restart (a vehicle's first reading, a long gap) and every reading at which a long
    enough rest's deadline passes is a boundary: a trip that reaches one ends there, so the
    vehicle is idle at each boundary, and the first fast reading after a boundary (before the
    next one) starts a trip that ends at that next boundary.
    """
    ts, speed_mps = block.ts, block.speed_mps
    n = ts.shape[0]
    if n == 0:
        empty = np.empty(0, dtype=np.intp)
        return TripSpans(empty, empty, [], np.empty(0), empty, empty)
    slow = speed_mps < p.trip_stop_speed_mps
    # Rests: runs of slow readings within a vehicle (a trip never spans a restart anyway).
    run_first, run_end = _runs(slow, block.starts)
    resting = slow[run_first]
    rest_first, rest_end = run_first[resting], run_end[resting]
    stop_ends = _stop_end_indices(ts, rest_first, rest_end, block.vehicle_start, p)
    boundaries = np.union1d(block.restarts, stop_ends)
    boundaries = boundaries[boundaries < n]  # a deadline found past the data starts nothing
    following = np.append(boundaries[1:], n)
    candidate = _first_at_or_after(speed_mps > p.trip_start_speed_mps, boundaries)
    opens = candidate < following
    starts, ends = candidate[opens], following[opens]
    last = ends - 1
    # The run holding each trip's last reading: its rest start when that reading is slow.
    run_of_last = run_first[np.searchsorted(run_first, last, side="right") - 1]
    reasons = _end_reasons(ends, block, stop_ends, run_of_last, finish, p)
    end_ts = np.where(slow[last], ts[run_of_last], ts[last])
    of_reading = _trip_numbers(starts, ends, n)
    # A rest resumed inside a trip: the reading after it is in the same trip as its last one.
    after = rest_end[rest_end < n]
    trip_after = of_reading[after]
    resumed = trip_after[(trip_after >= 0) & (trip_after == of_reading[after - 1])]
    stops = np.bincount(resumed, minlength=starts.shape[0])
    return TripSpans(starts, ends, reasons, end_ts, of_reading, stops)


def _first_at_or_after(flag: BoolArray, positions: IntArray) -> IntArray:
    """For each position (< len(flag)), the first index at or after it where ``flag``."""
    rising = _rising(flag)
    k = np.searchsorted(rising, positions)
    later = np.append(rising, flag.shape[0])[k]
    return np.where(flag[positions], positions, later)


def _trip_numbers(starts: IntArray, ends: IntArray, n: int) -> IntArray:
    """Trip number per reading, -1 between trips: one run-length expansion."""
    count = starts.shape[0]
    bounds = np.empty(2 * count + 2, dtype=np.intp)
    bounds[0], bounds[-1] = 0, n
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    values = np.full(2 * count + 1, -1, dtype=np.intp)
    values[1::2] = np.arange(count)
    return np.repeat(values, np.diff(bounds))


def _end_reasons(  # noqa: PLR0917
    ends: IntArray,
    block: Block,
    stop_ends: IntArray,
    rest_start_of_last: IntArray,
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
    stop_deadline = block.ts[rest_start_of_last] + p.trip_end_stop_s
    gap_deadline = block.ts[last] + p.max_gap_s
    stopped_first = stop_deadline <= gap_deadline
    reasons: list[str | None] = []
    for at_end, at_restart, rested, stopped in zip(
        data_end.tolist(),
        restart.tolist(),
        resting_end.tolist(),
        stopped_first.tolist(),
        strict=True,
    ):
        if at_end:
            reasons.append(trip_rules.END_OF_DATA if finish else None)
        elif not at_restart or (rested and stopped):
            reasons.append(trip_rules.END_STOPPED)
        else:
            reasons.append(trip_rules.END_GAP)
    return reasons


def _stop_end_indices(
    ts: FloatArray,
    rest_first: IntArray,
    rest_end: IntArray,
    vehicle_start: BoolArray,
    p: Prepared,
) -> IntArray:
    """For each rest long enough to end a trip, the first reading at which its deadline passed.

    A rest starting at ``a`` ends a trip at the first later reading ``k`` (inside the rest or
    the first one after it) with ``ts[k] >= ts[a] + trip_end_stop_s``, as ``trips.due_reason``.
    Found by a bisection run for all such rests at once (ts increases within a vehicle).
    """
    n = ts.shape[0]
    if not rest_first.shape[0]:
        return rest_first
    # The reading after each rest when it belongs to the same vehicle, else the rest's last.
    has_after = rest_end < n
    has_after[has_after] = ~vehicle_start[rest_end[has_after]]
    horizon = np.where(has_after, rest_end, rest_end - 1)
    deadline = ts[rest_first] + p.trip_end_stop_s
    qualifies = ts[horizon] >= deadline
    lo, hi, due = rest_first[qualifies] + 1, horizon[qualifies], deadline[qualifies]
    searching = lo < hi
    while searching.any():  # invariant: ts[hi] >= due, and the answer is in [lo, hi]
        mid = (lo + hi) // 2
        reached = ts[np.minimum(mid, n - 1)] >= due
        hi = np.where(searching & reached, mid, hi)
        lo = np.where(searching & ~reached, mid + 1, lo)
        searching = lo < hi
    return lo


def segment_harsh(block: Block, trip_breaks: IntArray, finish: bool, p: Prepared) -> HarshSpans:
    """Events as runs beyond the exit threshold that reach the entry threshold (hysteresis).

    A run is cut where the tracker flushes: a restart, a trip ended before a reading, and the
    end of a vehicle's data (reported there only with ``finish``).
    """
    ts, speed_mps, accel_mps2, fresh = block.ts, block.speed_mps, block.accel_mps2, block.fresh
    n = ts.shape[0]
    cuts = np.union1d(block.restarts, trip_breaks[trip_breaks < n])
    none = (np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp))
    # Most fleets' data never reaches a threshold: one reduction (NaN ignored) says so.
    highest = np.fmax.reduce(accel_mps2) if n else np.nan
    lowest = np.fmin.reduce(accel_mps2) if n else np.nan
    found = [
        _harsh_runs(
            accel_mps2 >= p.harsh_exit_accel_mps2, accel_mps2 >= p.harsh_enter_accel_mps2, cuts
        )
        if highest >= p.harsh_enter_accel_mps2
        else none,
        _harsh_runs(
            accel_mps2 <= p.harsh_exit_brake_mps2, accel_mps2 <= p.harsh_enter_brake_mps2, cuts
        )
        if lowest <= p.harsh_enter_brake_mps2
        else none,
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
    peak = _segment_peaks(accel_mps2, first, last, accelerating)
    return HarshSpans(accelerating, first, last, ts[origin], speed_mps[origin], peak)


def _segment_peaks(
    accel_mps2: FloatArray, first: IntArray, last: IntArray, accelerating: BoolArray
) -> FloatArray:
    """Per event, the highest (accelerating) or lowest (braking) value in [first, last].

    One ``reduceat`` per direction over the bounds ``first, last + 1`` interleaved: the
    even results are the events, the odd ones the stretches between them (dropped). No NaN
    can be inside an event: every reading of one is beyond the exit threshold.
    """
    peak = np.empty(first.shape[0])
    if not first.shape[0]:
        return peak
    padded = np.append(accel_mps2, 0.0)  # so that an event's ``last + 1`` may be the end
    for reduce, chosen in ((np.maximum, accelerating), (np.minimum, ~accelerating)):
        if not chosen.any():
            continue
        bounds = np.empty(2 * int(np.count_nonzero(chosen)), dtype=np.intp)
        bounds[0::2] = first[chosen]
        bounds[1::2] = last[chosen] + 1
        peak[chosen] = reduce.reduceat(padded, bounds)[0::2]
    return peak


def _harsh_runs(
    beyond_exit: BoolArray, beyond_entry: BoolArray, cuts: IntArray
) -> tuple[IntArray, IntArray]:
    """(first entry reading, last reading) of each run of ``beyond_exit`` reaching the entry.

    Runs are cut before each index in ``cuts`` (sorted, unique).
    """
    n = beyond_exit.shape[0]
    split = cuts[(cuts > 0) & beyond_exit[cuts]]
    split = split[beyond_exit[split - 1]]  # a run going on across a cut: two runs
    run_first = np.union1d(_rising(beyond_exit), split)
    run_last = np.union1d(_falling(beyond_exit), split - 1)
    entries = np.flatnonzero(beyond_entry)
    k = np.searchsorted(entries, run_first)
    entry = np.append(entries, n)[k]
    has_entry = entry <= run_last
    return entry[has_entry].astype(np.intp), run_last[has_entry].astype(np.intp)


def _is_vehicle_end(index: IntArray, vehicle_start: BoolArray) -> BoolArray:
    n = vehicle_start.shape[0]
    following = index + 1
    at_end = following >= n
    at_end[~at_end] = vehicle_start[following[~at_end]]
    return at_end


def trapezoid_increments(plan: Plan, p: Prepared) -> tuple[FloatArray, BoolArray]:
    """Per reading: the trapezoid over the interval before it (0 after a restart), and whether
    that interval is a bridged gap. The stream's ``0.5 * (last + speed) * dt``.

    Written over ``plan.dt_s`` (nothing needs Δt after this), which is left empty: one
    reading-sized array less at the batch's peak.
    """
    speed_mps, dt_s = plan.speed_mps, plan.dt_s
    plan.dt_s = np.empty(0)
    with np.errstate(invalid="ignore"):
        bridged = dt_s > p.min_gap_s
        half_sum = np.add(speed_mps[:-1], speed_mps[1:])
        half_sum *= 0.5
        increment = dt_s
        increment[1:] *= half_sum
    del half_sum
    increment[plan.restarts] = 0.0
    bridged[plan.restarts] = False
    return increment, bridged


def trip_distances(
    spans: TripSpans, increment: FloatArray, distance: FloatArray, vehicle_start: BoolArray
) -> FloatArray:
    """Per reading, the open trip's distance (NaN between trips): Neumaier sums restarted at
    each trip's first reading, whose own interval is not in the trip.

    A trip that opens at its vehicle's first reading sums the odometer's own terms from the
    same zero (the first increment is 0 there), so it takes the odometer's numbers as they are.
    """
    if not spans.start.shape[0]:
        return np.full(increment.shape[0], np.nan)
    trip_distance = distance.copy()
    own = ~vehicle_start[spans.start]
    if own.any():
        compensated_ranges(
            increment, spans.start[own], spans.end[own], trip_distance, skip_first=True
        )
    trip_distance[spans.of_reading < 0] = np.nan
    return trip_distance


def trip_bridged_distances(
    spans: TripSpans, increment: FloatArray, bridged: BoolArray
) -> FloatArray:
    """Per trip, the Neumaier sum of its bridged intervals (adding zeros changes nothing in a
    Neumaier sum, so summing the bridged terms alone gives the stream's bits)."""
    totals = np.zeros(spans.start.shape[0])
    at = np.flatnonzero(bridged)
    if not at.shape[0] or not totals.shape[0]:
        return totals
    trip = spans.of_reading[at]
    keep = (trip >= 0) & (at != spans.start[np.maximum(trip, 0)])
    at, trip = at[keep], trip[keep]
    if not at.shape[0]:
        return totals
    firsts = np.flatnonzero(np.diff(trip, prepend=-1))
    sums = segmented_compensated_cumsum(increment[at], firsts)
    lasts = np.append(firsts[1:], at.shape[0]) - 1
    totals[trip[firsts]] = sums[lasts]
    return totals
