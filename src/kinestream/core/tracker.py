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
from kinestream.core.estimators import AccelerationEstimator, Prediction
from kinestream.core.layout import (
    DUP_CURSOR,
    DUP_RING,
    HARSH_STATE,
    LAST_SPEED,
    LAST_TS,
    MAX_SEEN_TS,
    ODO_COMP,
    ODO_SUM,
    TRIP_COMP,
    TRIP_START_TS,
    TRIP_STATE,
    TRIP_SUM,
)
from kinestream.core.params import TrackerParams
from kinestream.core.prepared import Prepared, prepare
from kinestream.core.records import Duplicate, Reading, Record, Rejection, make_kinematics
from kinestream.core.validation import (
    CLAMPED_FLAG,
    check_reading,
    late_rejection,
    step_bound_mps,
    step_rejection,
)

BRIDGED_GAP_FLAG = "bridged_gap"
_CLAMPED = (CLAMPED_FLAG,)
_BRIDGED = (BRIDGED_GAP_FLAG,)
_by_ts = attrgetter("ts")
# Bound once: _commit reads them per reading (a module attribute lookup each otherwise).
_STOPPED = trips.STOPPED
_HARSH_NONE = harsh.NONE
_trip_step = trips.step


class Tracker:
    """State for one vehicle, packed (see ``layout.py``); made by ``Fleet`` from shared params."""

    __slots__ = ("_estimator", "_held", "_p", "_slots", "_trip_id", "vehicle_id")

    def __init__(self, vehicle_id: str, params: TrackerParams | Prepared) -> None:
        """``params`` may already be prepared (``Fleet`` does it once for all its vehicles)."""
        self.vehicle_id = vehicle_id
        p = params if type(params) is Prepared else prepare(params)
        self._p: Prepared = p
        self._estimator: AccelerationEstimator = p.estimator_prototype.fresh()
        self._slots = layout.fresh_state(p.duplicate_memory)
        self._held: list[Reading] | None = None  # reorder buffer, sorted by ts (bound > 0)
        self._trip_id: str | None = None

    @property
    def params(self) -> TrackerParams:
        return self._p.params

    # -- input ---------------------------------------------------------------------------

    def update(self, reading: Reading) -> list[Record]:
        """Take one reading; returns what it produced (possibly nothing while held)."""
        p = self._p
        ts = reading.ts
        # One chained comparison passes every valid reading (NaN and ±inf fail it); only a
        # reading that fails pays for finding out which rule it broke.
        if not (
            p.min_ts <= ts < p.max_ts and p.min_speed_mps <= reading.speed_mps <= p.max_speed_mps
        ):
            rejection = check_reading(reading, p.params)
            assert rejection is not None
            return [rejection]
        out: list[Record] = []
        if p.reorder_bound_s > 0.0:
            self._hold(reading, out)
            return out
        last_ts = self._slots[LAST_TS]
        if ts <= last_ts:
            out.append(self._duplicate_or_late(reading, last_ts))
        else:
            self._commit(ts, reading.speed_mps, reading.flags, out)
        return out

    def update_sample(self, ts: float, speed_mps: float, flags: tuple[str, ...]) -> list[Record]:
        """``update(Reading(self.vehicle_id, ts, speed_mps, flags))`` without making the
        Reading when the reading is simply committed (the daemon's common case)."""
        p = self._p
        if (
            p.min_ts <= ts < p.max_ts
            and p.min_speed_mps <= speed_mps <= p.max_speed_mps
            and p.reorder_bound_s <= 0.0
            and ts > self._slots[LAST_TS]
        ):
            out: list[Record] = []
            self._commit(ts, speed_mps, flags, out)
            return out
        return self.update(Reading(self.vehicle_id, ts, speed_mps, flags))

    def tick(self, now_ts: float) -> list[Record]:
        """Event time has reached ``now_ts``: release, end and flush what is due."""
        out: list[Record] = []
        if math.isnan(now_ts):  # no time at all: nothing can be due
            return out
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
            candidates.append(math.nextafter(slots[LAST_TS] + self._p.max_gap_s, math.inf))
        if not candidates:
            return None
        return min(candidates) + self._p.reorder_bound_s

    # -- ordering ------------------------------------------------------------------------

    def _duplicate_or_late(self, reading: Reading, last_ts: float) -> Record:
        if reading.ts in self._slots[DUP_RING:]:
            return Duplicate(self.vehicle_id, reading.ts)
        return late_rejection(reading, last_ts, self._p.reorder_bound_s)

    def _hold(self, reading: Reading, out: list[Record]) -> None:
        slots = self._slots
        ts = reading.ts
        if ts <= slots[LAST_TS]:
            out.append(self._duplicate_or_late(reading, slots[LAST_TS]))
            return
        if self._held is None:
            self._held = []
        held = self._held
        position = bisect.bisect_left(held, ts, key=_by_ts)
        if position < len(held) and held[position].ts == ts:
            out.append(Duplicate(self.vehicle_id, ts))
            return
        held.insert(position, reading)
        if not ts <= slots[MAX_SEEN_TS]:
            slots[MAX_SEEN_TS] = ts
        self._release(slots[MAX_SEEN_TS] - self._p.reorder_bound_s, out)

    def _release(self, horizon: float, out: list[Record]) -> None:
        held = self._held
        assert held is not None
        count = bisect.bisect_right(held, horizon, key=_by_ts)
        if count:
            released = held[:count]
            del held[:count]
            for reading in released:
                self._commit(reading.ts, reading.speed_mps, reading.flags, out)

    # -- commit --------------------------------------------------------------------------

    def _commit(  # noqa: PLR0912, PLR0915 (hot path)
        self, ts: float, speed: float, flags: tuple[str, ...], out: list[Record]
    ) -> None:
        """Apply one reading after the commit point: the whole per-reading computation.

        Written out in one function because it runs for every reading (µs matter here); the
        rules themselves live in validation.py, trips.py, harsh.py and integrator.py. Takes
        the reading's values, not a Reading: the daemon's common case never makes one.
        """
        p = self._p
        slots = self._slots
        reading_speed, reading_flags = speed, flags  # as received, for a rejection
        if speed < 0.0:  # validation passed it: sensor noise around standstill
            speed = 0.0
            flags = flags + _CLAMPED
        last_ts = slots[LAST_TS]
        dt_s = ts - last_ts  # NaN for the first reading
        continuing = dt_s <= p.max_gap_s  # False for the first reading and after a long gap
        estimator = self._estimator
        if continuing:
            prediction = estimator.predict(ts)
            if prediction is not None:
                predicted_mps, sigma_mps = prediction  # unpacking beats two attribute reads
                if abs(speed - predicted_mps) > (
                    p.max_accel_mps2 * dt_s + p.step_allowance_mps + p.step_sigmas * sigma_mps
                ):
                    reading = Reading(self.vehicle_id, ts, reading_speed, reading_flags)
                    out.append(self._step_rejection(reading, prediction, dt_s))
                    return
            if slots[TRIP_STATE] == _STOPPED:  # the only deadline a short step meets
                self._expire(ts, out)
        else:
            self._expire(ts, out)
            estimator.restart()
        accel, sigma, jerk = estimator.update(ts, speed)
        last_speed = slots[LAST_SPEED]
        increment_m = 0.0
        bridged = False
        if continuing:
            # The trapezoid into the odometer, Neumaier-compensated (integrator.py, inlined).
            increment_m = 0.5 * (last_speed + speed) * dt_s
            total = slots[ODO_SUM]
            new_total = total + increment_m
            if total >= increment_m:  # both non-negative: abs() not needed
                slots[ODO_COMP] += (total - new_total) + increment_m
            else:
                slots[ODO_COMP] += (increment_m - new_total) + total
            slots[ODO_SUM] = new_total
            bridged = dt_s > p.min_gap_s
            if bridged:
                flags = flags + _BRIDGED
        if slots[HARSH_STATE] != _HARSH_NONE or (
            accel is not None
            and (accel >= p.harsh_enter_accel_mps2 or accel <= p.harsh_enter_brake_mps2)
        ):
            # The acceleration describes the interval ending here, unless that was a gap.
            if continuing and not bridged:
                self._harsh_step(ts, accel, last_ts, last_speed, out)
            else:
                self._harsh_step(ts, accel, ts, speed, out)
        if _trip_step(slots, ts, speed, accel, increment_m, bridged, p):
            self._trip_id = trips.trip_id_for(self.vehicle_id, ts)
        slots[LAST_TS] = ts
        slots[LAST_SPEED] = speed
        cursor = int(slots[DUP_CURSOR])
        slots[DUP_RING + cursor] = ts
        cursor += 1
        slots[DUP_CURSOR] = 0.0 if cursor == p.duplicate_memory else cursor
        trip_id = self._trip_id
        out.append(
            make_kinematics(
                self.vehicle_id,
                ts,
                speed,
                accel,
                sigma,
                jerk,
                slots[ODO_SUM] + slots[ODO_COMP],
                trip_id,
                None if trip_id is None else slots[TRIP_SUM] + slots[TRIP_COMP],
                flags,
            )
        )

    def _step_rejection(self, reading: Reading, prediction: Prediction, dt_s: float) -> Rejection:
        """The physics step check failed: |speed - predicted| beyond what Δt can explain."""
        p = self.params
        bound = step_bound_mps(dt_s, prediction.sigma_mps, p)
        return step_rejection(reading, prediction.speed_mps, bound, dt_s)

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

    # -- deadlines -----------------------------------------------------------------------

    def _expire(self, t: float, out: list[Record]) -> None:
        """End what event time ``t`` has made final: a harsh event across a gap, the trip."""
        slots = self._slots
        if harsh.active(slots) and t - slots[LAST_TS] > self._p.max_gap_s:
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
        slots = layout.fresh_state(self._p.duplicate_memory)
        named = min(DUP_RING, len(decoded.slots))
        slots[:named] = decoded.slots[:named]
        ring = decoded.slots[DUP_RING:][: len(slots) - DUP_RING]
        slots[DUP_RING : DUP_RING + len(ring)] = ring
        if slots[DUP_CURSOR] >= len(slots) - DUP_RING:
            slots[DUP_CURSOR] = 0.0
        estimator = self._p.estimator_prototype.fresh()
        if decoded.method == self._p.params.estimator.method:
            estimator.load_state(decoded.estimator_state)
        self._slots = slots
        self._estimator = estimator
        self._held = decoded.held or None
        in_trip = trips.in_trip(slots)
        self._trip_id = (
            trips.trip_id_for(self.vehicle_id, slots[TRIP_START_TS]) if in_trip else None
        )
