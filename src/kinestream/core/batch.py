"""The tracker's computation over whole numpy arrays: a fleet's readings at once, offline.

``process_batch(vehicle_ids, ts, speed_mps, params)`` gives what feeding each reading to
``Fleet.update`` in arrival order and then calling ``Fleet.finish`` per vehicle gives (the
property tests in ``tests/core/test_batch_properties.py`` hold it to 1e-9; in practice the
numbers are bit-identical: same operations in the same order, Neumaier sums included).

How: validation is one vectorised comparison. With reorder bound 0 a reading commits when it
is later than every reading committed before it (the running maximum of the vehicle's
candidate times, vectorised); one that does not is a duplicate if its time is among the last
``duplicate_memory`` commits, else late. The physics step check depends on the estimator's
prediction, so it runs as a fixpoint: run the estimator over the committed readings, drop the
first violation of each vehicle, rerun those vehicles (rarely more than once on real data).
Distance, trips and harsh events are then vectorised segmentations (``batch_segments.py``),
and the Neumaier sums are bit-identical to the stream's (``integrator.compensated_cumsum``).
A vehicle whose readings need reordering within a bound B > 0, or that keeps violating the
step check, goes through the streaming ``Tracker`` itself: exact by construction, and rare.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kinestream.core import batch_segments as seg
from kinestream.core.estimators import estimate_batch_for
from kinestream.core.integrator import segmented_compensated_cumsum
from kinestream.core.params import TrackerParams
from kinestream.core.prepared import Prepared, prepare
from kinestream.core.records import (
    Duplicate,
    HarshEvent,
    Kinematics,
    Reading,
    Rejection,
    TripSummary,
)
from kinestream.core.tracker import BRIDGED_GAP_FLAG, Tracker
from kinestream.core.units import STANDARD_GRAVITY_MPS2
from kinestream.core.validation import (
    CLAMPED_FLAG,
    check_reading,
    late_rejection,
    step_bound_mps,
    step_rejection,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

MAX_STEP_ITERATIONS = 8  # beyond this a vehicle's step rejections are left to the stream


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
            acceleration_mps2=_optional(self.acceleration_mps2[row]),
            acceleration_sigma_mps2=_optional(self.acceleration_sigma_mps2[row]),
            jerk_mps3=_optional(self.jerk_mps3[row]),
            distance_m=float(self.distance_m[row]),
            trip_id=self.trip_ids[trip] if trip >= 0 else None,
            trip_distance_m=_optional(self.trip_distance_m[row]),
            flags=flags,
        )


def _take(values: np.ndarray, positions: IntArray) -> np.ndarray:
    """``values[positions]`` for sorted unique positions; no copy when they are all of them."""
    return values if positions.shape[0] == values.shape[0] else values[positions]


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def process_batch(
    vehicle_ids: str | Sequence[str] | npt.NDArray[np.str_],
    ts: npt.ArrayLike,
    speed_mps: npt.ArrayLike,
    params: TrackerParams | None = None,
    *,
    flags: Sequence[tuple[str, ...]] | None = None,
    finish: bool = True,
) -> BatchResult:
    """Process readings given in arrival order; ``vehicle_ids`` is one id per reading (or one
    string for all). ``finish`` ends every vehicle's input as ``Fleet.finish`` does."""
    ts = np.asarray(ts, dtype=np.float64)
    codes, names = factorize(vehicle_ids, ts.shape[0])
    return process_batch_codes(codes, names, ts, speed_mps, params, flags=flags, finish=finish)


def factorize(
    vehicle_ids: str | Sequence[str] | npt.NDArray[np.str_], n: int
) -> tuple[IntArray, list[str]]:
    """Integer codes in order of first appearance, and the distinct ids."""
    if isinstance(vehicle_ids, str):
        return np.zeros(n, dtype=np.intp), [vehicle_ids]
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(v, len(index)) for v in vehicle_ids), dtype=np.intp, count=n
    )
    return codes, [str(name) for name in index]


