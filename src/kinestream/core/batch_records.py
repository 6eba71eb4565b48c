"""Records of the batch path: columns, trips and events, vectorised or from the stream."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinestream.core import batch_segments as seg
from kinestream.core.arrays import FloatArray, IntArray
from kinestream.core.batch_plan import BatchInput, Plan, take
from kinestream.core.harsh import HARSH_ACCELERATION, HARSH_BRAKING
from kinestream.core.integrator import segmented_compensated_cumsum
from kinestream.core.records import HarshEvent, Kinematics, Reading, TripSummary
from kinestream.core.tracker import BRIDGED_GAP_FLAG, Tracker
from kinestream.core.trips import trip_id_for
from kinestream.core.units import STANDARD_GRAVITY_MPS2
from kinestream.core.validation import CLAMPED_FLAG


@dataclass(slots=True)
class Part:
    """Rows and records of some vehicles, before they are put in vehicle order."""

    columns: dict[str, np.ndarray]
    trip_ids: list[str]
    trip_vehicle: list[int]
    trips: list[TripSummary]
    events: list[HarshEvent]


FLOAT_COLUMNS = (
    "ts",
    "speed_mps",
    "acceleration_mps2",
    "acceleration_sigma_mps2",
    "jerk_mps3",
    "distance_m",
    "trip_distance_m",
)


def vectorised_part(inp: BatchInput, plan: Plan) -> Part:
    """Rows, trips and events of the vectorised vehicles from their committed plan."""
    p = inp.p
    ts, speed = plan.ts, plan.speed_mps
    increment, bridged = seg.trapezoid_increments(plan, p)
    distance = segmented_compensated_cumsum(increment, plan.starts)
    block = seg.Block(
        ts,
        speed,
        plan.acceleration_mps2,
        ~plan.continuing,
        bridged,
        plan.vehicle_start,
        plan.starts,
        plan.restarts,
    )
    spans = seg.segment_trips(block, inp.finish, p)
    closed = np.asarray([r is not None for r in spans.end_reason], dtype=bool)
    harsh = seg.segment_harsh(block, spans.end[closed], inp.finish, p)
    trip_distance = seg.trip_distances(spans, increment, distance, plan.vehicle_start)
    trip_bridged = seg.trip_bridged_distances(spans, increment, bridged)
    codes = take(inp.codes, plan.pos)
    trip_ids = list(
        map(
            trip_id_for,
            np.array(inp.names, dtype=object)[codes[spans.start]].tolist(),
            ts[spans.start].tolist(),
        )
    )
    events = _events(inp, harsh, codes, ts, spans.of_reading, trip_ids)
    trips = _trip_summaries(inp, plan, spans, trip_ids, trip_distance, trip_bridged, harsh)
    columns = {
        "index": take(inp.order, plan.pos),
        "vehicle": codes,
        "ts": ts,
        "speed_mps": speed,
        "acceleration_mps2": plan.acceleration_mps2,
        "acceleration_sigma_mps2": plan.acceleration_sigma_mps2,
        "jerk_mps3": plan.jerk_mps3,
        "distance_m": distance,
        "trip_distance_m": trip_distance,
        "trip": spans.of_reading,
        "clamped": plan.clamped,
        "bridged_gap": bridged,
    }
    trip_vehicle = codes[spans.start].tolist()
    return Part(columns, trip_ids, trip_vehicle, trips, events)


def _events(  # noqa: PLR0917
    inp: BatchInput,
    harsh: seg.HarshSpans,
    codes: IntArray,
    ts: FloatArray,
    trip_of: IntArray,
    trip_ids: list[str],
) -> list[HarshEvent]:
    """The events as records, built from whole columns (a fleet can have tens of thousands)."""
    last = harsh.last
    names = np.array(inp.names, dtype=object)
    trip_names = np.array([*trip_ids, None], dtype=object)  # trip -1: None
    types = np.array([HARSH_BRAKING, HARSH_ACCELERATION], dtype=object)
    return list(
        map(
            _HarshEventSlots,
            names[codes[last]].tolist(),
            types[harsh.accelerating.view(np.uint8)].tolist(),
            harsh.start_ts.tolist(),
            ts[last].tolist(),
            (harsh.peak_mps2 / STANDARD_GRAVITY_MPS2).tolist(),
            harsh.start_speed_mps.tolist(),
            trip_names[trip_of[last]].tolist(),
        )
    )


class _HarshEventSlots:
    """``HarshEvent``'s slots filled by plain stores, then re-classed to ``HarshEvent``.

    The same device as ``records.make_kinematics``: a frozen dataclass's ``__init__`` sets
    each field through ``object.__setattr__``, three times the cost of plain stores. The
    object is a true, frozen ``HarshEvent`` before anyone sees it (tests compare them).
    """

    __slots__ = HarshEvent.__slots__

    def __init__(  # noqa: PLR0917 (mirrors the dataclass's positional constructor)
        self,
        vehicle_id: str,
        type: str,
        start_ts: float,
        end_ts: float,
        peak_g: float,
        speed_at_start_mps: float,
        trip_id: str | None,
    ) -> None:
        self.vehicle_id = vehicle_id
        self.type = type
        self.start_ts = start_ts
        self.end_ts = end_ts
        self.peak_g = peak_g
        self.speed_at_start_mps = speed_at_start_mps
        self.trip_id = trip_id
        self.__class__ = HarshEvent  # type: ignore[assignment]


def _trip_summaries(  # noqa: PLR0917
    inp: BatchInput,
    plan: Plan,
    spans: seg.TripSpans,
    trip_ids: list[str],
    trip_distance: FloatArray,
    trip_bridged: FloatArray,
    harsh: seg.HarshSpans,
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
    stops = spans.stops
    event_trip = spans.of_reading[harsh.last]
    counted = event_trip >= 0
    accelerations = np.bincount(event_trip[counted & harsh.accelerating], minlength=n_trips)
    brakings = np.bincount(event_trip[counted & ~harsh.accelerating], minlength=n_trips)
    closed = np.flatnonzero([reason is not None for reason in spans.end_reason])
    if not closed.shape[0]:
        return []
    last = spans.end[closed] - 1
    start_ts = plan.ts[spans.start[closed]]
    end_ts = spans.end_ts[closed]
    names = np.array(inp.names, dtype=object)
    return list(
        map(
            _TripSummarySlots,
            names[take(inp.codes, plan.pos)[last]].tolist(),
            [trip_ids[k] for k in closed.tolist()],
            start_ts.tolist(),
            end_ts.tolist(),
            (end_ts - start_ts).tolist(),
            trip_distance[last].tolist(),
            trip_bridged[closed].tolist(),
            max_speed[closed].tolist(),
            _optionals(max_accel[closed]),
            _optionals(min_accel[closed]),
            stops[closed].tolist(),
            accelerations[closed].tolist(),
            brakings[closed].tolist(),
            [spans.end_reason[k] for k in closed.tolist()],
        )
    )


def _optionals(values: FloatArray) -> list[float | None]:
    """``optional`` over a column: None where NaN."""
    return [None if math.isnan(x) else x for x in values.tolist()]


class _TripSummarySlots:
    """``TripSummary``'s slots filled by plain stores, then re-classed to ``TripSummary``
    (the device of ``_HarshEventSlots``: a true, frozen ``TripSummary`` before anyone sees it)."""

    __slots__ = TripSummary.__slots__

    def __init__(  # noqa: PLR0917 (mirrors the dataclass's positional constructor)
        self,
        vehicle_id: str,
        trip_id: str,
        start_ts: float,
        end_ts: float,
        duration_s: float,
        distance_m: float,
        bridged_distance_m: float,
        max_speed_mps: float,
        max_acceleration_mps2: float | None,
        max_deceleration_mps2: float | None,
        stops: int,
        harsh_accelerations: int,
        harsh_brakings: int,
        end_reason: str,
    ) -> None:
        self.vehicle_id = vehicle_id
        self.trip_id = trip_id
        self.start_ts = start_ts
        self.end_ts = end_ts
        self.duration_s = duration_s
        self.distance_m = distance_m
        self.bridged_distance_m = bridged_distance_m
        self.max_speed_mps = max_speed_mps
        self.max_acceleration_mps2 = max_acceleration_mps2
        self.max_deceleration_mps2 = max_deceleration_mps2
        self.stops = stops
        self.harsh_accelerations = harsh_accelerations
        self.harsh_brakings = harsh_brakings
        self.end_reason = end_reason
        self.__class__ = TripSummary  # type: ignore[assignment]


def stream_part(inp: BatchInput, code: int) -> tuple[Part, list[object]]:
    """Run one vehicle through the streaming Tracker (reordering within a bound, or step
    violations the fixpoint gave up on): the same records by construction."""
    name = inp.names[code]
    # Grouped by code: the vehicle's readings are one contiguous run, in arrival order.
    positions = np.arange(*np.searchsorted(inp.codes, [code, code + 1]))
    tracker = Tracker(name, inp.params)
    rows: list[tuple[int, Kinematics]] = []
    first_index_of_ts: dict[float, int] = {}
    records: list[object] = []
    immediate = inp.p.reorder_bound_s <= 0.0
    for position in positions.tolist():
        index = int(inp.order[position])
        flags = inp.flags[index] if inp.flags is not None else ()
        reading = Reading(name, float(inp.ts[position]), float(inp.raw_speed[position]), flags)
        first_index_of_ts.setdefault(reading.ts, index)
        for record in tracker.update(reading):
            if isinstance(record, Kinematics):
                rows.append((index if immediate else first_index_of_ts[record.ts], record))
            else:
                records.append(record)
    if inp.finish:
        for record in tracker.finish():
            if isinstance(record, Kinematics):
                rows.append((first_index_of_ts[record.ts], record))
            else:
                records.append(record)
    return part_from_records(code, rows, records), records


def part_from_records(code: int, rows: list[tuple[int, Kinematics]], records: list[object]) -> Part:
    """Columns from a streamed vehicle's Kinematics (with the input index of each)."""
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
    for name in FLOAT_COLUMNS:
        values = [getattr(k, name) for _, k in rows]
        columns[name] = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    trips = [r for r in records if isinstance(r, TripSummary)]
    events = [r for r in records if isinstance(r, HarshEvent)]
    return Part(columns, trip_ids, [code] * len(trip_ids), trips, events)
