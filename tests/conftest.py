"""Shared fixtures: private MQTT brokers for integration tests (never the shared 1883).

`mqtt_broker` is one broker for the whole session; `broker_factory` makes brokers of a test's
own (restart and kill tests, special limits), all killed when the test ends. Every test that
uses either is marked `integration` automatically. Mosquitto is used when its binary exists;
otherwise the embedded amqtt broker. `KINESTREAM_TEST_BROKER=embedded` forces the fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from kinestream.io.broker import BrokerOptions, PrivateBroker, start_private_broker
from tests.brokers import preferred_broker

BROKER_FIXTURES = frozenset({"mqtt_broker", "broker_factory", "own_mqtt_broker"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[PrivateBroker]:
    """A private broker shared by the session: `.url`, `.host`, `.port`."""
    broker = start_private_broker(prefer=preferred_broker())
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def broker_factory() -> Iterator[Callable[..., PrivateBroker]]:
    """Call with BrokerOptions fields (persistence=True, max_queued_messages=...) for a broker
    of the test's own; each is stopped and its directory removed at the end of the test."""
    started: list[PrivateBroker] = []

    def make(**fields: object) -> PrivateBroker:
        broker = start_private_broker(BrokerOptions(**fields), prefer=preferred_broker())
        started.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in started:
            broker.close()


@pytest.fixture
def own_mqtt_broker(broker_factory: Callable[..., PrivateBroker]) -> PrivateBroker:
    """A function-scoped broker with persistence and an unlimited queue, for restart tests."""
    return broker_factory(persistence=True, max_queued_messages=0)