def process_batch_codes(
    codes: npt.ArrayLike,
    names: Sequence[str],
    ts: npt.ArrayLike,
    speed_mps: npt.ArrayLike,
    params: TrackerParams | None = None,
    *,
    flags: Sequence[tuple[str, ...]] | None = None,
    finish: bool = True,
) -> BatchResult:
    """``process_batch`` with vehicles already as integer codes into ``names``."""
    job = _Job(
        prepare(params if params is not None else TrackerParams()),
        np.asarray(codes, dtype=np.intp),
        list(names),
        np.asarray(ts, dtype=np.float64),
        np.asarray(speed_mps, dtype=np.float64),
        flags,
        finish,
    )
    return job.run()


@dataclass(slots=True)
class _Plan:
    """Candidate committed readings with their intervals, estimates and step violations."""

    pos: IntArray  # positions in the grouped input
    ts: FloatArray
    speed_mps: FloatArray  # clamped
    vehicle_start: BoolArray
    dt_s: FloatArray  # NaN at a vehicle's first reading
    continuing: BoolArray
    acceleration_mps2: FloatArray
    acceleration_sigma_mps2: FloatArray
    jerk_mps3: FloatArray
    predicted_mps: FloatArray
    predicted_sigma_mps: FloatArray
    violation: BoolArray


@dataclass(slots=True)
class _Part:
    """Rows and records of some vehicles, before they are put in vehicle order."""

    columns: dict[str, np.ndarray]
    trip_ids: list[str]
    trip_vehicle: list[int]
    trips: list[TripSummary]
    events: list[HarshEvent]


_FLOAT_COLUMNS = (
    "ts",
    "speed_mps",
    "acceleration_mps2",
    "acceleration_sigma_mps2",
    "jerk_mps3",
    "distance_m",
    "trip_distance_m",
)


