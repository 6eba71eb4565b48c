"""The MQTT link: acknowledgement waits for durability, backoff, TLS, publishing offline."""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from kinestream.config import load_settings
from kinestream.io.mqtt import MqttLink, backoff_delays, tls_context


def settings_for(broker, client_id: str, **mqtt_overrides):
    values = {"broker": broker.url, "client_id": client_id, **mqtt_overrides}
    return load_settings(overrides={"mqtt": values}).mqtt


def test_backoff_grows_to_the_cap_with_jitter():
    """Delays double up to the maximum, each drawn with jitter below its ceiling."""
    delays = backoff_delays(0.5, 8.0, random.Random(1))
    drawn = [next(delays) for _ in range(12)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(12)]
    assert all(0.25 <= d <= c for d, c in zip(drawn, ceilings, strict=True))
    assert max(drawn[6:]) > 4.0  # reaches the high range once capped
    assert len(set(drawn)) == len(drawn)  # jittered, not a fixed schedule


def test_plain_mqtt_has_no_tls_and_mqtts_verifies_by_default():
    """mqtt:// uses no TLS; mqtts:// verifies the server unless tls_insecure."""
    plain = load_settings(overrides={"mqtt": {"broker": "mqtt://h"}}).mqtt
    assert tls_context(plain) is None
    secure = tls_context(load_settings(overrides={"mqtt": {"broker": "mqtts://h"}}).mqtt)
    assert secure is not None
    assert secure.verify_mode == ssl.CERT_REQUIRED and secure.check_hostname
    insecure = load_settings(overrides={"mqtt": {"broker": "mqtts://h", "tls_insecure": True}})
    assert tls_context(insecure.mqtt).verify_mode == ssl.CERT_NONE


