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


async def receive(
    broker, client_id: str, durable_done: bool, wait_s: float = 3.0, fast_reads: bool = True
):
    """Connect a link whose durability signal completes or never does; collect payloads.

    ``fast_reads`` False: the link never sees the connection, so gmqtt's read loop parses."""
    received: list[bytes] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def handler(messages):
        received.extend((payload, redelivered) for _topic, payload, _qos, redelivered in messages)
        return None if durable_done else never

    link = MqttLink(settings_for(broker, client_id), handler)
    if not fast_reads:
        link._client.created_callback = lambda _connection: None
    await asyncio.wait_for(link.connect_forever(), 15)
    assert link.fast_reads is fast_reads
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


# --- PublishReader: the receive fast path, fed bytes directly ---------------------------


def _length(value: int) -> bytes:
    from kinestream.io.mqtt import _remaining_length

    return _remaining_length(value)


def publish_bytes(
    topic: bytes,
    payload: bytes,
    qos: int = 0,
    packet_id: int = 0,
    dup: bool = False,
    properties: bytes | None = b"",
) -> bytes:
    """A PUBLISH as a broker sends it; ``properties`` None: MQTT 3.1.1 (no property block)."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += packet_id.to_bytes(2, "big")
    if properties is not None:
        body += _length(len(properties)) + properties
    body += payload
    first = 0x30 | (qos << 1) | (0x08 if dup else 0)
    return bytes((first,)) + _length(len(body)) + body


class Collected:
    """What a PublishReader delivers and what it hands on to gmqtt."""

    def __init__(self, mqtt5: bool = True) -> None:
        from kinestream.io.mqtt import PublishReader

        self.messages: list[tuple[str, bytes, int, bool]] = []
        self.packet_ids: list[int] = []
        self.forwarded = bytearray()
        self.reader = PublishReader(self._deliver, self.forwarded.extend, lambda: mqtt5)

    def _deliver(self, messages, packet_ids) -> None:
        self.messages.extend(messages)
        self.packet_ids.extend(packet_ids)


SUBACK = b"\x90\x04\x00\x01\x00\x01"
PINGRESP = b"\xd0\x00"
PUBACK_FROM_BROKER = b"\x40\x03\x00\x07\x00"
# User property ("k", "v" * 200): a property block longer than 127 bytes (two-byte length).
LONG_PROPERTIES = b"\x26\x00\x01k\x00\xc8" + b"v" * 200
MIXED_STREAM = b"".join(
    (
        SUBACK,
        publish_bytes(b"vehicles/a/speed", b'{"speed":1}'),
        publish_bytes(b"vehicles/b/speed", b"2", qos=1, packet_id=258, dup=True),
        PINGRESP,
        publish_bytes(b"vehicles/c/speed", b"3" * 300, properties=LONG_PROPERTIES),
        publish_bytes(b"vehicles/\xff/speed", b"4", qos=1, packet_id=9),
        PUBACK_FROM_BROKER,
        publish_bytes(b"vehicles/d/speed", b""),
    )
)
MIXED_MESSAGES = [
    ("vehicles/a/speed", b'{"speed":1}', 0, False),
    ("vehicles/b/speed", b"2", 1, True),
    ("vehicles/c/speed", b"3" * 300, 0, False),
    ("vehicles/\ufffd/speed", b"4", 1, False),
    ("vehicles/d/speed", b"", 0, False),
]
MIXED_OTHERS = SUBACK + PINGRESP + PUBACK_FROM_BROKER


def test_reader_delivers_every_publish_of_a_read_and_forwards_the_rest():
    """One read with several packets: PUBLISHes (QoS 0, QoS 1 with DUP, MQTT 5 properties
    longer than 127 bytes, a non-UTF-8 topic, an empty payload) are delivered in order with
    their packet ids; SUBACK, PINGRESP and PUBACK go to gmqtt byte for byte, in one call."""
    got = Collected()
    calls: list[bytes] = []
    forward = got.reader._forward
    got.reader._forward = lambda data: (calls.append(data), forward(data))
    got.reader.data_received(MIXED_STREAM)
    assert got.messages == MIXED_MESSAGES
    assert got.packet_ids == [258, 9]
    assert calls == [MIXED_OTHERS]


@pytest.mark.parametrize("split", range(1, len(MIXED_STREAM)))
def test_reader_joins_packets_split_across_reads_at_any_byte(split):
    """TCP may cut the stream anywhere, inside a length, a topic or a property block: the
    result is the same as one read."""
    got = Collected()
    got.reader.data_received(MIXED_STREAM[:split])
    got.reader.data_received(MIXED_STREAM[split:])
    assert got.messages == MIXED_MESSAGES
    assert got.packet_ids == [258, 9]
    assert bytes(got.forwarded) == MIXED_OTHERS


def test_reader_takes_the_stream_a_byte_at_a_time():
    got = Collected()
    for index in range(len(MIXED_STREAM)):
        got.reader.data_received(MIXED_STREAM[index : index + 1])
    assert got.messages == MIXED_MESSAGES
    assert bytes(got.forwarded) == MIXED_OTHERS


def test_reader_under_mqtt_311_has_no_property_block():
    """After a downgrade to MQTT 3.1.1 the payload follows the topic (and packet id) at once."""
    got = Collected(mqtt5=False)
    got.reader.data_received(
        publish_bytes(b"vehicles/a/speed", b"\x00x", properties=None)
        + publish_bytes(b"vehicles/b/speed", b"y", qos=1, packet_id=3, properties=None)
    )
    assert got.messages == [
        ("vehicles/a/speed", b"\x00x", 0, False),
        ("vehicles/b/speed", b"y", 1, False),
    ]
    assert got.packet_ids == [3]


def test_reader_leaves_what_it_does_not_handle_to_gmqtt():
    """QoS 2, a topic-alias-only PUBLISH (empty topic name) and a PUBLISH whose property
    block overruns the packet are gmqtt's to handle (or refuse), unchanged."""
    qos2 = publish_bytes(b"vehicles/a/speed", b"1", qos=2, packet_id=5)
    alias_only = publish_bytes(b"", b"2", properties=b"\x23\x00\x01")
    overrun = b"\x30\x06\x00\x01t\x09ab"  # property length 9, only 2 bytes left
    got = Collected()
    got.reader.data_received(qos2 + alias_only + overrun)
    assert got.messages == []
    assert bytes(got.forwarded) == qos2 + alias_only + overrun


