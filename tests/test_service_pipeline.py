"""The daemon's hot path without a broker: one message in, the right messages out."""

import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinestream import pipeline as pipeline_module
from kinestream.config import load_settings
from kinestream.core.fleet import Fleet
from kinestream.core.records import Kinematics
from kinestream.io.metrics import Metrics
from kinestream.io.state_store import StateStore
from kinestream.pipeline import Pipeline, dead_letter_body, kinematics_json
from kinestream.vehicles import MaybeStored, VehicleBook

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, tmp_path, max_vehicles: int = 100, **tracker) -> None:
        settings = load_settings(overrides={"tracker": tracker} if tracker else None)
        self.fleet = Fleet(settings.tracker.to_params())
        self.store = StateStore(tmp_path)
        self.book = VehicleBook(self.fleet, self.store, max_vehicles, idle_evict_s=3600.0)
        self.metrics = Metrics()
        self.sent: list[tuple[str, bytes, int, bool]] = []
        self.clock = Clock(T0)
        self.pipeline = Pipeline(
            self.fleet,
            self.book,
            lambda topic, body, qos, retain: self.sent.append((topic, body, qos, retain)),
            self.metrics,
            topic_prefix="vehicles",
            service_prefix="kinestream",
            default_unit=settings.tracker.default_unit,
            max_future_s=10.0,
            max_payload_bytes=1000,
            clock=self.clock,
        )

    def send(self, vehicle: str, ts: float, speed: float, received_at: float | None = None):
        payload = orjson.dumps({"ts": ts, "speed": speed})
        self.clock.now = received_at if received_at is not None else ts
        self.pipeline.handle(f"vehicles/{vehicle}/speed", payload, self.clock.now)

    def checkpoint(self) -> None:
        """What durability's checkpoint does with the book: save the changed vehicles."""
        rows = self.book.take_dirty()
        self.store.save([row.stored() for row in rows], wal_generation=1)
        self.book.saved(rows, ok=True)

    def on(self, topic: str) -> list[dict]:
        return [orjson.loads(body) for t, body, _q, _r in self.sent if t == topic]


@pytest.fixture
def harness(tmp_path):
    return Harness(tmp_path)


def test_reading_becomes_kinematics_and_retained_state(harness):
    """An accepted reading is published on /kinematics (not retained) and /state (retained)."""
    harness.send("truck-7", T0, 10.0)
    harness.send("truck-7", T0 + 1.0, 12.0)
    kinematics = harness.on("vehicles/truck-7/kinematics")
    assert [k["ts"] for k in kinematics] == [T0, T0 + 1.0]
    assert kinematics[-1]["vehicle_id"] == "truck-7"
    assert kinematics[-1]["distance_m"] == pytest.approx(11.0)  # trapezoid of 10 and 12 m/s
    retained = [(t, r) for t, _b, _q, r in harness.sent if t.endswith("/state")]
    assert retained and all(r for _t, r in retained)
    assert not any(r for t, _b, _q, r in harness.sent if t.endswith("/kinematics"))
    assert harness.metrics.readings["accepted"] == 2


def test_bad_topic_is_dead_lettered_with_reason(harness):
    """A message on a topic that is not {prefix}/{id}/speed goes to the dead-letter topic."""
    harness.pipeline.handle("vehicles/bad id!/speed", b"12", T0)
    [letter] = harness.on("kinestream/deadletter")
    assert letter["reason"] == "invalid_vehicle_id"
    assert letter["topic"] == "vehicles/bad id!/speed"
    assert letter["payload"] == "12"
    assert letter["received_at"] == T0
    assert "bad id!" in letter["message"]
    assert harness.metrics.dead_letters["invalid_vehicle_id"] == 1


def test_binary_payload_is_dead_lettered_base64(harness):
    """A payload that is not UTF-8 is carried as payload_b64 in the dead letter."""
    harness.pipeline.handle("vehicles/a/speed", b"\xff\xfe\x00", T0)
    [letter] = harness.on("kinestream/deadletter")
    assert letter["payload_b64"] == "//4A"
    assert "payload" not in letter
    assert letter["reason"] == "malformed_payload"


