"""Private brokers: ready when started, loopback only, restartable, never left running."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as paho
import pytest

from kinestream.io.broker import (
    BrokerError,
    BrokerOptions,
    EmbeddedBroker,
    MosquittoBroker,
    PrivateBroker,
    free_port,
    mqtt_handshake_ok,
)
from tests.brokers import requires_mosquitto


class Probe:
    """A paho client that records what arrives on its subscriptions."""

    def __init__(self, broker: PrivateBroker, client_id: str | None = None, clean: bool = True):
        self.received: list[tuple[str, bytes]] = []
        self.arrived = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
            clean_session=clean,
        )
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        self.received.append((message.topic, message.payload))
        self.arrived.set()

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_args: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(5), "no SUBACK within 5 s"

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def assert_delivers(broker: PrivateBroker, topic_filter: str, topic: str, payload: bytes) -> None:
    """One QoS 1 message from a second client reaches a subscriber of topic_filter unchanged."""
    subscriber, publisher = Probe(broker), Probe(broker)
    try:
        subscriber.subscribe(topic_filter)
        publisher.publish(topic, payload)
        assert subscriber.arrived.wait(5)
        assert subscriber.received == [(topic, payload)]
    finally:
        subscriber.close()
        publisher.close()


def test_session_broker_delivers_qos1_messages(mqtt_broker):
    """A message published through the session broker reaches a subscriber unchanged."""
    assert_delivers(
        mqtt_broker, "test-broker/+/speed", "test-broker/truck-7/speed", b'{"speed": 12.5}'
    )


def test_session_broker_is_on_a_private_loopback_port(mqtt_broker):
    """The broker listens on 127.0.0.1 on a port of its own, never the shared 1883."""
    assert mqtt_broker.host == "127.0.0.1"
    assert mqtt_broker.port != 1883
    assert mqtt_broker.url == f"mqtt://127.0.0.1:{mqtt_broker.port}"


def test_mosquitto_config_binds_loopback_with_the_given_limits(tmp_path):
    """The generated config listens on 127.0.0.1 only and carries persistence and limits."""
    options = BrokerOptions(
        port=18999, persistence=True, max_inflight_messages=100, max_queued_messages=0
    )
    broker = MosquittoBroker(options, workdir=str(tmp_path), binary="/nonexistent/mosquitto")
    lines = broker.config_text().splitlines()
    assert "listener 18999 127.0.0.1" in lines
    assert "allow_anonymous true" in lines
    assert "max_inflight_messages 100" in lines
    assert "max_queued_messages 0" in lines
    assert "persistence true" in lines
    assert f"persistence_location {tmp_path}/" in lines


def test_mosquitto_config_keeps_broker_defaults_when_unset(tmp_path):
    """Without options the config sets no limits and no persistence (Mosquitto's defaults)."""
    broker = MosquittoBroker(workdir=str(tmp_path), binary="/nonexistent/mosquitto")
    text = broker.config_text()
    assert "max_inflight_messages" not in text
    assert "max_queued_messages" not in text
    assert "persistence" not in text


def test_a_broker_that_exits_at_once_raises_with_its_exit_code(tmp_path):
    """A binary that dies on start gives a BrokerError naming the exit code, no process left."""
    broker = MosquittoBroker(workdir=str(tmp_path), binary="/bin/false")
    with pytest.raises(BrokerError, match="exited with code 1"):
        broker.start(timeout_s=5)
    assert not broker.is_running()
    assert broker.pid is None


def test_stop_ends_the_process_and_closes_the_port(broker_factory):
    """After `stop` the child has exited and the port no longer answers MQTT."""
    broker = broker_factory()
    process = broker._process
    broker.stop()
    assert process is not None and process.poll() is not None
    assert not mqtt_handshake_ok(broker.host, broker.port, timeout_s=0.5)


def test_handshake_fails_on_a_port_nobody_serves():
    """The readiness probe says no when nothing listens."""
    assert not mqtt_handshake_ok("127.0.0.1", free_port(), timeout_s=0.5)


@requires_mosquitto
def test_restart_keeps_the_port_and_persisted_queued_messages(broker_factory):
    """With persistence, a message queued for an offline persistent session survives a broker
    restart on the same port and is delivered when the subscriber comes back."""
    broker = broker_factory(persistence=True)
    port = broker.port
    subscriber = Probe(broker, client_id="restart-subscriber", clean=False)
    subscriber.subscribe("restart/#")
    subscriber.close()
    publisher = Probe(broker)
    publisher.publish("restart/x", b"queued while away")
    publisher.close()

    broker.restart()

    assert broker.port == port
    returning = Probe(broker, client_id="restart-subscriber", clean=False)
    try:
        assert returning.arrived.wait(5)
        assert returning.received == [("restart/x", b"queued while away")]
    finally:
        returning.close()


def test_embedded_broker_delivers_and_restarts_on_the_same_port():
    """The amqtt fallback serves MQTT, stops, and starts again on the same port."""
    with EmbeddedBroker() as broker:
        port = broker.port
        broker.restart()
        assert broker.port == port
        assert_delivers(broker, "embedded/#", "embedded/a", b"1")
    assert not broker.is_running()


def test_without_mosquitto_or_amqtt_the_error_says_what_to_install(monkeypatch):
    """No binary and no amqtt: a BrokerError naming both ways out, nothing started."""
    import importlib.util

    from kinestream.io import broker as broker_module

    monkeypatch.setattr(broker_module, "find_mosquitto", lambda: None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "amqtt" else real_find_spec(name, *a),
    )
    expected = r"apt-get install mosquitto.*pip install 'kinestream\[demo\]'"
    with pytest.raises(BrokerError, match=expected):
        broker_module.start_private_broker()
