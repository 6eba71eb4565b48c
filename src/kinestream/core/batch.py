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
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from kinestream.core.arrays import BoolArray, FloatArray, IntArray
from kinestream.core.batch_plan import BatchInput, Plan, group_by_vehicle, plan_for, take
from kinestream.core.batch_records import Part, stream_part, vectorised_part
from kinestream.core.batch_result import BatchResult
from kinestream.core.estimators import estimate_batch_for
from kinestream.core.params import TrackerParams
from kinestream.core.prepared import Prepared, prepare
from kinestream.core.records import (
    Duplicate,
    Reading,
    Rejection,
)
from kinestream.core.validation import (
    check_reading,
    late_rejection,
    step_bound_mps,
    step_rejection,
)

__all__ = ["BatchResult", "factorize", "process_batch", "process_batch_codes"]

MAX_STEP_ITERATIONS = 8  # beyond this a vehicle's step rejections are left to the stream


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


def _all_valid(ts: FloatArray, speed_mps: FloatArray, p: Prepared) -> bool:
    """Every reading passes validation (NaN fails: min and max propagate it)."""
    if not ts.shape[0]:
        return True
    return bool(
        ts.min() >= p.min_ts
        and ts.max() < p.max_ts
        and speed_mps.min() >= p.min_speed_mps
        and speed_mps.max() <= p.max_speed_mps
    )


def _first_positions(readings: IntArray) -> IntArray:
    """Grouped index of each present vehicle's first reading, from the counts per vehicle."""
    offsets = np.zeros(readings.shape[0], dtype=np.intp)
    np.cumsum(readings[:-1], out=offsets[1:])
    return offsets[readings > 0]


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
        speed_mps = np.asarray(speed_mps, dtype=np.float64)
        grouping = group_by_vehicle(codes, self.readings)
        if grouping is None:  # already grouped: the arrays as given, no copies
            self.order = np.arange(codes.shape[0])
            self.codes, self.ts, self.raw_speed = codes, ts, speed_mps
        else:
            self.order, self.codes = grouping
            self.ts, self.raw_speed = ts.take(self.order), speed_mps.take(self.order)
        self.to_stream = np.zeros(len(names), dtype=bool)
        self.disordered = np.zeros(len(names), dtype=bool)
        self.final_candidates: IntArray | None = np.empty(0, dtype=np.intp)
        self.valid: BoolArray | None = None  # None: every reading is valid
        self.step_rejections: dict[int, list[tuple[int, Rejection]]] = {}
        self.stream_records: dict[int, list[object]] = {}
        self.inp = BatchInput(
            p,
            p.params,
            names,
            self.order,
            self.codes,
            self.ts,
            self.raw_speed,
            flags,
            finish,
            self.estimate,
            _first_positions(self.readings),
        )

    # -- steps ---------------------------------------------------------------------------

    def run(self) -> BatchResult:
        candidates = self._candidates()
        plan = self._step_fixpoint(candidates)
        parts = [vectorised_part(self.inp, plan)]
        parts.extend(self._stream_part(int(c)) for c in np.flatnonzero(self.to_stream))
        return self._assemble(parts)

    def _stream_part(self, code: int) -> Part:
        part, self.stream_records[code] = stream_part(self.inp, code)
        return part

    def _candidates(self) -> IntArray | None:
        """Valid readings of vehicles that arrive in order (others go to the stream)."""
        p = self.p
        ts, speed = self.ts, self.raw_speed
        positions: IntArray | None
        if _all_valid(ts, speed, p):  # four reductions instead of four masks
            self.valid = None
            positions = None  # all of them
            codes, valid_ts = self.codes, ts
        else:
            self.valid = valid = (
                (p.min_ts <= ts)
                & (ts < p.max_ts)
                & (p.min_speed_mps <= speed)
                & (speed <= p.max_speed_mps)
            )
            positions = np.flatnonzero(valid)
            codes, valid_ts = take(self.codes, positions), take(ts, positions)
        # Readings no later than the one before them: few, and a vehicle's first does not count.
        later = np.flatnonzero(~(valid_ts[1:] > valid_ts[:-1]))
        later += 1
        disordered_codes = codes[later][codes[later] == codes[later - 1]]
        if p.reorder_bound_s > 0.0:  # reordering within the bound: the stream does it
            self.to_stream[disordered_codes] = True
        else:  # duplicates and late readings: the commit rule, vectorised (_commit_order)
            self.disordered[disordered_codes] = True
        if p.reorder_bound_s > 0.0 and not self.finish:
            held = self._still_held(codes, valid_ts, codes[1:] == codes[:-1])
            return self._positions(positions)[~self.to_stream[codes] & ~held]
        if not self.to_stream.any():
            return positions
        return self._positions(positions)[~self.to_stream[codes]]

    def _positions(self, candidates: IntArray | None) -> IntArray:
        """Candidates as positions (None stands for all, to spare an index array)."""
        return np.arange(self.ts.shape[0]) if candidates is None else candidates

    def _still_held(self, codes: IntArray, ts: FloatArray, same_vehicle: BoolArray) -> BoolArray:
        """Without ``finish`` the reorder buffer still holds what is within B of the newest."""
        is_last = np.ones(codes.shape[0], dtype=bool)
        is_last[:-1] = ~same_vehicle
        newest = np.full(len(self.names), np.nan)
        newest[codes[is_last]] = ts[is_last]
        return ~(ts <= newest[codes] - self.p.reorder_bound_s)

    def _step_fixpoint(self, candidates: IntArray | None) -> Plan:
        """Drop step violations one per vehicle per round, as the stream meets them."""
        self.final_candidates = candidates
        plan = self._committed_plan(candidates)
        if not plan.violation.any():
            return plan
        candidates = self._positions(candidates)
        violating = np.unique(self.codes[self._positions(plan.pos)[plan.violation]])
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

    def _committed_plan(self, candidates: IntArray | None) -> Plan:
        return plan_for(self.inp, self._commit_order(candidates)[0])

    def _commit_order(
        self, candidates: IntArray | None
    ) -> tuple[IntArray | None, IntArray, IntArray]:
        """Reorder bound 0: a reading commits when it is after every one committed before it.

        Only vehicles whose readings arrive out of order need the check; for them, the
        running maximum of candidate times is the commit point (a reading that does not
        commit is no later than it). Returns the committed positions and, for those that do
        not commit, their positions and the commit point each met.
        """
        none = np.empty(0, dtype=np.intp)
        if not self.disordered.any():
            return candidates, none, np.empty(0)
        candidates = self._positions(candidates)
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

    def _record_step_rejection(self, plan: Plan, k: int) -> None:
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

    # -- the streaming fallback ----------------------------------------------------------

    # -- assembly ------------------------------------------------------------------------

    def _assemble(self, parts: list[Part]) -> BatchResult:
        offsets = np.cumsum([0] + [len(part.trip_ids) for part in parts])
        columns = {}
        for name in parts[0].columns:
            chunks = [part.columns[name] for part in parts]
            if name == "trip" and len(chunks) > 1:
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
        invalid = np.empty(0, dtype=np.intp)
        if self.valid is not None and not self.valid.all():
            invalid = np.flatnonzero(~self.valid & ~self.to_stream[self.codes])
        for position in invalid.tolist():
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