def test_duplicate_is_counted_not_dead_lettered(harness):
    """A redelivered reading (same ts) changes nothing and is only counted."""
    harness.send("a", T0, 5.0)
    harness.send("a", T0 + 1, 6.0)
    harness.send("a", T0 + 1, 6.0)
    assert harness.metrics.readings["duplicate"] == 1
    assert harness.on("kinestream/deadletter") == []
    assert len(harness.on("vehicles/a/kinematics")) == 2


def test_redelivered_old_reading_is_a_duplicate_not_a_dead_letter(harness):
    """A reading the broker redelivers (DUP) after more readings than the duplicate memory
    holds is counted as a duplicate; the same reading without DUP is dead-lettered as late."""
    for i in range(40):
        harness.send("a", T0 + i, 5.0)
    old = orjson.dumps({"ts": T0 + 1, "speed": 5.0})
    harness.pipeline.handle("vehicles/a/speed", old, T0 + 40, redelivered=True)
    assert harness.metrics.readings["duplicate"] == 1
    assert harness.on("kinestream/deadletter") == []
    harness.pipeline.handle("vehicles/a/speed", old, T0 + 40)
    assert [d["reason"] for d in harness.on("kinestream/deadletter")] == ["late"]


def test_reading_from_the_future_is_rejected(harness):
    """A timestamp more than max_future_s after the receive time is dead-lettered."""
    harness.send("a", T0 + 11.0, 5.0, received_at=T0)
    [letter] = harness.on("kinestream/deadletter")
    assert letter["reason"] == "timestamp_in_future"
    assert harness.on("vehicles/a/kinematics") == []


def test_old_event_times_are_fine(harness):
    """Replays of old logs are a main use: a year-old timestamp is accepted."""
    harness.send("a", T0 - 365 * 86400.0, 5.0, received_at=T0)
    assert len(harness.on("vehicles/a/kinematics")) == 1


def test_retained_state_is_throttled_to_one_per_interval(harness):
    """Readings 0.1 s apart publish state at most once per second, and the latest at the end."""
    for i in range(5):
        harness.send("a", T0 + 0.1 * i, 5.0)
    states = harness.on("vehicles/a/state")
    assert [s["ts"] for s in states] == [T0]
    harness.pipeline.flush_state(T0 + 1.0)
    states = harness.on("vehicles/a/state")
    assert [s["ts"] for s in states] == [T0, T0 + 0.4]


def test_tick_closes_the_trip_of_a_silent_vehicle(harness):
    """With no more readings, ticks advance event time and the open trip is published."""
    for i in range(10):
        harness.send("a", T0 + i, 10.0)
    assert harness.on("vehicles/a/trips") == []
    harness.pipeline.tick(T0 + 9 + 60.0)
    assert harness.on("vehicles/a/trips") == []  # a 60 s gap is not over max_gap_s yet
    harness.pipeline.tick(T0 + 9 + 200.0)
    [trip] = harness.on("vehicles/a/trips")
    assert trip["vehicle_id"] == "a"
    assert trip["distance_m"] == pytest.approx(90.0)


def test_idle_vehicles_are_not_ticked(harness):
    """Vehicles with nothing pending (next_deadline None) are never handed to Fleet.tick."""
    harness.send("parked", T0, 0.0)
    ticked = []

    class Spy:
        def __getattr__(self, name):
            return getattr(harness.fleet, name)

        def tick(self, vehicle_id, now_ts):
            ticked.append(vehicle_id)
            return harness.fleet.tick(vehicle_id, now_ts)

    harness.pipeline.fleet = Spy()
    harness.pipeline.tick(T0 + 1000.0)
    assert ticked == []


def test_evicted_vehicle_resumes_its_odometer(tmp_path):
    """Beyond max_vehicles the oldest is evicted; its next reading continues its distance."""
    h = Harness(tmp_path, max_vehicles=2)
    h.send("a", T0, 10.0)
    h.send("a", T0 + 1, 10.0)
    h.send("b", T0 + 2, 10.0)
    h.send("c", T0 + 3, 10.0)  # evicts a
    assert "a" not in h.book.arrived
    assert h.book.evictions == 1
    h.send("a", T0 + 4, 10.0)
    assert h.on("vehicles/a/kinematics")[-1]["distance_m"] == pytest.approx(40.0)


