"""One vehicle's tracker: readings in, records out, in the order they happened.

Per reading: stateless validation → ordering (duplicate, late, or held by the reorder buffer)
→ physics step check against the estimator's prediction → commit: trip/harsh deadlines that
passed before this reading, estimator, trapezoid distance, harsh events, the trip table, and
the ``Kinematics`` record. A rejected reading changes no state.

``tick(now_ts)`` applies what event time alone decides (release held readings, end trips,
flush harsh events), judged at ``now_ts - reorder_bound_s`` so a held reading is never
overtaken. ``update`` runs the same deadline checks at each reading's own time, so a stream
gives the same records whether or not (and how often) it is ticked.
"""

from __future__ import annotations

import bisect
import math
from operator import attrgetter

from kinestream.core import codec, harsh, layout, trips
from kinestream.core.estimators import AccelerationEstimator, make_estimator
from kinestream.core.integrator import compensated, neumaier_add
from kinestream.core.params import TrackerParams
from kinestream.core.prepared import Prepared, prepare
from kinestream.core.records import Duplicate, Kinematics, Reading, Record, Rejection
from kinestream.core.validation import (
    CLAMPED_FLAG,
    check_reading,
    late_rejection,
    step_rejection,
)

BRIDGED_GAP_FLAG = "bridged_gap"
_CLAMPED = (CLAMPED_FLAG,)
_BRIDGED = (BRIDGED_GAP_FLAG,)
_by_ts = attrgetter("ts")


