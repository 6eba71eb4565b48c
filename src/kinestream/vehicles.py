"""Per-vehicle bookkeeping the daemon keeps next to the core's ``Fleet``.

The core knows event time only; the daemon also knows when each vehicle's latest reading
arrived (wall clock), which gives the tick time the core asks for: ``latest ts + wall time since
it arrived``. This module keeps that clock per vehicle, the tick deadlines (only vehicles the
core says have something pending are ever ticked), which vehicles changed since the last
checkpoint, the retained-state throttle, and residency: at most ``max_vehicles`` in memory, idle
ones evicted to the state store and resumed from it on their next reading.

Plain dicts keyed by vehicle id rather than one object per vehicle: the hot path touches a few
of them per reading, and memory per tracked vehicle stays small.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from kinestream.core.fleet import Fleet
from kinestream.core.records import Kinematics
from kinestream.io.state_store import StateStore, StoredVehicle

EVICT_BATCH_FRACTION = 0.01  # over capacity, evict this share at once (amortises the scan)
# A dict never shrinks: an evicted vehicle's entry stays as a deleted slot until the next resize,
# which sizes the table for 3x the live entries (2^19 slots for 100 000 vehicles where a fresh
# table has 2^18). After evicting this share of the residents, each per-vehicle table is
# rebuilt at the size its live entries need: O(1) amortised per eviction.
COMPACT_EVICTED_FRACTION = 0.25
COMPACT_MIN_EVICTIONS = 1_024
# Bits of the "may the store hold this vehicle" filter: 1 MiB whatever the fleet's history.
MAYBE_STORED_BITS = 1 << 23


class MaybeStored:
    """The vehicle ids the store may hold, one bit per hash bucket (a Bloom filter of one hash).

    "No" is exact, so a first-seen vehicle costs no SQLite lookup; "maybe" for a vehicle never
    stored (~2% of buckets set at 200 000 ids) only costs that lookup. A set of the ids kept
    every id ever stored alive, ~140 B for each vehicle no longer in memory.
    """

    __slots__ = ("_bits",)

    def __init__(self, vehicle_ids: Iterable[str] = ()) -> None:
        self._bits = bytearray(MAYBE_STORED_BITS // 8)
        self.update(vehicle_ids)

    def add(self, vehicle_id: str) -> None:
        bucket = hash(vehicle_id) & (MAYBE_STORED_BITS - 1)
        self._bits[bucket >> 3] |= 1 << (bucket & 7)

    def update(self, vehicle_ids: Iterable[str]) -> None:
        for vehicle_id in vehicle_ids:
            self.add(vehicle_id)

    def __contains__(self, vehicle_id: object) -> bool:
        bucket = hash(vehicle_id) & (MAYBE_STORED_BITS - 1)
        return bool(self._bits[bucket >> 3] >> (bucket & 7) & 1)


def compact_in_place(table: dict[str, Any]) -> None:
    """Rebuild ``table`` without its deleted slots, keeping its identity (the pipeline holds
    references to the book's tables while it handles a batch, evictions included)."""
    live = dict(table)  # sized for the live entries only
    table.clear()
    table.update(live)  # a copy of live's compact table


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A vehicle's saved state before its last record is turned into JSON.

    Taken in the event loop (the tracker state must be read between two messages); the JSON
    of the record is made later, in the checkpoint's writer thread (``stored``).
    """

    vehicle_id: str
    state: bytes
    last_record: Kinematics | bytes | None
    last_ts: float | None
    received_at: float | None

    def stored(self) -> StoredVehicle:
        record = self.last_record
        if record is not None and type(record) is not bytes:
            record = orjson.dumps(record)
        return StoredVehicle(self.vehicle_id, self.state, record, self.last_ts, self.received_at)


class VehicleBook:
    def __init__(
        self, fleet: Fleet, store: StateStore, max_vehicles: int, idle_evict_s: float
    ) -> None:
        self.fleet = fleet
        self.store = store
        self.max_vehicles = max_vehicles
        self.idle_evict_s = idle_evict_s
        self.arrived: dict[str, float] = {}  # wall time of the latest message; key = resident
        self.latest_ts: dict[str, float] = {}  # event time of the latest non-rejected reading
        # The latest kinematics record (JSON bytes when restored from a checkpoint).
        self.last_kinematics: dict[str, Kinematics | bytes] = {}
        self.state_published_at: dict[str, float] = {}
        self.pending_state: set[str] = set()  # retained state held back by the throttle
        self.touched: set[str] = set()  # since the last tick: deadlines to recompute
        self.dirty: set[str] = set()  # since the last checkpoint: state to save
        self.due_at: dict[str, float] = {}  # wall time at which the core wants a tick
        self.evicted: dict[str, Snapshot] = {}  # evicted since the last checkpoint
        self.saving: dict[str, Snapshot] = {}  # in a checkpoint being written
        self.exporting: set[str] = set()  # in the running snapshot, not exported yet
        self._snapshot: list[Snapshot] = []
        self.evictions = 0
        self._evicted_since_compact = 0
        self._to_compact: list[dict[str, Any]] = []
        # Which vehicles the store holds: a new vehicle costs no SQLite lookup (~18 us each,
        # a visible spike when a fleet first connects). None: a store that cannot list them
        # (the NATS worker's prefetching one), asked every time.
        ids = getattr(store, "ids", None)
        self.stored_ids: MaybeStored | None = MaybeStored(ids()) if ids is not None else None

    def __len__(self) -> int:
        return len(self.arrived)

    # Residency --------------------------------------------------------------------------
    def resume(self, vehicle_id: str, now_wall: float) -> None:
        """Bring a vehicle not in memory back from its last saved state, if it has one."""
        if len(self.arrived) >= self.max_vehicles:
            self.evict_oldest(max(1, int(self.max_vehicles * EVICT_BATCH_FRACTION)))
        stored = (
            self.evicted.pop(vehicle_id, None)
            or self.saving.get(vehicle_id)
            or (self.store.load(vehicle_id) if self._may_be_stored(vehicle_id) else None)
        )
        if stored is not None:
            self.restore(stored)
        self.arrived[vehicle_id] = now_wall

    def _may_be_stored(self, vehicle_id: str) -> bool:
        return self.stored_ids is None or vehicle_id in self.stored_ids

    def restore(self, stored: StoredVehicle | Snapshot) -> None:
        vehicle_id = stored.vehicle_id
        self.fleet.import_state(vehicle_id, stored.state)
        self.arrived[vehicle_id] = stored.received_at or 0.0
        if stored.last_ts is not None:
            self.latest_ts[vehicle_id] = stored.last_ts
        if stored.last_record is not None:
            self.last_kinematics[vehicle_id] = stored.last_record
        self.touched.add(vehicle_id)

    def evict_idle(self, now_wall: float) -> int:
        """Evict vehicles silent for ``idle_evict_s`` (their trips were closed by ticks)."""
        horizon = now_wall - self.idle_evict_s
        idle = [vid for vid, arrived in self.arrived.items() if arrived < horizon]
        for vehicle_id in idle:
            self.evict(vehicle_id)
        self.compact_some()
        return len(idle)

    def evict_oldest(self, count: int) -> None:
        oldest = heapq.nsmallest(count, self.arrived.items(), key=lambda item: item[1])
        for vehicle_id, _arrived in oldest:
            self.evict(vehicle_id)
        self.compact_some()

    def compact_some(self) -> None:
        """After many evictions, rebuild the per-vehicle tables, one per call (~3 ms each for
        100 000 vehicles), so no single eviction pass holds the event loop for all of them."""
        if not self._to_compact and self._evicted_since_compact >= max(
            COMPACT_MIN_EVICTIONS, int(len(self.arrived) * COMPACT_EVICTED_FRACTION)
        ):
            self._evicted_since_compact = 0
            self._to_compact = [
                self.fleet.trackers_table(),
                self.arrived,
                self.latest_ts,
                self.last_kinematics,
                self.state_published_at,
                self.due_at,
            ]
        if self._to_compact:
            compact_in_place(self._to_compact.pop())

    def evict(self, vehicle_id: str) -> None:
        """Move a vehicle's state out of memory; the next checkpoint writes it."""
        if vehicle_id in self.exporting:
            self.export_pending(vehicle_id)
        self.evicted[vehicle_id] = self.snapshot(vehicle_id, self.fleet.evict(vehicle_id))
        del self.arrived[vehicle_id]
        self.latest_ts.pop(vehicle_id, None)
        self.last_kinematics.pop(vehicle_id, None)
        self.state_published_at.pop(vehicle_id, None)
        self.pending_state.discard(vehicle_id)
        self.due_at.pop(vehicle_id, None)
        self.touched.discard(vehicle_id)
        self.dirty.discard(vehicle_id)
        self.evictions += 1
        self._evicted_since_compact += 1

    # Checkpoint support -------------------------------------------------------------------
    def last_record_json(self, vehicle_id: str) -> bytes | None:
        record = self.last_kinematics.get(vehicle_id)
        if record is None or type(record) is bytes:
            return record
        return orjson.dumps(record)

    def snapshot(self, vehicle_id: str, state: bytes) -> Snapshot:
        return Snapshot(
            vehicle_id,
            state,
            self.last_kinematics.get(vehicle_id),
            self.latest_ts.get(vehicle_id),
            self.arrived.get(vehicle_id),
        )

    # A checkpoint's snapshot is taken in slices, copy-on-write: ``begin_snapshot`` fixes the
    # instant (the caller rotates the log at the same moment); until a vehicle has been
    # exported, anything that would change its state first exports it (``export_pending``:
    # called before Fleet.update, Fleet.tick and eviction). So every vehicle is saved as it was
    # at that instant, without exporting thousands of them in one block of the event loop.
    # The checkpointer takes the exported rows a chunk at a time (``take_exported``) and writes
    # them; only the rows of vehicles evicted before the instant are kept (``saving``) until
    # the checkpoint ends, as they are the only copy of those vehicles' state.

    def begin_snapshot(self) -> None:
        self.exporting = self.dirty
        self.dirty = set()
        self._snapshot = list(self.evicted.values())
        self.saving = self.evicted
        self.evicted = {}

    def export_some(self, count: int) -> bool:
        """Export up to ``count`` more vehicles of the snapshot; True when none are left."""
        exporting = self.exporting
        for _ in range(min(count, len(exporting))):
            self._export(exporting.pop())
        return not exporting

    def export_pending(self, vehicle_id: str) -> None:
        """Called before a change to a vehicle the running snapshot has not exported yet."""
        self.exporting.discard(vehicle_id)
        self._export(vehicle_id)

    def _export(self, vehicle_id: str) -> None:
        self._snapshot.append(self.snapshot(vehicle_id, self.fleet.export_state(vehicle_id)))

    def take_exported(self) -> list[Snapshot]:
        """The snapshot's rows exported since the last call."""
        rows, self._snapshot = self._snapshot, []
        return rows

    def finish_snapshot(self) -> list[Snapshot]:
        return self.take_exported()

    def take_dirty(self) -> list[Snapshot]:
        """The whole snapshot at once (tests, and nothing else running)."""
        self.begin_snapshot()
        self.export_some(len(self.exporting))
        return self.finish_snapshot()

    def may_be_stored(self, vehicle_ids: Iterable[str]) -> None:
        """The store may hold these vehicles now (a superset only costs a lookup)."""
        if self.stored_ids is not None:
            self.stored_ids.update(vehicle_ids)

    def abandon_snapshot(self, taken_ids: Iterable[str]) -> None:
        """The checkpoint failed: every vehicle of its snapshot is to be saved next time.

        ``taken_ids``: the vehicles whose rows the checkpointer took. A vehicle exported but no
        longer resident was evicted since, with its newer state in ``evicted`` already.
        """
        unexported, self.exporting = self.exporting, set()
        untaken = [row.vehicle_id for row in self.take_exported()]
        for ids in (taken_ids, untaken, unexported):
            self.dirty.update(vid for vid in ids if vid in self.arrived)
        self.saved(list(self.saving.values()), ok=False)

    def saved(self, rows: Iterable[Snapshot], ok: bool) -> None:
        """After a checkpoint: forget the snapshot, or mark it dirty again if the write failed."""
        if not ok:
            for row in rows:
                if row.vehicle_id in self.arrived:
                    self.dirty.add(row.vehicle_id)
                else:
                    self.evicted.setdefault(row.vehicle_id, row)
        else:
            self.may_be_stored(row.vehicle_id for row in rows)
        self.saving = {}

    # Ticks ------------------------------------------------------------------------------
    def take_touched(self) -> list[str]:
        """Vehicles changed since the last call, whose deadlines need recomputing."""
        touched, self.touched = self.touched, set()
        return list(touched)

    def refresh_deadlines(self, vehicle_ids: Iterable[str] | None = None) -> None:
        """Recompute tick deadlines (all touched vehicles by default) as wall times."""
        fleet = self.fleet
        for vehicle_id in self.take_touched() if vehicle_ids is None else vehicle_ids:
            latest = self.latest_ts.get(vehicle_id)
            deadline_ts = None if latest is None else fleet.next_deadline(vehicle_id)
            if deadline_ts is None or latest is None:  # idle, or evicted meanwhile
                self.due_at.pop(vehicle_id, None)
            else:
                self.due_at[vehicle_id] = self.arrived[vehicle_id] + (deadline_ts - latest)

    def due(
        self, now_wall: float, candidates: Iterable[tuple[str, float]] | None = None
    ) -> list[tuple[str, float]]:
        """Vehicles whose deadline has come, with the event time to tick them to.

        ``candidates``: a slice of an earlier copy of ``due_at`` (the service scans it in
        slices between messages, so each is checked against the current deadline).
        """
        due_at = self.due_at
        items = due_at.items() if candidates is None else candidates
        ready = [vid for vid, _ in items if due_at.get(vid, now_wall + 1.0) <= now_wall]
        return [(vid, self.event_now(vid, now_wall)) for vid in ready]

    def event_now(self, vehicle_id: str, now_wall: float) -> float:
        """The vehicle's event-time clock: latest ts + wall time since it arrived."""
        return self.latest_ts[vehicle_id] + max(0.0, now_wall - self.arrived[vehicle_id])