def test_evicted_state_survives_a_checkpoint_round_trip(tmp_path):
    """An evicted vehicle saved by a checkpoint resumes from the store in a new book."""
    h = Harness(tmp_path, max_vehicles=1)
    h.send("a", T0, 10.0)
    h.send("a", T0 + 1, 10.0)
    h.send("b", T0 + 2, 10.0)  # evicts a
    h.checkpoint()
    fresh = Harness(tmp_path, max_vehicles=10)
    fresh.send("a", T0 + 2, 10.0)
    assert fresh.on("vehicles/a/kinematics")[-1]["distance_m"] == pytest.approx(20.0)


def test_dead_letter_body_survives_surrogates():
    """Even a topic with lone surrogates yields valid JSON for the dead letter."""
    body = orjson.loads(dead_letter_body("a/\udcff", b"x", "invalid_topic", "m", 1.0))
    assert body["reason"] == "invalid_topic"


def test_reorder_bound_releases_in_order_and_ticks_flush_the_rest(tmp_path):
    """With a reorder bound, out-of-order readings come out in event-time order; a silent
    vehicle's held readings are released by ticks (its clock keeps running on wall time)."""
    h = Harness(tmp_path, reorder_bound_s=2.0)
    for ts in (T0, T0 + 2, T0 + 1, T0 + 3):
        h.send("a", ts, 10.0, received_at=T0 + 3)
    released = [k["ts"] for k in h.on("vehicles/a/kinematics")]
    assert released == sorted(released)
    assert len(released) < 4  # the newest are still held
    h.pipeline.tick(T0 + 3 + 5.0)  # 5 s of silence: event time passes every held reading
    assert [k["ts"] for k in h.on("vehicles/a/kinematics")] == [T0, T0 + 1, T0 + 2, T0 + 3]


optional_float = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@given(
    st.builds(
        Kinematics,
        vehicle_id=st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
        ts=st.floats(allow_nan=False),
        speed_mps=st.floats(allow_nan=False),
        acceleration_mps2=optional_float,
        acceleration_sigma_mps2=optional_float,
        jerk_mps3=optional_float,
        distance_m=st.floats(allow_nan=False),
        trip_id=st.none() | st.text(max_size=10),
        trip_distance_m=optional_float,
        flags=st.lists(st.sampled_from(["clamped", "receive_time", "bridged_gap"])).map(tuple),
    )
)
def test_fast_kinematics_json_equals_the_dataclass_serialisation(record):
    """The hand-listed fields serialise exactly like orjson's dataclass support (all fields,
    same order), so a field added to Kinematics cannot silently go missing."""
    assert kinematics_json(record) == orjson.dumps(record)


def test_vehicle_checkpointed_after_eviction_resumes_from_the_store(tmp_path):
    """Evicted, then written by a checkpoint, then back: the same book finds it in the store."""
    h = Harness(tmp_path, max_vehicles=1)
    h.send("a", T0, 10.0)
    h.send("a", T0 + 1, 10.0)
    h.send("b", T0 + 2, 10.0)  # evicts a
    h.checkpoint()
    assert not h.book.evicted and not h.book.saving
    h.send("a", T0 + 3, 10.0)  # evicts b, resumes a from SQLite
    assert h.on("vehicles/a/kinematics")[-1]["distance_m"] == pytest.approx(30.0)


def _message(vehicle: str, ts: float, speed: float) -> tuple[str, bytes, int, bool]:
    return (f"vehicles/{vehicle}/speed", orjson.dumps({"ts": ts, "speed": speed}), 0, False)


def test_a_batch_gives_what_its_messages_give_one_by_one(tmp_path):
    """One socket read's messages through ``handle_batch``: the same outputs, in the same
    order, and the same counters as the messages handled one at a time (a mix of the common
    case, a first contact, a bad topic, a malformed payload, an array and a duplicate)."""
    messages = [_message(v, T0 + i, 10.0 + i) for i in range(3) for v in ("a", "b")]
    messages[3:3] = [
        ("vehicles/a/speed", b"{not json", 0, False),
        ("elsewhere/a/speed", b"1", 0, False),
        (
            "vehicles/c/speed",
            orjson.dumps([{"ts": T0, "speed": 1.0}, {"ts": T0 + 1, "speed": 2.0}]),
            0,
            False,
        ),
        _message("b", T0, 10.0),  # a duplicate
    ]
    one_by_one, batched = Harness(tmp_path / "one"), Harness(tmp_path / "batch")
    for topic, payload, _qos, redelivered in messages:
        one_by_one.pipeline.handle(topic, payload, T0 + 5, redelivered)
    batched.clock.now = T0 + 5
    batched.pipeline.handle_batch(messages, T0 + 5)
    assert batched.sent == one_by_one.sent
    for name in ("readings", "published", "dead_letters"):
        assert getattr(batched.metrics, name) == getattr(one_by_one.metrics, name)
    assert batched.metrics.messages_received == len(messages)
    assert batched.metrics.latency.counts == one_by_one.metrics.latency.counts