class Tracker:
    """State for one vehicle, packed (see ``layout.py``); made by ``Fleet`` from shared params."""

    __slots__ = ("_estimator", "_held", "_p", "_slots", "_trip_id", "vehicle_id")

    def __init__(self, vehicle_id: str, params: TrackerParams) -> None:
        self.vehicle_id = vehicle_id
        self._p: Prepared = prepare(params)
        self._estimator: AccelerationEstimator = make_estimator(params.estimator)
        self._slots = layout.fresh_state(params.duplicate_memory)
        self._held: list[Reading] | None = None  # reorder buffer, sorted by ts (bound > 0)
        self._trip_id: str | None = None

    @property
    def params(self) -> TrackerParams:
        return self._p.params

    # -- input ---------------------------------------------------------------------------

    def update(self, reading: Reading) -> list[Record]:
        """Take one reading; returns what it produced (possibly nothing while held)."""
        rejection = check_reading(reading, self._p.params)
        if rejection is not None:
            return [rejection]
        out: list[Record] = []
        if self._p.reorder_bound_s > 0.0:
            self._hold(reading, out)
        else:
            self._admit(reading, out)
        return out

    def tick(self, now_ts: float) -> list[Record]:
        """Event time has reached ``now_ts``: release, end and flush what is due."""
        out: list[Record] = []
        horizon = now_ts - self._p.reorder_bound_s
        if self._held:
            self._release(horizon, out)
        self._expire(horizon, out)
        return out

    def finish(self) -> list[Record]:
        """End of input (offline): release everything held, close the event and the trip."""
        out: list[Record] = []
        if self._held:
            self._release(math.inf, out)
        self._flush_harsh(out)
        if trips.in_trip(self._slots):
            self._close_trip(trips.END_OF_DATA, out)
        return out

    def next_deadline(self) -> float | None:
        """Earliest ``now_ts`` at which ``tick`` would act, or None (nothing pending)."""
        slots = self._slots
        candidates = []
        if self._held:
            candidates.append(self._held[0].ts)
        trip_deadline = trips.deadline(slots, self._p)
        if trip_deadline is not None:
            candidates.append(trip_deadline)
        if harsh.active(slots):
            candidates.append(math.nextafter(slots[layout.LAST_TS] + self._p.max_gap_s, math.inf))
        if not candidates:
            return None
        return min(candidates) + self._p.reorder_bound_s

    # -- ordering ------------------------------------------------------------------------

    def _admit(self, reading: Reading, out: list[Record]) -> None:
        """Commit ``reading`` unless it is at or before the commit point."""
        last_ts = self._slots[layout.LAST_TS]
        if reading.ts <= last_ts:
            out.append(self._duplicate_or_late(reading, last_ts))
            return
        self._commit(reading, out)

    def _duplicate_or_late(self, reading: Reading, last_ts: float) -> Record:
        if reading.ts in self._slots[layout.DUP_RING :]:
            return Duplicate(self.vehicle_id, reading.ts)
        return late_rejection(reading, last_ts, self._p.reorder_bound_s)

    def _hold(self, reading: Reading, out: list[Record]) -> None:
        slots = self._slots
        ts = reading.ts
        if ts <= slots[layout.LAST_TS]:
            out.append(self._duplicate_or_late(reading, slots[layout.LAST_TS]))
            return
        if self._held is None:
            self._held = []
        held = self._held
        position = bisect.bisect_left(held, ts, key=_by_ts)
        if position < len(held) and held[position].ts == ts:
            out.append(Duplicate(self.vehicle_id, ts))
            return
        held.insert(position, reading)
        if not ts <= slots[layout.MAX_SEEN_TS]:
            slots[layout.MAX_SEEN_TS] = ts
        self._release(slots[layout.MAX_SEEN_TS] - self._p.reorder_bound_s, out)

    def _release(self, horizon: float, out: list[Record]) -> None:
        held = self._held
        assert held is not None
        count = bisect.bisect_right(held, horizon, key=_by_ts)
        if count:
            released = held[:count]
            del held[:count]
            for reading in released:
                self._commit(reading, out)

    # -- commit --------------------------------------------------------------------------

    def _commit(self, reading: Reading, out: list[Record]) -> None:
        p = self._p
        slots = self._slots
        ts = reading.ts
        speed = reading.speed_mps
        flags = reading.flags
        if speed < 0.0:  # validation passed it: sensor noise around standstill
            speed = 0.0
            flags = flags + _CLAMPED
        last_ts = slots[layout.LAST_TS]
        dt_s = ts - last_ts  # NaN for the first reading
        continuing = dt_s <= p.max_gap_s  # False for the first reading and after a long gap
        if continuing:
            rejection = self._step_check(reading, speed, dt_s)
            if rejection is not None:
                out.append(rejection)
                return
        if slots[layout.TRIP_STATE] != trips.IDLE or slots[layout.HARSH_STATE] != harsh.NONE:
            self._expire(ts, out)
        if not continuing:
            self._estimator.restart()
        estimate = self._estimator.update(ts, speed)
        accel = estimate.acceleration_mps2
        last_speed = slots[layout.LAST_SPEED]
        # The acceleration at a reading describes the interval ending there (harsh.py).
        start_ts, start_speed = last_ts, last_speed
        increment_m = 0.0
        bridged = False
        if continuing:
            increment_m = 0.5 * (last_speed + speed) * dt_s
            neumaier_add(slots, layout.ODO_SUM, increment_m)
            if dt_s > p.min_gap_s:
                bridged = True
                flags = flags + _BRIDGED
                start_ts, start_speed = ts, speed
        else:
            start_ts, start_speed = ts, speed
        if accel is not None or slots[layout.HARSH_STATE] != harsh.NONE:
            self._harsh_step(ts, accel, start_ts, start_speed, out)
        if trips.step(slots, ts, speed, accel, increment_m, bridged, p):
            self._trip_id = trips.trip_id_for(self.vehicle_id, ts)
        self._remember(ts, speed)
        trip_id = self._trip_id
        out.append(
            Kinematics(
                self.vehicle_id,
                ts,
                speed,
                accel,
                estimate.acceleration_sigma_mps2,
                estimate.jerk_mps3,
                compensated(slots, layout.ODO_SUM),
                trip_id,
                None if trip_id is None else compensated(slots, layout.TRIP_SUM),
                flags,
            )
        )

    def _step_check(self, reading: Reading, speed: float, dt_s: float) -> Rejection | None:
        """Refuse a speed the vehicle cannot have reached from what the estimator predicts."""
        prediction = self._estimator.predict(reading.ts)
        if prediction is None:
            return None
        p = self._p
        bound = (
            p.max_accel_mps2 * dt_s + p.step_allowance_mps + p.step_sigmas * prediction.sigma_mps
        )
        if abs(speed - prediction.speed_mps) > bound:
            return step_rejection(reading, prediction.speed_mps, bound, dt_s)
        return None

    def _harsh_step(
        self,
        ts: float,
        accel: float | None,
        start_ts: float,
        start_speed: float,
        out: list[Record],
    ) -> None:
        slots = self._slots
        if harsh.ends(slots, accel, self._p):
            self._flush_harsh(out)
        if accel is not None:
            harsh.extend_or_begin(slots, ts, accel, start_ts, start_speed, self._p)

    def _remember(self, ts: float, speed: float) -> None:
        """Advance the commit point and push ``ts`` into the duplicate ring."""
        slots = self._slots
        slots[layout.LAST_TS] = ts
        slots[layout.LAST_SPEED] = speed
        cursor = int(slots[layout.DUP_CURSOR])
        slots[layout.DUP_RING + cursor] = ts
        cursor += 1
        slots[layout.DUP_CURSOR] = 0.0 if layout.DUP_RING + cursor == len(slots) else cursor

    # -- deadlines -----------------------------------------------------------------------

    def _expire(self, t: float, out: list[Record]) -> None:
        """End what event time ``t`` has made final: a harsh event across a gap, the trip."""
        slots = self._slots
        if harsh.active(slots) and t - slots[layout.LAST_TS] > self._p.max_gap_s:
            self._flush_harsh(out)
        reason = trips.due_reason(slots, t, self._p)
        if reason is not None:
            self._flush_harsh(out)
            self._close_trip(reason, out)

    def _flush_harsh(self, out: list[Record]) -> None:
        event = harsh.finish(self._slots, self._p, self.vehicle_id, self._trip_id)
        if event is not None:
            out.append(event)

    def _close_trip(self, reason: str, out: list[Record]) -> None:
        assert self._trip_id is not None
        out.append(trips.close(self._slots, self.vehicle_id, self._trip_id, reason))
        self._trip_id = None

    # -- persistence ---------------------------------------------------------------------

    def export_state(self) -> bytes:
        """Everything needed to resume this vehicle, as compact bytes (``codec.py``)."""
        return codec.encode(
            self._p.params.estimator.method,
            self._slots,
            self._estimator.state(),
            list(self._held or ()),
        )

    def import_state(self, blob: bytes) -> None:
        """Resume from ``export_state`` bytes; raises ``codec.StateError`` on foreign bytes.

        A state saved under another estimator method or duplicate memory still resumes: the
        estimator restarts (like after a gap) and the duplicate ring keeps what fits.
        """
        decoded = codec.decode(blob, self.vehicle_id)
        slots = layout.fresh_state(self._p.params.duplicate_memory)
        named = min(layout.DUP_RING, len(decoded.slots))
        slots[:named] = decoded.slots[:named]
        ring = decoded.slots[layout.DUP_RING :][: len(slots) - layout.DUP_RING]
        slots[layout.DUP_RING : layout.DUP_RING + len(ring)] = ring
        if slots[layout.DUP_CURSOR] >= len(slots) - layout.DUP_RING:
            slots[layout.DUP_CURSOR] = 0.0
        estimator = make_estimator(self._p.params.estimator)
        if decoded.method == self._p.params.estimator.method:
            estimator.load_state(decoded.estimator_state)
        self._slots = slots
        self._estimator = estimator
        self._held = decoded.held or None
        in_trip = trips.in_trip(slots)
        self._trip_id = (
            trips.trip_id_for(self.vehicle_id, slots[layout.TRIP_START_TS]) if in_trip else None
        )
