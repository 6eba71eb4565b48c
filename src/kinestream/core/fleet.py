"""Fleet: vehicle_id → Tracker, all made from one ``TrackerParams`` (River's prototype idea)."""

from __future__ import annotations

from collections.abc import Iterator

from kinestream.core.params import TrackerParams
from kinestream.core.prepared import prepare
from kinestream.core.records import Reading, Record
from kinestream.core.tracker import Tracker


class Fleet:
    """The trackers of every vehicle seen; a vehicle is created on its first reading."""

    __slots__ = ("_params", "_prepared", "_trackers")

    def __init__(self, params: TrackerParams | None = None) -> None:
        self._params = params if params is not None else TrackerParams()
        # Prepared once here, not per new vehicle (a params hash for the lookup costs ~2 µs).
        self._prepared = prepare(self._params)
        self._trackers: dict[str, Tracker] = {}

    @property
    def params(self) -> TrackerParams:
        return self._params

    def __len__(self) -> int:
        return len(self._trackers)

    def __contains__(self, vehicle_id: object) -> bool:
        return vehicle_id in self._trackers

    def vehicle_ids(self) -> Iterator[str]:
        return iter(self._trackers)

    def tracker(self, vehicle_id: str) -> Tracker:
        """The vehicle's tracker, created fresh if it is not tracked yet."""
        tracker = self._trackers.get(vehicle_id)
        if tracker is None:
            tracker = self._trackers[vehicle_id] = Tracker(vehicle_id, self._prepared)
        return tracker

    def update(self, reading: Reading) -> list[Record]:
        tracker = self._trackers.get(reading.vehicle_id)
        if tracker is None:
            tracker = self.tracker(reading.vehicle_id)
        return tracker.update(reading)

    def update_sample(
        self, vehicle_id: str, ts: float, speed_mps: float, flags: tuple[str, ...] = ()
    ) -> list[Record]:
        """``update(Reading(vehicle_id, ts, speed_mps, flags))``, without the Reading when the
        reading is simply committed (the same records either way)."""
        tracker = self._trackers.get(vehicle_id)
        if tracker is None:
            tracker = self.tracker(vehicle_id)
        return tracker.update_sample(ts, speed_mps, flags)

    def tick(self, vehicle_id: str, now_ts: float) -> list[Record]:
        """Event time for ``vehicle_id`` has reached ``now_ts``; nothing if it is not tracked."""
        tracker = self._trackers.get(vehicle_id)
        return [] if tracker is None else tracker.tick(now_ts)

    def finish(self, vehicle_id: str) -> list[Record]:
        """End of input for ``vehicle_id`` (offline): flush held readings, close its trip."""
        tracker = self._trackers.get(vehicle_id)
        return [] if tracker is None else tracker.finish()

    def next_deadline(self, vehicle_id: str) -> float | None:
        tracker = self._trackers.get(vehicle_id)
        return None if tracker is None else tracker.next_deadline()

    def export_state(self, vehicle_id: str) -> bytes:
        """The vehicle's state as bytes; raises ``KeyError`` if it is not tracked."""
        return self._trackers[vehicle_id].export_state()

    def import_state(self, vehicle_id: str, blob: bytes) -> None:
        """Track ``vehicle_id`` from saved bytes (replacing any state it had)."""
        tracker = Tracker(vehicle_id, self._prepared)
        tracker.import_state(blob)
        self._trackers[vehicle_id] = tracker

    def trackers_table(self) -> dict[str, Tracker]:
        """The vehicle id -> tracker dict itself (the daemon compacts it after evictions)."""
        return self._trackers

    def evict(self, vehicle_id: str) -> bytes:
        """Drop the vehicle from memory and return its state (``import_state`` resumes it)."""
        return self._trackers.pop(vehicle_id).export_state()