class _Job:
    """One ``process_batch`` call: the steps named in the module docstring, in order."""

    def __init__(  # noqa: PLR0917
        self,
        p: Prepared,
        codes: IntArray,
        names: list[str],
        ts: FloatArray,
        speed_mps: FloatArray,
        flags: Sequence[tuple[str, ...]] | None,
        finish: bool,
    ) -> None:
        self.p = p
        self.params = p.params
        self.names = names
        self.flags = flags
        self.finish = finish
        self.estimate = estimate_batch_for(p.params.estimator)
        self.readings = np.bincount(codes, minlength=len(names)).astype(np.int64)
        grouped = codes.shape[0] < 2 or bool(np.all(codes[1:] >= codes[:-1]))
        self.order = np.arange(codes.shape[0]) if grouped else np.argsort(codes, kind="stable")
        self.codes = codes[self.order]
        self.ts = ts[self.order]
        self.raw_speed = np.asarray(speed_mps, dtype=np.float64)[self.order]
        self.to_stream = np.zeros(len(names), dtype=bool)
        self.disordered = np.zeros(len(names), dtype=bool)
        self.final_candidates = np.empty(0, dtype=np.intp)
        self.step_rejections: dict[int, list[tuple[int, Rejection]]] = {}
        self.stream_records: dict[int, list[object]] = {}

    # -- steps ---------------------------------------------------------------------------

    def run(self) -> BatchResult:
        candidates = self._candidates()
        plan = self._step_fixpoint(candidates)
        parts = [self._vectorised_part(plan)]
        parts.extend(self._stream_part(int(c)) for c in np.flatnonzero(self.to_stream))
        return self._assemble(parts)

    def _candidates(self) -> IntArray:
        """Valid readings of vehicles that arrive in order (others go to the stream)."""
        p = self.p
        ts, speed = self.ts, self.raw_speed
        self.valid = valid = (
            (p.min_ts <= ts)
            & (ts < p.max_ts)
            & (p.min_speed_mps <= speed)
            & (speed <= p.max_speed_mps)
        )
        positions = np.flatnonzero(valid)
        codes, valid_ts = _take(self.codes, positions), _take(ts, positions)
        same_vehicle = codes[1:] == codes[:-1]
        disorder = same_vehicle & ~(valid_ts[1:] > valid_ts[:-1])
        if p.reorder_bound_s > 0.0:  # reordering within the bound: the stream does it
            self.to_stream[codes[1:][disorder]] = True
        else:  # duplicates and late readings: the commit rule, vectorised (_commit_order)
            self.disordered[codes[1:][disorder]] = True
        if p.reorder_bound_s > 0.0 and not self.finish:
            held = self._still_held(codes, valid_ts, same_vehicle)
            return positions[~self.to_stream[codes] & ~held]
        if not self.to_stream.any():
            return positions
        return positions[~self.to_stream[codes]]

    def _still_held(self, codes: IntArray, ts: FloatArray, same_vehicle: BoolArray) -> BoolArray:
        """Without ``finish`` the reorder buffer still holds what is within B of the newest."""
        is_last = np.ones(codes.shape[0], dtype=bool)
        is_last[:-1] = ~same_vehicle
        newest = np.full(len(self.names), np.nan)
        newest[codes[is_last]] = ts[is_last]
        return ~(ts <= newest[codes] - self.p.reorder_bound_s)

    def _step_fixpoint(self, candidates: IntArray) -> _Plan:
        """Drop step violations one per vehicle per round, as the stream meets them."""
        self.final_candidates = candidates
        plan = self._committed_plan(candidates)
        if not plan.violation.any():
            return plan
        violating = np.unique(self.codes[plan.pos[plan.violation]])
        subset = candidates[np.isin(self.codes[candidates], violating)]
        removed: list[IntArray] = []
        for _ in range(MAX_STEP_ITERATIONS):
            sub_plan = self._committed_plan(subset)
            at = np.flatnonzero(sub_plan.violation)
            if not len(at):
                break
            _, first_of_vehicle = np.unique(self.codes[sub_plan.pos[at]], return_index=True)
            firsts = at[first_of_vehicle]
            for k in firsts:
                self._record_step_rejection(sub_plan, int(k))
            gone = sub_plan.pos[firsts]
            removed.append(gone)
            subset = subset[~np.isin(subset, gone)]
        else:
            sub_plan = self._committed_plan(subset)
            stubborn = np.unique(self.codes[sub_plan.pos[sub_plan.violation]])
            self.to_stream[stubborn] = True
            for code in stubborn:
                self.step_rejections.pop(int(code), None)
        keep = ~self.to_stream[self.codes[candidates]]
        if removed:
            keep &= ~np.isin(candidates, np.concatenate(removed))
        self.final_candidates = candidates[keep]
        return self._committed_plan(self.final_candidates)

    def _committed_plan(self, candidates: IntArray) -> _Plan:
        return self._plan(self._commit_order(candidates)[0])

    def _commit_order(self, candidates: IntArray) -> tuple[IntArray, IntArray, IntArray]:
        """Reorder bound 0: a reading commits when it is after every one committed before it.

        Only vehicles whose readings arrive out of order need the check; for them, the
        running maximum of candidate times is the commit point (a reading that does not
        commit is no later than it). Returns the committed positions and, for those that do
        not commit, their positions and the commit point each met.
        """
        none = np.empty(0, dtype=np.intp)
        if not self.disordered.any():
            return candidates, none, np.empty(0)
        codes = self.codes[candidates]
        if not self.disordered[codes].any():
            return candidates, none, np.empty(0)
        ts = self.ts[candidates]
        commits = np.ones(candidates.shape[0], dtype=bool)
        commit_point = np.full(candidates.shape[0], -np.inf)
        bounds = np.flatnonzero(np.diff(codes)) + 1
        for start, end in itertools.pairwise([0, *bounds.tolist(), codes.shape[0]]):
            if self.disordered[codes[start]]:
                running = np.maximum.accumulate(ts[start:end])
                commit_point[start + 1 : end] = running[:-1]
                commits[start:end] = ts[start:end] > commit_point[start:end]
        return candidates[commits], candidates[~commits], commit_point[~commits]

    def _order_verdicts(self) -> dict[int, list[tuple[int, Rejection | None]]]:
        """Per vehicle: (position, LATE rejection) or (position, None) for a duplicate."""
        committed, refused, commit_point = self._commit_order(self.final_candidates)
        verdicts: dict[int, list[tuple[int, Rejection | None]]] = {}
        if not len(refused):
            return verdicts
        # The last duplicate_memory commits before each refused reading (same vehicle: they
        # are contiguous just before it in grouped order) hold the duplicate ring's times.
        memory = self.params.duplicate_memory
        before = np.searchsorted(committed, refused)[:, np.newaxis] - np.arange(1, memory + 1)
        in_range = before >= 0
        ring = committed[np.where(in_range, before, 0)]
        codes = self.codes[refused]
        in_ring = in_range & (self.codes[ring] == codes[:, np.newaxis])
        duplicate = np.any(in_ring & (self.ts[ring] == self.ts[refused][:, np.newaxis]), axis=1)
        for k, position in enumerate(refused.tolist()):
            code = int(codes[k])
            if duplicate[k]:
                verdicts.setdefault(code, []).append((position, None))
                continue
            reading = Reading(
                self.names[code], float(self.ts[position]), float(self.raw_speed[position])
            )
            rejection = late_rejection(reading, float(commit_point[k]), self.p.reorder_bound_s)
            verdicts.setdefault(code, []).append((position, rejection))
        return verdicts

    def _record_step_rejection(self, plan: _Plan, k: int) -> None:
        position = int(plan.pos[k])
        code = int(self.codes[position])
        reading = Reading(
            self.names[code], float(self.ts[position]), float(self.raw_speed[position])
        )
        dt_s = float(plan.dt_s[k])
        sigma = float(plan.predicted_sigma_mps[k])
        bound = step_bound_mps(dt_s, sigma, self.params)
        rejection = step_rejection(reading, float(plan.predicted_mps[k]), bound, dt_s)
        self.step_rejections.setdefault(code, []).append((position, rejection))

    def _plan(self, positions: IntArray) -> _Plan:
        p = self.p
        ts = _take(self.ts, positions)
        raw = _take(self.raw_speed, positions)
        speed = np.where(raw < 0.0, 0.0, raw)
        codes = _take(self.codes, positions)
        vehicle_start = np.ones(ts.shape[0], dtype=bool)
        vehicle_start[1:] = codes[1:] != codes[:-1]
        dt_s = np.empty_like(ts)
        dt_s[:1] = np.nan
        dt_s[1:] = ts[1:] - ts[:-1]
        dt_s[vehicle_start] = np.nan
        continuing = dt_s <= p.max_gap_s
        est = self.estimate(ts, speed, ~continuing, self.params.estimator)
        predicted = est.predicted_speed_mps
        with np.errstate(invalid="ignore"):
            bound = (
                p.max_accel_mps2 * dt_s
                + p.step_allowance_mps
                + p.step_sigmas * est.predicted_sigma_mps
            )
            violation = continuing & (np.abs(speed - predicted) > bound)
        return _Plan(
            positions,
            ts,
            speed,
            vehicle_start,
            dt_s,
            continuing,
            est.acceleration_mps2,
            est.acceleration_sigma_mps2,
            est.jerk_mps3,
            predicted,
            est.predicted_sigma_mps,
            violation,
        )

    def _vectorised_part(self, plan: _Plan) -> _Part:
        p = self.p
        ts, speed, fresh = plan.ts, plan.speed_mps, ~plan.continuing
        with np.errstate(invalid="ignore"):
            previous = np.empty_like(speed)
            previous[:1] = np.nan
            previous[1:] = speed[:-1]
            increment = np.where(plan.continuing, 0.5 * (previous + speed) * plan.dt_s, 0.0)
            bridged = plan.continuing & (plan.dt_s > p.min_gap_s)
        distance = segmented_compensated_cumsum(increment, np.flatnonzero(plan.vehicle_start))
        block = seg.Block(ts, speed, plan.acceleration_mps2, fresh, bridged, plan.vehicle_start)
        spans = seg.segment_trips(block, self.finish, p)
        closed = np.asarray([r is not None for r in spans.end_reason], dtype=bool)
        harsh = seg.segment_harsh(block, spans.end[closed], self.finish, p)
        trip_distance, trip_bridged = self._trip_distances(spans, increment, bridged)
        codes = _take(self.codes, plan.pos)
        trip_ids = [
            f"{self.names[codes[s]]}-{round(float(ts[s]) * 1000.0)}" for s in spans.start.tolist()
        ]
        events = self._events(harsh, codes, ts, spans.of_reading, trip_ids)
        trips = self._trip_summaries(
            plan, spans, trip_ids, trip_distance, trip_bridged, harsh, block
        )
        columns = {
            "index": _take(self.order, plan.pos),
            "vehicle": codes,
            "ts": ts,
            "speed_mps": speed,
            "acceleration_mps2": plan.acceleration_mps2,
            "acceleration_sigma_mps2": plan.acceleration_sigma_mps2,
            "jerk_mps3": plan.jerk_mps3,
            "distance_m": distance,
            "trip_distance_m": trip_distance,
            "trip": spans.of_reading,
            "clamped": _take(self.raw_speed, plan.pos) < 0.0,
            "bridged_gap": bridged,
        }
        trip_vehicle = codes[spans.start].tolist()
        return _Part(columns, trip_ids, trip_vehicle, trips, events)

    @staticmethod
    def _trip_distances(
        spans: seg.TripSpans, increment: FloatArray, bridged: BoolArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-reading trip distance and bridged distance: Neumaier sums restarted per trip."""
        n = increment.shape[0]
        trip_distance = np.full(n, np.nan)
        trip_bridged = np.full(n, np.nan)
        inside = np.flatnonzero(spans.of_reading >= 0)
        if not len(inside):
            return trip_distance, trip_bridged
        starts = np.searchsorted(inside, spans.start)
        x = increment[inside]
        x[starts] = 0.0  # a trip's first reading opens it: its interval is not in the trip
        trip_distance[inside] = segmented_compensated_cumsum(x, starts)
        in_bridge = bridged[inside]
        if in_bridge.any():
            x_bridged = np.where(in_bridge, x, 0.0)
            trip_bridged[inside] = segmented_compensated_cumsum(x_bridged, starts)
        else:  # a Neumaier sum of zeros is exactly zero
            trip_bridged[inside] = 0.0
        return trip_distance, trip_bridged

    def _events(
        self,
        harsh: seg.HarshSpans,
        codes: IntArray,
        ts: FloatArray,
        trip_of: IntArray,
        trip_ids: list[str],
    ) -> list[HarshEvent]:
        events = []
        for k in range(len(harsh.first)):
            last = int(harsh.last[k])
            trip = int(trip_of[last])
            events.append(
                HarshEvent(
                    vehicle_id=self.names[int(codes[last])],
                    type="harsh_acceleration" if harsh.accelerating[k] else "harsh_braking",
                    start_ts=float(harsh.start_ts[k]),
                    end_ts=float(ts[last]),
                    peak_g=float(harsh.peak_mps2[k]) / STANDARD_GRAVITY_MPS2,
                    speed_at_start_mps=float(harsh.start_speed_mps[k]),
                    trip_id=trip_ids[trip] if trip >= 0 else None,
                )
            )
        return events

    def _trip_summaries(  # noqa: PLR0917
        self,
        plan: _Plan,
        spans: seg.TripSpans,
        trip_ids: list[str],
        trip_distance: FloatArray,
        trip_bridged: FloatArray,
        harsh: seg.HarshSpans,
        block: seg.Block,
    ) -> list[TripSummary]:
        n_trips = len(trip_ids)
        if not n_trips:
            return []
        # reduceat over [start, end) pairs: the even slots are the trips, the odd ones between.
        bounds = np.column_stack([spans.start, spans.end]).ravel()
        bounds = bounds[:-1] if bounds[-1] == plan.ts.shape[0] else bounds
        max_speed = np.maximum.reduceat(plan.speed_mps, bounds)[::2]
        max_accel = np.fmax.reduceat(plan.acceleration_mps2, bounds)[::2]
        min_accel = np.fmin.reduceat(plan.acceleration_mps2, bounds)[::2]
        stops = self._resumed_rests(spans, block, n_trips)
        event_trip = spans.of_reading[harsh.last]
        counted = event_trip >= 0
        accelerations = np.bincount(event_trip[counted & harsh.accelerating], minlength=n_trips)
        brakings = np.bincount(event_trip[counted & ~harsh.accelerating], minlength=n_trips)
        summaries = []
        for k in range(n_trips):
            reason = spans.end_reason[k]
            if reason is None:
                continue
            last = int(spans.end[k]) - 1
            start_ts = float(plan.ts[spans.start[k]])
            end_ts = float(spans.end_ts[k])
            summaries.append(
                TripSummary(
                    vehicle_id=self.names[int(self.codes[plan.pos[last]])],
                    trip_id=trip_ids[k],
                    start_ts=start_ts,
                    end_ts=end_ts,
                    duration_s=end_ts - start_ts,
                    distance_m=float(trip_distance[last]),
                    bridged_distance_m=float(trip_bridged[last]),
                    max_speed_mps=float(max_speed[k]),
                    max_acceleration_mps2=_optional(max_accel[k]),
                    max_deceleration_mps2=_optional(min_accel[k]),
                    stops=int(stops[k]),
                    harsh_accelerations=int(accelerations[k]),
                    harsh_brakings=int(brakings[k]),
                    end_reason=reason,
                )
            )
        return summaries

    def _resumed_rests(self, spans: seg.TripSpans, block: seg.Block, n_trips: int) -> IntArray:
        """Per trip, readings where it moved again after a rest (stopped → moving)."""
        slow = block.speed_mps < self.p.trip_stop_speed_mps
        trip = spans.of_reading
        resumed = np.zeros(slow.shape[0], dtype=bool)
        resumed[1:] = ~slow[1:] & slow[:-1] & (trip[1:] >= 0) & (trip[1:] == trip[:-1])
        return np.bincount(trip[resumed], minlength=n_trips)

    # -- the streaming fallback ----------------------------------------------------------

    def _stream_part(self, code: int) -> _Part:
        """Run one vehicle through the streaming Tracker (out of order, duplicates...)."""
        name = self.names[code]
        positions = np.flatnonzero(self.codes == code)
        tracker = Tracker(name, self.params)
        rows: list[tuple[int, Kinematics]] = []
        first_index_of_ts: dict[float, int] = {}
        records: list[object] = []
        immediate = self.p.reorder_bound_s <= 0.0
        for position in positions.tolist():
            index = int(self.order[position])
            flags = self.flags[index] if self.flags is not None else ()
            reading = Reading(
                name, float(self.ts[position]), float(self.raw_speed[position]), flags
            )
            first_index_of_ts.setdefault(reading.ts, index)
            for record in tracker.update(reading):
                if isinstance(record, Kinematics):
                    rows.append((index if immediate else first_index_of_ts[record.ts], record))
                else:
                    records.append(record)
        if self.finish:
            for record in tracker.finish():
                if isinstance(record, Kinematics):
                    rows.append((first_index_of_ts[record.ts], record))
                else:
                    records.append(record)
        self.stream_records[code] = records
        return self._part_from_records(code, rows, records)

    def _part_from_records(
        self, code: int, rows: list[tuple[int, Kinematics]], records: list[object]
    ) -> _Part:
        trip_ids: list[str] = []
        number: dict[str, int] = {}
        for _, k in rows:
            if k.trip_id is not None and k.trip_id not in number:
                number[k.trip_id] = len(trip_ids)
                trip_ids.append(k.trip_id)
        columns: dict[str, np.ndarray] = {
            "index": np.asarray([i for i, _ in rows], dtype=np.intp),
            "vehicle": np.full(len(rows), code, dtype=np.intp),
            "trip": np.asarray(
                [-1 if k.trip_id is None else number[k.trip_id] for _, k in rows], dtype=np.intp
            ),
            "clamped": np.asarray([CLAMPED_FLAG in k.flags for _, k in rows], dtype=bool),
            "bridged_gap": np.asarray([BRIDGED_GAP_FLAG in k.flags for _, k in rows], dtype=bool),
        }
        for name in _FLOAT_COLUMNS:
            values = [getattr(k, name) for _, k in rows]
            columns[name] = np.asarray(
                [np.nan if v is None else v for v in values], dtype=np.float64
            )
        trips = [r for r in records if isinstance(r, TripSummary)]
        events = [r for r in records if isinstance(r, HarshEvent)]
        return _Part(columns, trip_ids, [code] * len(trip_ids), trips, events)

    # -- assembly ------------------------------------------------------------------------

    def _assemble(self, parts: list[_Part]) -> BatchResult:
        offsets = np.cumsum([0] + [len(part.trip_ids) for part in parts])
        columns = {}
        for name in parts[0].columns:
            chunks = [part.columns[name] for part in parts]
            if name == "trip":
                chunks = [
                    np.where(c >= 0, c + off, -1) for c, off in zip(chunks, offsets, strict=False)
                ]
            columns[name] = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        trip_ids = [t for part in parts for t in part.trip_ids]
        trip_vehicle = np.asarray([v for part in parts for v in part.trip_vehicle], dtype=np.intp)
        trips = [t for part in parts for t in part.trips]
        events = [e for part in parts for e in part.events]
        if len(parts) > 1:  # put the streamed vehicles' rows and records in vehicle order
            order = np.argsort(columns["vehicle"], kind="stable")
            columns = {name: column[order] for name, column in columns.items()}
            trip_order = np.argsort(trip_vehicle, kind="stable")
            new_number = np.empty(len(trip_ids), dtype=np.intp)
            new_number[trip_order] = np.arange(len(trip_ids))
            trip = columns["trip"]
            if trip_ids:  # with no trips at all every row is -1 and there is nothing to renumber
                columns["trip"] = np.where(trip >= 0, new_number[np.maximum(trip, 0)], -1)
            trip_ids = [trip_ids[k] for k in trip_order]
            vehicle_rank = {name: k for k, name in enumerate(self.names)}
            trips.sort(key=lambda t: vehicle_rank[t.vehicle_id])
            events.sort(key=lambda e: vehicle_rank[e.vehicle_id])
        rejections, rejected, duplicates = self._verdicts()
        return BatchResult(
            vehicle_ids=self.names,
            trip_ids=trip_ids,
            trips=trips,
            events=events,
            rejections=rejections,
            readings=self.readings,
            rejected=rejected,
            duplicates=duplicates,
            input_flags=self.flags,
            **columns,
        )

    def _verdicts(self) -> tuple[list[Rejection], IntArray, IntArray]:
        """Rejections grouped by vehicle in arrival order; counts per vehicle."""
        by_vehicle: dict[int, list[tuple[int, Rejection]]] = {
            code: list(items) for code, items in self.step_rejections.items()
        }
        for position in np.flatnonzero(~self.valid & ~self.to_stream[self.codes]).tolist():
            code = int(self.codes[position])
            reading = Reading(
                self.names[code], float(self.ts[position]), float(self.raw_speed[position])
            )
            rejection = check_reading(reading, self.params)
            assert rejection is not None
            by_vehicle.setdefault(code, []).append((position, rejection))
        duplicates = np.zeros(len(self.names), dtype=np.int64)
        for code, items in self._order_verdicts().items():
            duplicates[code] = sum(r is None for _, r in items)
            by_vehicle.setdefault(code, []).extend((k, r) for k, r in items if r is not None)
        for code, records in self.stream_records.items():
            duplicates[code] = sum(isinstance(r, Duplicate) for r in records)
            by_vehicle[code] = [(k, r) for k, r in enumerate(records) if isinstance(r, Rejection)]
        rejections: list[Rejection] = []
        rejected = np.zeros(len(self.names), dtype=np.int64)
        for code in sorted(by_vehicle):
            items = sorted(by_vehicle[code], key=lambda item: item[0])
            rejected[code] = len(items)
            rejections.extend(r for _, r in items)
        return rejections, rejected, duplicates