class _FailingFleet:
    """The harness's fleet, but ``update_sample`` for vehicle "a" hits a bug."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def __getattr__(self, name: str):
        return getattr(self._fleet, name)

    def update_sample(self, vehicle_id: str, *args):
        if vehicle_id == "a":
            raise RuntimeError("bug")
        return self._fleet.update_sample(vehicle_id, *args)


def test_an_internal_error_on_one_message_spares_the_rest_of_the_batch(harness):
    """A bug hit by one message is logged; the other messages of the read are processed."""
    harness.pipeline.handle_batch([_message("a", T0, 1.0), _message("b", T0, 1.0)], T0)
    harness.pipeline.fleet = _FailingFleet(harness.fleet)
    harness.pipeline.handle_batch([_message("a", T0 + 1, 2.0), _message("b", T0 + 1, 2.0)], T0 + 1)
    assert [k["ts"] for k in harness.on("vehicles/b/kinematics")] == [T0, T0 + 1]
    assert [k["ts"] for k in harness.on("vehicles/a/kinematics")] == [T0]


def test_tables_are_compacted_after_evicting_a_large_share(tmp_path):
    """Evicting a quarter of the residents (here 1 100 of 2 000, within one socket read's batch)
    rebuilds the book's and the fleet's per-vehicle tables at the size their live entries
    need, in place (the pipeline holds them through the batch), nothing lost."""
    h = Harness(tmp_path, max_vehicles=2_000)
    book = h.book
    arrived = book.arrived
    h.pipeline.handle_batch([_message(f"a{i}", T0, 10.0) for i in range(2_000)], T0)
    h.pipeline.handle_batch([_message(f"b{i}", T0 + 1, 10.0) for i in range(1_100)], T0 + 1)
    for _ in range(6):  # one table per eviction pass; nothing is idle here
        assert book.evict_idle(T0 + 1) == 0
    tables = [
        h.fleet.trackers_table(),
        book.arrived,
        book.latest_ts,
        book.last_kinematics,
    ]
    for table in tables:
        assert len(table) == 2_000
        assert sys.getsizeof(table) == sys.getsizeof(dict(table))
    assert book.arrived is arrived
    assert book.evictions == 1_100
    assert arrived["b1099"] == T0 + 1 and "a0" not in arrived
    assert h.on("vehicles/b1099/kinematics")[-1]["speed_mps"] == pytest.approx(10.0)


def test_maybe_stored_never_forgets_an_id():
    """The store filter: every id added is "maybe" (a "no" skips the SQLite lookup)."""
    ids = [f"vehicle-{i}" for i in range(20_000)]
    maybe = MaybeStored(ids[:10_000])
    maybe.update(ids[10_000:])
    assert all(vehicle_id in maybe for vehicle_id in ids)
    never_stored = [f"other-{i}" for i in range(20_000)]
    assert sum(vehicle_id in maybe for vehicle_id in never_stored) < 1_000


def test_topic_cache_keeps_residents_when_strangers_fill_it(tmp_path, monkeypatch):
    """Past its limit the topic cache drops only non-residents' topics: clearing it all made
    a fleet larger than the cache miss on every message."""
    monkeypatch.setattr(pipeline_module, "VEHICLE_ID_CACHE_HEADROOM", 5)
    h = Harness(tmp_path, max_vehicles=10)
    residents = [f"v{i}" for i in range(10)]
    for vehicle in residents:
        h.send(vehicle, T0, 10.0)
    for i in range(20):  # valid topics, payloads rejected: never residents
        h.pipeline.handle(f"vehicles/w{i}/speed", b"not json", T0)
    cache = h.pipeline._vehicle_ids
    assert len(cache) <= 10 + 5
    assert {f"vehicles/{v}/speed" for v in residents} <= cache.keys()
    assert h.metrics.dead_letters["malformed_payload"] == 20
