"""The daemon's hot path: one MQTT message in, derived messages out. No I/O of its own.

``handle`` decodes once (``io.payloads``), applies the receive-time check, feeds the core and
dispatches each record the core returns by type (h11 style): kinematics, trips and events are
published as JSON (orjson serialises the core's slotted dataclasses directly), rejections go to
the dead-letter topic with the original message, duplicates are only counted. Publishing goes
through a plain callable, so tests and the service can plug anything in.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import orjson

from kinestream.core.fleet import Fleet
from kinestream.core.records import (
    Duplicate,
    HarshEvent,
    Kinematics,
    Record,
    Rejection,
    RejectReason,
    TripSummary,
)
from kinestream.core.units import SpeedUnit
from kinestream.core.validation import check_not_future
from kinestream.io.metrics import Metrics
from kinestream.io.payloads import (
    decode_single_sample,
    decode_speed_payload,
    parse_vehicle_id,
)
from kinestream.vehicles import VehicleBook

log = logging.getLogger(__name__)
# topic -> vehicle id of valid topics (a fleet repeats them); ~85 B each plus the topic text.
# Room for every resident vehicle plus this many others (topics that never became a resident,
# vehicles evicted since): when full, only the residents' entries are kept.
VEHICLE_ID_CACHE_HEADROOM = 65_536

# A received message: (topic, payload, qos, redelivered), as the MQTT link hands them over.
Message = tuple[str, bytes, int, bool]
# publish(topic, payload, qos, retain)
Publish = Callable[[str, bytes, int, bool], object]


class Pipeline:
    def __init__(
        self,
        fleet: Fleet,
        book: VehicleBook,
        publish: Publish,
        metrics: Metrics,
        *,
        topic_prefix: str,
        service_prefix: str,
        default_unit: SpeedUnit,
        max_future_s: float,
        max_payload_bytes: int,
        output_qos: int = 0,
        state_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.book = book
        self.publish = publish
        self.metrics = metrics
        self.prefix = topic_prefix
        self.deadletter_topic = f"{service_prefix}/deadletter"
        self.default_unit = default_unit
        self.max_future_s = max_future_s
        self.max_payload_bytes = max_payload_bytes
        self.qos = output_qos
        self.state_interval_s = state_interval_s
        self.clock = clock
        self.observe_latency = True  # off while replaying the log (old receive times)
        self._vehicle_ids: dict[str, str] = {}  # topic -> its valid vehicle id
        self._vehicle_id_limit = book.max_vehicles + VEHICLE_ID_CACHE_HEADROOM

    # Input ------------------------------------------------------------------------------
    def handle(
        self, topic: str, payload: bytes, received_at: float, redelivered: bool = False
    ) -> None:
        """Process one message; never raises for any topic or payload.

        ``redelivered`` (MQTT DUP): the broker may have handed this message over before, e.g.
        before a crash. Its readings at or before the commit point are then duplicates, even
        beyond the tracker's memory of recent timestamps (where they would be ``late``), so
        a crash never turns redeliveries into dead letters. (Mosquitto also sets DUP on
        messages queued while the daemon was away; a truly late reading among those is
        counted as a duplicate rather than dead-lettered: either way it changes nothing.)
        """
        self.handle_batch(((topic, payload, 0, redelivered),), received_at)

    def handle_batch(self, messages: Sequence[Message], received_at: float) -> None:
        """``handle`` each (topic, payload, qos, redelivered), all received at ``received_at``.

        The common message (a resident vehicle's single reading that becomes one kinematics
        record) takes the path below; anything else goes through ``_handle_one``. Counters
        and the latency histogram are updated once per batch. Never raises: an internal error
        on one message is logged and the rest go on (the message stays in the log).
        """
        book = self.book
        arrived, exporting, latest_ts = book.arrived, book.exporting, book.latest_ts
        touched, dirty = book.touched, book.dirty
        vehicle_ids = self._vehicle_ids
        update = self.fleet.update_sample
        publish, qos, prefix = self.publish, self.qos, self.prefix
        unit, limit, max_future_s = self.default_unit, self.max_payload_bytes, self.max_future_s
        self.metrics.messages_received += len(messages)
        accepted = states = 0
        record = None
        for topic, payload, _qos, redelivered in messages:
            try:
                vehicle_id = vehicle_ids.get(topic)
                sample = (
                    decode_single_sample(payload, received_at, unit, limit)
                    if vehicle_id in arrived and vehicle_id not in exporting
                    else None
                )
                if sample is None or sample[0] - received_at > max_future_s:
                    self._handle_one(topic, payload, received_at, redelivered)
                    continue
                ts = sample[0]
                records = update(vehicle_id, ts, sample[1], sample[2])
                arrived[vehicle_id] = received_at
                touched.add(vehicle_id)
                dirty.add(vehicle_id)
                if len(records) != 1 or type(records[0]) is not Kinematics:
                    self._records(vehicle_id, ts, records, topic, payload, received_at, redelivered)
                    continue
                if ts > latest_ts.get(vehicle_id, 0.0):
                    latest_ts[vehicle_id] = ts
                record = records[0]
                body = kinematics_json(record)
                publish(f"{prefix}/{vehicle_id}/kinematics", body, qos, False)
                accepted += 1
                states += self._state(vehicle_id, record, body, received_at)
            except Exception:
                log.exception("internal error processing a message on %r", topic)
        if record is not None:
            self._count_kinematics(accepted, states, record, received_at)

    def _handle_one(
        self, topic: str, payload: bytes, received_at: float, redelivered: bool
    ) -> None:
        """Any message: unknown topics, new or evicted vehicles, arrays, errors, ..."""
        vehicle_id = self._vehicle_ids.get(topic)
        if vehicle_id is None:
            vehicle_id = parse_vehicle_id(topic, self.prefix)
            if type(vehicle_id) is not str:
                self.dead_letter(vehicle_id, topic, payload, received_at)
                return
            if len(self._vehicle_ids) >= self._vehicle_id_limit:
                self._keep_residents_topics()
            self._vehicle_ids[topic] = vehicle_id
        readings, rejections = decode_speed_payload(
            payload,
            vehicle_id,
            received_at,
            self.default_unit,
            max_payload_bytes=self.max_payload_bytes,
        )
        for rejection in rejections:
            self.dead_letter(rejection, topic, payload, received_at)
        if not readings:
            return
        book = self.book
        if vehicle_id not in book.arrived:
            book.resume(vehicle_id, received_at)
        if vehicle_id in book.exporting:  # a checkpoint needs its state from before this
            book.export_pending(vehicle_id)
        book.arrived[vehicle_id] = received_at
        book.touched.add(vehicle_id)
        book.dirty.add(vehicle_id)
        update = self.fleet.update
        for reading in readings:
            if reading.ts - received_at > self.max_future_s:
                too_early = check_not_future(reading, received_at, self.max_future_s)
                if too_early is not None:
                    self.dead_letter(too_early, topic, payload, received_at)
                    continue
            records = update(reading)
            self._records(vehicle_id, reading.ts, records, topic, payload, received_at, redelivered)

    def _keep_residents_topics(self) -> None:
        """Drop the cached topics of vehicles not in memory (evicted, or never accepted).

        Clearing it all instead made a fleet larger than the cache miss on every message
        (round robin over 100k topics never hits a cache emptied every 65k). Residents are at
        most ``max_vehicles``, so each pass frees at least the headroom: amortised O(1)."""
        arrived = self.book.arrived
        cache = self._vehicle_ids
        residents = {topic: vid for topic, vid in cache.items() if vid in arrived}
        cache.clear()  # the same dict: handle_batch holds a reference to it
        cache.update(residents)

    def _records(  # noqa: PLR0917 (the message's context, for dead letters)
        self,
        vehicle_id: str,
        ts: float,
        records: list[Record],
        topic: str,
        payload: bytes,
        received_at: float,
        redelivered: bool,
    ) -> None:
        """What one reading produced, whatever it was."""
        latest_ts = self.book.latest_ts
        # Accepted or held (reorder buffer): the vehicle's event-time clock moves on.
        if (not records or type(records[0]) is not Rejection) and ts > latest_ts.get(
            vehicle_id, 0.0
        ):
            latest_ts[vehicle_id] = ts
        self.dispatch(records, topic, payload, received_at, redelivered)

    def tick(self, now_wall: float) -> None:
        """Tick vehicles whose deadline passed, then publish retained state that was held.

        All at once; the service does the same in slices (``tick_vehicles``, ``flush_state``
        on parts) so that no single callback holds the event loop for long.
        """
        book = self.book
        book.refresh_deadlines()
        self.tick_vehicles(book.due(now_wall), now_wall)
        book.refresh_deadlines()
        self.flush_state(now_wall)

    def tick_vehicles(self, due: Iterable[tuple[str, float]], now_wall: float) -> None:
        """``Fleet.tick`` each (vehicle, event time) and publish what it closes or releases."""
        book = self.book
        for vehicle_id, now_ts in due:
            if vehicle_id in book.exporting:
                book.export_pending(vehicle_id)
            self.dispatch(self.fleet.tick(vehicle_id, now_ts), None, b"", now_wall)
            book.touched.add(vehicle_id)
            book.dirty.add(vehicle_id)

    # Output -----------------------------------------------------------------------------
    def dispatch(
        self,
        records: list[Record],
        topic: str | None,
        payload: bytes,
        received_at: float,
        redelivered: bool = False,
    ) -> None:
        metrics = self.metrics
        for record in records:
            kind = type(record)
            if kind is Kinematics:
                self.kinematics(record, received_at)
            elif kind is Duplicate:
                metrics.readings["duplicate"] += 1
            elif kind is Rejection:
                if redelivered and record.reason is RejectReason.LATE:
                    metrics.readings["duplicate"] += 1
                else:
                    self.dead_letter(record, topic or "", payload, received_at)
            elif kind is TripSummary:
                self._send(self._topic(record.vehicle_id, "trips"), orjson.dumps(record), "trip")
            elif kind is HarshEvent:
                events_topic = self._topic(record.vehicle_id, "events")
                self._send(events_topic, orjson.dumps(record), "event")

    def kinematics(self, record: Kinematics, received_at: float) -> None:
        """Publish one kinematics record (and retained state, throttled) and count it."""
        vehicle_id = record.vehicle_id
        body = kinematics_json(record)
        self.publish(self._topic(vehicle_id, "kinematics"), body, self.qos, False)
        states = self._state(vehicle_id, record, body, received_at)
        self._count_kinematics(1, states, record, received_at)

    def _state(self, vehicle_id: str, record: Kinematics, body: bytes, now: float) -> int:
        """Keep the latest record; publish it retained unless the throttle holds it back
        (``flush_state`` sends it later). Returns the number published (0 or 1)."""
        book = self.book
        # The record, not its JSON: orjson's bytes keep a ~4 KB buffer each (measured).
        book.last_kinematics[vehicle_id] = record
        if now - book.state_published_at.get(vehicle_id, 0.0) >= self.state_interval_s:
            self.publish(f"{self.prefix}/{vehicle_id}/state", body, self.qos, True)
            book.state_published_at[vehicle_id] = now
            book.pending_state.discard(vehicle_id)
            return 1
        book.pending_state.add(vehicle_id)
        return 0

    def _count_kinematics(
        self, count: int, states: int, last: Kinematics, received_at: float
    ) -> None:
        """Counters for ``count`` kinematics records received at ``received_at``, once per
        batch: their latency is the time from receipt to the end of the batch."""
        metrics = self.metrics
        metrics.published["kinematics"] += count
        metrics.published["state"] += states
        metrics.readings["accepted"] += count
        if self.observe_latency:
            metrics.latency.observe_many(max(0.0, self.clock() - received_at), count)
            metrics.event_time_lag_seconds = received_at - last.ts

    def flush_state(self, now_wall: float, vehicle_ids: Iterable[str] | None = None) -> None:
        """Publish held-back retained state whose throttle interval has passed."""
        book = self.book
        pending = book.pending_state
        ready = [
            vid
            for vid in (list(pending) if vehicle_ids is None else vehicle_ids)
            if vid in pending
            and now_wall - book.state_published_at.get(vid, 0.0) >= self.state_interval_s
        ]
        for vehicle_id in ready:
            book.pending_state.discard(vehicle_id)
            body = book.last_record_json(vehicle_id)
            if body is not None:
                self._send(self._topic(vehicle_id, "state"), body, "state", retain=True)
                book.state_published_at[vehicle_id] = now_wall

    def dead_letter(
        self, rejection: Rejection, topic: str, payload: bytes, received_at: float
    ) -> None:
        reason = rejection.reason.value
        self.metrics.readings["rejected"] += 1
        self.metrics.dead_letters[reason] += 1
        self._send(
            self.deadletter_topic,
            dead_letter_body(topic, payload, reason, rejection.message, received_at),
            "deadletter",
        )

    def _topic(self, vehicle_id: str, kind: str) -> str:
        return f"{self.prefix}/{vehicle_id}/{kind}"

    def _send(self, topic: str, body: bytes, kind: str, retain: bool = False) -> None:
        self.publish(topic, body, self.qos, retain)
        self.metrics.published[kind] += 1


def kinematics_json(r: Kinematics) -> bytes:
    """``orjson.dumps(record)``, but from a dict literal: orjson's dataclass path is about
    twice as slow for slotted classes, and this runs once per reading (a test keeps the two
    identical)."""
    return orjson.dumps(
        {
            "vehicle_id": r.vehicle_id,
            "ts": r.ts,
            "speed_mps": r.speed_mps,
            "acceleration_mps2": r.acceleration_mps2,
            "acceleration_sigma_mps2": r.acceleration_sigma_mps2,
            "jerk_mps3": r.jerk_mps3,
            "distance_m": r.distance_m,
            "trip_id": r.trip_id,
            "trip_distance_m": r.trip_distance_m,
            "flags": r.flags,
        }
    )


def dead_letter_body(
    topic: str, payload: bytes, reason: str, message: str, received_at: float
) -> bytes:
    """``{topic, payload | payload_b64, reason, message, received_at}`` as JSON."""
    body: dict[str, object] = {"topic": topic}
    try:
        body["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        body["payload_b64"] = base64.b64encode(payload).decode("ascii")
    body.update(reason=reason, message=message, received_at=received_at)
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:  # lone surrogates in a topic or message: escape them
        body.update(topic=ascii(topic), message=ascii(message))
        return orjson.dumps(body)