def test_reader_hands_a_malformed_length_and_all_after_it_to_gmqtt():
    """A remaining length of five bytes is not MQTT: from there on gmqtt gets the stream."""
    good = publish_bytes(b"vehicles/a/speed", b"1")
    bad = b"\x30\xff\xff\xff\xff\x01"
    got = Collected()
    got.reader.data_received(good + bad + good)
    got.reader.data_received(good)
    assert got.messages == [("vehicles/a/speed", b"1", 0, False)]
    assert bytes(got.forwarded) == bad + good + good


def test_reader_forwards_everything_once_the_connection_is_superseded():
    """on_read() False (gmqtt moved to a new connection): nothing is delivered from this one."""
    from kinestream.io.mqtt import PublishReader

    delivered: list[object] = []
    forwarded = bytearray()
    reader = PublishReader(
        lambda m, p: delivered.append(m), forwarded.extend, lambda: True, lambda: False
    )
    reader.data_received(MIXED_STREAM)
    assert delivered == []
    assert bytes(forwarded) == MIXED_STREAM


@pytest.mark.parametrize("fast_reads", [True, False])
def test_both_receive_paths_deliver_and_acknowledge(broker_factory, fast_reads):
    """With PublishReader (fast_reads) and without it (gmqtt's read loop, as when its
    internals are not as expected), QoS 1 messages arrive once, with DUP on a redelivery,
    and are acknowledged only when durable."""
    broker = broker_factory(max_queued_messages=0)
    name = f"paths-{fast_reads}"

    async def scenario():
        await receive(broker, name, durable_done=True, wait_s=0.5, fast_reads=fast_reads)
        for i in range(3):
            publish_one(broker, "vehicles/a/speed", str(i).encode())
        first = await receive(broker, name, durable_done=False, fast_reads=fast_reads)
        second = await receive(broker, name, durable_done=True, fast_reads=fast_reads)
        third = await receive(broker, name, durable_done=True, wait_s=1.0, fast_reads=fast_reads)
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert [payload for payload, _dup in first] == [b"0", b"1", b"2"]
    assert second == [(b"0", True), (b"1", True), (b"2", True)]
    assert third == []


class WrittenData:
    """Stands in for gmqtt's protocol: records each write the QoS 0 writer makes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write_data(self, data: bytes) -> None:
        self.writes.append(data)


def test_qos0_writer_sends_a_long_pass_as_it_goes():
    """One event-loop pass publishing far more than FLUSH_BYTES (a backlog after a stall)
    writes as it goes, so its first outputs do not wait for its last; every packet goes out
    once, in order, and what is left goes at the end of the pass."""
    from kinestream.io.mqtt import _Qos0Writer

    payloads = [b"%05d" % i + b"x" * 200 for i in range(1000)]

    async def one_pass() -> tuple[list[bytes], list[bytes]]:
        protocol = WrittenData()
        writer = _Qos0Writer(protocol, mqtt5=True)
        for payload in payloads:
            writer.publish("vehicles/v1/kinematics", payload, False)
        during_the_pass = list(protocol.writes)
        await asyncio.sleep(0)  # the pass ends: the scheduled flush runs
        return during_the_pass, protocol.writes

    during_the_pass, writes = asyncio.run(one_pass())
    assert len(during_the_pass) >= 3
    assert all(len(data) < _Qos0Writer.FLUSH_BYTES + 300 for data in during_the_pass)
    got = Collected()
    got.reader.data_received(b"".join(writes))
    assert [message[1] for message in got.messages] == payloads


def test_reader_survives_a_failing_handler(caplog):
    """An exception from the handler is logged (as gmqtt's dispatcher does) instead of
    escaping into the transport, which would drop the connection; later reads go on."""
    from kinestream.io.mqtt import PublishReader

    calls: list[int] = []

    def deliver(messages, _packet_ids):
        calls.append(len(messages))
        if len(calls) == 1:
            raise RuntimeError("bug")

    reader = PublishReader(deliver, lambda _data: None, lambda: True)
    reader.data_received(publish_bytes(b"vehicles/a/speed", b"1"))
    reader.data_received(publish_bytes(b"vehicles/a/speed", b"2"))
    assert calls == [1, 1]
    assert "error handling 1 received messages" in caplog.text