class Watcher:
    """A paho subscriber that collects payloads; subscribed (SUBACK seen) once constructed."""

    def __init__(self, broker, topic_filter: str) -> None:
        self.seen: list[bytes] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda _c, _u, m: self.seen.append(m.payload)
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic_filter, 1)
        assert subscribed.wait(5), "no SUBACK within 5 s"

    async def received(self, count: int, timeout_s: float) -> None:
        """Return once ``count`` payloads arrived or after ``timeout_s`` (the test compares)."""
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish_one(broker, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


async def receive(broker, client_id: str, durable_done: bool, wait_s: float = 3.0):
    """Connect a link whose durability signal completes or never does; collect payloads."""
    received: list[bytes] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def handler(_topic: str, payload: bytes, qos: int, redelivered: bool):
        received.append((payload, redelivered))
        return None if durable_done else never

    link = MqttLink(settings_for(broker, client_id), handler)
    await asyncio.wait_for(link.connect_forever(), 15)
    deadline = time.monotonic() + wait_s
    while not received and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let a PUBACK, if any, reach the broker
    # Vanish without DISCONNECT, like a killed process.
    link._stopping = True
    link._client._connection._transport.abort()
    never.cancel()
    return received


def test_no_puback_until_durable_so_the_broker_redelivers(broker_factory):
    """A QoS 1 message whose durability never completes is not acknowledged: the next
    session with the same client id gets it again. Once acknowledged, it is not redelivered."""
    broker = broker_factory(max_queued_messages=0)

    async def scenario():
        # Create the persistent session and subscription first.
        await receive(broker, "ack-test", durable_done=True, wait_s=0.5)
        publish_one(broker, "vehicles/a/speed", b"1")
        first = await receive(broker, "ack-test", durable_done=False)
        second = await receive(broker, "ack-test", durable_done=True)
        third = await receive(broker, "ack-test", durable_done=True, wait_s=1.5)
        return first, second, third

    first, second, third = asyncio.run(scenario())
    # (Mosquitto also sets DUP on a message queued while we were away, first delivery or not.)
    assert [payload for payload, _dup in first] == [b"1"]
    assert second == [(b"1", True)]  # redelivered (DUP): the first session never acked it
    assert third == []  # acknowledged by the second session


def test_publish_while_disconnected_waits_in_the_backlog(mqtt_broker):
    """Outputs produced while the broker is away are kept and sent after connecting."""

    async def scenario():
        link = MqttLink(settings_for(mqtt_broker, "backlog-test"), lambda *_: None)
        assert link.publish("out/x", b"early") is False
        assert link.backlog_size == 1
        watcher = Watcher(mqtt_broker, "out/x")
        await asyncio.wait_for(link.connect_forever(), 15)
        await watcher.received(1, timeout_s=5)
        await link.close()
        watcher.close()
        return watcher.seen, link.backlog_size

    seen, left = asyncio.run(scenario())
    assert seen == [b"early"]
    assert left == 0


def test_status_is_online_then_offline_retained(mqtt_broker):
    """{service}/status is retained `online` after the subscription, `offline` after close."""

    async def scenario():
        link = MqttLink(
            settings_for(mqtt_broker, "status-test", service_prefix="svc-status"),
            lambda *_: None,
        )
        await asyncio.wait_for(link.connect_forever(), 15)
        online = retained(mqtt_broker, "svc-status/status")
        await link.close()
        await asyncio.sleep(0.3)
        return online, retained(mqtt_broker, "svc-status/status")

    online, offline = asyncio.run(scenario())
    assert (online, offline) == (b"online", b"offline")


def retained(broker, topic: str) -> bytes | None:
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, m: got.append(m.payload)
    client.connect(broker.host, broker.port)
    client.subscribe(topic, 1)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return got[0] if got else None


@pytest.mark.parametrize("scheme", ["mqtt"])
def test_unreachable_broker_keeps_retrying(scheme):
    """With no broker listening, connect_forever keeps retrying instead of raising."""
    from kinestream.io.broker import free_port

    settings = load_settings(
        overrides={
            "mqtt": {
                "broker": f"{scheme}://127.0.0.1:{free_port()}",
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.1,
            }
        }
    ).mqtt

    async def scenario():
        link = MqttLink(settings, lambda *_: None)
        task = asyncio.ensure_future(link.connect_forever())
        await asyncio.sleep(0.5)
        alive = not task.done()
        link._stopping = True
        await asyncio.wait_for(task, 5)
        return alive

    assert asyncio.run(scenario()) is True


@pytest.mark.parametrize("length", [0, 1, 127, 128, 16383, 16384, 2_097_151, 2_097_152])
def test_remaining_length_matches_the_mqtt_variable_byte_integer(length):
    """Our hand-encoded PUBLISH header uses the same length encoding as gmqtt's packer."""
    from gmqtt.mqtt.utils import pack_variable_byte_integer

    from kinestream.io.mqtt import _remaining_length

    assert _remaining_length(length) == bytes(pack_variable_byte_integer(length))


def test_large_outputs_round_trip_through_the_broker(mqtt_broker):
    """A QoS 0 output above 127 and 16383 bytes (multi-byte lengths) arrives intact, retained
    flag included."""

    watcher = Watcher(mqtt_broker, "out/large/#")

    async def scenario():
        link = MqttLink(settings_for(mqtt_broker, "large-test"), lambda *_: None)
        await asyncio.wait_for(link.connect_forever(), 15)
        link.publish("out/large/a", b"a" * 200, 0, False)
        link.publish("out/large/b", b"b" * 20000, 0, True)
        await watcher.received(2, timeout_s=5)
        await link.close()

    try:
        asyncio.run(scenario())
    finally:
        watcher.close()
    assert watcher.seen == [b"a" * 200, b"b" * 20000]
    assert retained(mqtt_broker, "out/large/b") == b"b" * 20000


def test_qos1_outputs_beyond_the_broker_window_all_arrive(broker_factory):
    """With output QoS 1 and the broker's default window of 20, a burst of 500 outputs waits
    for PUBACKs instead of failing, and every one arrives in order."""
    broker = broker_factory(max_queued_messages=0)
    watcher = Watcher(broker, "out/q1")

    async def scenario():
        link = MqttLink(settings_for(broker, "window-test", output_qos=1), lambda *_: None)
        await asyncio.wait_for(link.connect_forever(), 15)
        for i in range(500):
            link.publish("out/q1", str(i).encode(), 1, False)
        await watcher.received(500, timeout_s=10)
        await link.close()

    try:
        asyncio.run(scenario())
    finally:
        watcher.close()
    assert watcher.seen == [str(i).encode() for i in range(500)]


def test_a_topic_gmqtt_passes_as_bytes_becomes_text_with_replacements():
    """gmqtt hands over a non-UTF-8 topic as bytes; the handler gets text (U+FFFD for the bad
    byte), and a str topic passes through as it is."""
    from kinestream.io.mqtt import _topic_text

    assert _topic_text(b"vehicles/\xff/speed") == "vehicles/\ufffd/speed"
    assert _topic_text("vehicles/a/speed") == "vehicles/a/speed"
