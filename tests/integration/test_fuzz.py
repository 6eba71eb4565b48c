"""Fuzzing: hostile payloads through the broker and hostile topics at the adapter.

The daemon must stay up, and every message must be accounted for: it yields kinematics or a
dead letter, and the dead-letter counter agrees with the dead letters published.
"""

from __future__ import annotations

import itertools
import json
import re
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinestream.core.fleet import Fleet
from kinestream.core.params import TrackerParams
from kinestream.core.records import RejectReason
from kinestream.core.units import SpeedUnit
from kinestream.io.metrics import Metrics
from kinestream.io.state_store import StateStore
from kinestream.pipeline import Pipeline
from kinestream.vehicles import VehicleBook
from tests.integration.helpers import Daemon, Observer, publish_reliably, wait_online, wait_until

pytestmark = pytest.mark.integration
NOW = time.time()
REASONS = {reason.value for reason in RejectReason}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
timestamps = st.one_of(
    st.floats(min_value=NOW - 1e6, max_value=NOW),
    st.floats(min_value=NOW, max_value=NOW + 1e4),  # some in the future
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=0, max_value=2**63),  # milliseconds, ancient, huge
    st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", "", "1e400"]),
    st.none(),
)
speeds = st.one_of(
    st.floats(min_value=-5, max_value=150),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["12", "", "fast", True, None, [], {}]),
)
units = st.one_of(st.sampled_from([u.value for u in SpeedUnit]), st.text(max_size=6))
speed_objects = st.fixed_dictionaries(
    {"speed": speeds}, optional={"ts": timestamps, "unit": units, "extra": json_values}
)


def _dump(value: object) -> bytes:
    # json (not orjson): it also writes NaN/Infinity tokens, which are not JSON.
    return json.dumps(value, allow_nan=True).encode()


payloads = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=40).map(str.encode),
    json_values.map(_dump),
    speeds.map(_dump),
    speed_objects.map(_dump),
    st.lists(speed_objects, max_size=5).map(_dump),
    st.lists(json_values, min_size=1, max_size=3).map(_dump),
)


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    """One broker (unlimited queue), one daemon and one observer for the whole module."""
    from kinestream.io.broker import BrokerOptions, start_private_broker
    from tests.brokers import preferred_broker

    broker = start_private_broker(BrokerOptions(max_queued_messages=0), prefer=preferred_broker())
    observer = Observer(broker, ["vehicles/+/kinematics", "kinestream/#"])
    daemon = Daemon(broker, tmp_path_factory.mktemp("fuzz") / "state", client_id="fuzz")
    daemon.start()
    try:
        wait_online(observer)
        yield broker, daemon, observer
    finally:
        daemon.kill()
        observer.close()
        broker.close()


_serial = itertools.count()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(payloads, min_size=1, max_size=80))
def test_hostile_payloads_through_the_broker(fuzz_target, batch):
    """Every fuzzed payload yields kinematics or a dead letter naming a reason of the closed
    set; the daemon stays up."""
    broker, daemon, observer = fuzz_target
    messages = [(f"vehicles/fz{next(_serial)}/speed", payload) for payload in batch]
    publish_reliably(broker, messages)
    topics = {topic for topic, _ in messages}

    def accounted() -> set[str]:
        done = {f"vehicles/{k['vehicle_id']}/speed" for k in observer.on("/kinematics")}
        done |= {letter["topic"] for letter in observer.on("kinestream/deadletter")}
        return topics - done

    wait_until(lambda: not accounted(), "an outcome for every fuzzed message")
    assert daemon.alive(), daemon.log()[-2000:]
    for letter in observer.on("kinestream/deadletter"):
        assert letter["reason"] in REASONS
        assert ("payload" in letter) != ("payload_b64" in letter)


def test_dead_letter_counter_matches_published_dead_letters(fuzz_target):
    """After the fuzzing, the counter by reason equals the dead letters seen on the topic."""
    _broker, daemon, observer = fuzz_target
    publish_reliably(_broker, [("vehicles/fz-final/speed", b"not json")])
    wait_until(
        lambda: any(d["topic"] == "vehicles/fz-final/speed" for d in observer.on("deadletter")),
        "the final dead letter",
    )
    seen: dict[str, int] = {}
    for letter in observer.on("kinestream/deadletter"):
        seen[letter["reason"]] = seen.get(letter["reason"], 0) + 1
    text = daemon.scrape()
    counted = {
        match[1]: int(float(match[2]))
        for match in re.finditer(r'kinestream_dead_letters_total\{reason="(\w+)"\} (\S+)', text)
    }
    assert {r: n for r, n in counted.items() if n} == seen
    assert daemon.alive()


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    fleet = Fleet(TrackerParams())
    store = StateStore(tmp_path_factory.mktemp("adapter"))
    book = VehicleBook(fleet, store, max_vehicles=10_000, idle_evict_s=3600.0)
    sent: list[tuple[str, bytes]] = []
    pipeline = Pipeline(
        fleet,
        book,
        lambda topic, body, _qos, _retain: sent.append((topic, body)),
        Metrics(),
        topic_prefix="vehicles",
        service_prefix="kinestream",
        default_unit=SpeedUnit.METRES_PER_SECOND,
        max_future_s=10.0,
        max_payload_bytes=65536,
    )
    return pipeline, sent


topics = st.one_of(
    st.text(max_size=60),
    st.builds(
        "vehicles/{}/speed".format,
        st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=140),
    ),
    st.builds("{}/{}/{}".format, st.text(max_size=10), st.text(max_size=10), st.text(max_size=10)),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics, payload=st.one_of(st.just(b"12.5"), payloads))
def test_hostile_topics_at_the_adapter(adapter, topic, payload):
    """Any topic text: the pipeline never raises; a topic that is not {prefix}/{id}/speed
    with a valid id is dead-lettered as invalid_topic or invalid_vehicle_id."""
    pipeline, sent = adapter
    sent.clear()
    duplicates_before = pipeline.metrics.readings["duplicate"]
    pipeline.handle(topic, payload, NOW)
    valid = re.fullmatch(r"vehicles/[A-Za-z0-9_-]{1,128}/speed", topic) is not None
    letters = [orjson.loads(body) for t, body in sent if t == "kinestream/deadletter"]
    if not valid:
        assert [letter["reason"] for letter in letters] in (
            ["invalid_topic"],
            ["invalid_vehicle_id"],
        )
    else:  # a repeated bare number (ts = receive time) is a duplicate: counted, no output
        duplicates = pipeline.metrics.readings["duplicate"] - duplicates_before
        assert sent or duplicates, "a valid topic yields kinematics, a dead letter or a count"
