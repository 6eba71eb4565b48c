"""The MQTT link: the only module that knows the client library (gmqtt, chosen in issue #4).

What it guarantees to the service:

- MQTT 5, persistent session (no clean start, a session expiry), subscription at QoS 1, and a
  Receive Maximum so the broker's in-flight window is ours to choose.
- Acknowledgement only after the handler says the message is durable. The handler is
  synchronous and returns ``None`` (nothing to wait for) or a future that completes once the
  message is in the write-ahead log; the PUBACK goes out only then.
- A lean hot path (benchmarks/RESULTS.md measured each step): PUBLISH packets are parsed
  straight from the socket's reads (``PublishReader``) and handed to the handler a whole read
  at a time; QoS 1 deliveries are acknowledged a whole write-ahead-log batch in one write,
  without gmqtt's task-per-message ``async on_message`` (its ``optimistic_acknowledgement=False``
  mode); QoS 0 outputs are encoded here and written once per event-loop pass instead of one
  ``send`` per ``publish``. All of it uses gmqtt internals (checked for each connection, with
  gmqtt's own receive path and then its documented ``async on_message`` as the fallbacks),
  which is why it lives in this one module.
- Reconnect forever with exponential backoff and full jitter (gmqtt's own reconnect uses a
  fixed delay, so it is replaced), resubscribing each time; ``{service}/status`` is published
  retained ``online`` once the broker acknowledges the subscription, with a retained
  ``offline`` will.
- Publishing never raises: while the broker is away, outputs wait in a bounded backlog and go
  out after the reconnect (the oldest are dropped and counted beyond the bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import gmqtt
from gmqtt.mqtt.handler import MQTTConnectError

from kinestream.config import MqttSettings

log = logging.getLogger(__name__)

# A received PUBLISH: (topic, payload, qos, redelivered); ``redelivered``: the broker set DUP
# (it may have sent this message before).
Message = tuple[str, bytes, int, bool]
# handler(messages) -> None or an awaitable "durable" signal covering all of them. The messages
# of one socket read come in one call, in the order received.
MessageHandler = Callable[[list[Message]], Awaitable[object] | None]
CONNECT_TIMEOUT_S = 5.0
CONNECTING = "while connecting"
BACKLOG_LIMIT = 100_000
SUCCESS = 0
PUBLISH_QOS0 = 0x30
PUBLISH_RETAIN = 0x01
_PUBLISH = 0x30  # packet type PUBLISH, in the high nibble of the first byte
_QOS2_BIT = 0x04
_QOS1_BIT = 0x02
_DUP_BIT = 0x08
PUBACK_SUCCESS = b"\x40\x02"  # remaining length 2: success, no properties (MQTT 5 3.4.2.1)
_MID = struct.Struct("!H")
# First byte, a two-byte remaining length, the topic's length: a PUBLISH's first five bytes.
_HEADER_2 = struct.Struct("!BBBH")


def _remaining_length(length: int) -> bytes:
    """MQTT variable byte integer."""
    if length < 128:
        return bytes((length,))
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | 0x80 if length else digit)
        if not length:
            return bytes(out)


def _topic_text(topic: str | bytes) -> str:
    """gmqtt passes the topic as bytes when it is not UTF-8: decode it with replacements."""
    return topic if type(topic) is str else bytes(topic).decode("utf-8", "replace")


class PublishReader:
    """The receive fast path: PUBLISH packets parsed straight from the socket's reads.

    gmqtt hands every read to an asyncio ``StreamReader``, a read-loop task parses it into
    packet objects, and a dispatcher parses each PUBLISH's MQTT 5 properties (~7 µs per message
    before our handler runs, benchmarks/RESULTS.md section 8). Installed as the protocol's
    ``data_received`` before CONNECT goes out, this sees the stream from its first byte:
    complete QoS 0 and 1 PUBLISH packets go to ``deliver(messages, packet_ids)``, one call per
    read; every other packet (CONNACK, SUBACK, PUBACK, PINGRESP, DISCONNECT, QoS 2, a PUBLISH
    without a topic name) goes to gmqtt's own ``data_received`` unchanged, once per read. A
    packet split across reads waits for its rest.

    MQTT 5 properties are skipped, not parsed: the only one that changes how a message reads
    is a topic alias, which a server may only send to a client that allowed it (MQTT 5,
    3.3.2.3.4); this client allows none (and an alias-only PUBLISH has no topic name, so it
    goes to gmqtt).
    """

    __slots__ = ("_broken", "_deliver", "_forward", "_is_mqtt5", "_on_read", "_rest")

    def __init__(
        self,
        deliver: Callable[[list[Message], list[int]], None],
        forward: Callable[[bytes], None],
        is_mqtt5: Callable[[], bool],
        on_read: Callable[[], bool] = lambda: True,
    ) -> None:
        """``on_read()`` runs once per read; False means "not our connection any more": the
        read then goes to gmqtt as it is (which drops what a superseded connection sends)."""
        self._deliver = deliver
        self._forward = forward
        self._is_mqtt5 = is_mqtt5
        self._on_read = on_read
        self._rest = b""  # the start of a packet whose end has not arrived yet
        self._broken = False  # a malformed length: everything goes to gmqtt from here on

    def data_received(self, data: bytes) -> None:  # noqa: PLR0912, PLR0915 (one pass per read)
        if not self._on_read() or self._broken:
            self._forward(data)
            return
        if self._rest:
            data = self._rest + data
        end = len(data)
        position = 0
        messages: list[Message] = []
        packet_ids: list[int] = []
        others: list[bytes] = []
        mqtt5 = self._is_mqtt5()
        while position + 1 < end:
            first = data[position]
            length = data[position + 1]
            start = position + 2
            if length > 127:
                length, start = _read_length(data, position + 1, end)
                if start == _MALFORMED:  # not MQTT: gmqtt gets the stream from here on
                    log.error("malformed MQTT packet length from the broker; leaving it to gmqtt")
                    self._broken = True
                    others.append(data[position:])
                    position = end
                    break
                if start < 0:
                    break  # the length itself is incomplete
            stop = start + length
            if stop > end:
                break
            if first & 0xF0 == _PUBLISH and not first & _QOS2_BIT and length > 2:
                topic_end = start + 2 + ((data[start] << 8) | data[start + 1])
                body = topic_end + 2 if first & _QOS1_BIT else topic_end
                if mqtt5 and body < stop:  # skip the properties (a variable integer length)
                    size = data[body]
                    if size < 128:
                        body += 1 + size
                    else:
                        size, body = _read_length(data, body, stop)
                        body = stop + 1 if body < 0 else body + size
                elif mqtt5:
                    body = stop + 1  # no property length at all: malformed, gmqtt says so
                if topic_end > start + 2 and body <= stop:
                    # Not UTF-8: replacement characters (the pipeline dead-letters the topic).
                    topic = data[start + 2 : topic_end].decode("utf-8", "replace")
                    if first & _QOS1_BIT:
                        packet_ids.append((data[topic_end] << 8) | data[topic_end + 1])
                    messages.append(
                        (topic, data[body:stop], (first >> 1) & 3, first & _DUP_BIT != 0)
                    )
                    position = stop
                    continue
            others.append(data[position:stop])
            position = stop
        self._rest = data[position:] if position < end else b""
        if others:
            self._forward(b"".join(others))
        if messages:
            try:
                self._deliver(messages, packet_ids)
            except Exception:  # as gmqtt's dispatcher does: log, keep the connection
                log.exception("error handling %d received messages", len(messages))


_INCOMPLETE = -1
_MALFORMED = -2


def _read_length(data: bytes, position: int, end: int) -> tuple[int, int]:
    """The variable byte integer at ``position``: (value, position after it), or (0, -1) when
    it continues past ``end``, (0, -2) when it is longer than four bytes."""
    value = 0
    for index in range(4):
        if position + index >= end:
            return 0, _INCOMPLETE
        byte = data[position + index]
        value |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return value, position + index + 1
    return 0, _MALFORMED


class _Qos0Writer:
    """QoS 0 PUBLISH packets encoded here and written once per event-loop pass.

    gmqtt's ``publish`` builds each packet through a generic factory and writes it at once
    (one ``send`` system call per output message); this halves the cost of a bare echo.
    A long pass (a backlog read after a stall: up to 256 KB, thousands of readings) writes
    every ``FLUSH_BYTES`` as it goes, so its first outputs do not wait for its last.
    """

    FLUSH_BYTES = 65_536  # ~250 kinematics messages, ~5 ms of work at 20 us per reading

    def __init__(self, protocol: Any, mqtt5: bool) -> None:
        self._protocol = protocol
        self._properties = b"\x00" if mqtt5 else b""
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._loop = asyncio.get_running_loop()

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        """Queue one packet as parts (header, topic, properties, payload): ``flush`` joins
        them all at once instead of concatenating each packet."""
        topic_bytes = topic.encode()
        size = len(topic_bytes)
        properties = self._properties
        length = 2 + size + len(properties) + len(payload)
        first = PUBLISH_QOS0 | PUBLISH_RETAIN if retain else PUBLISH_QOS0
        pending = self._pending
        if not pending:
            self._loop.call_soon(self.flush)
        if 128 <= length < 16384:  # a kinematics record: a two-byte remaining length
            header = _HEADER_2.pack(first, (length & 0x7F) | 0x80, length >> 7, size)
        else:
            header = bytes((first,)) + _remaining_length(length) + _MID.pack(size)
        pending += (header, topic_bytes, properties, payload)
        self._pending_bytes += len(header) + length
        if self._pending_bytes >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            self._protocol.write_data(data)


class _Client(gmqtt.Client):
    """gmqtt client whose automatic reconnect only tells the link (which owns the backoff),
    and which shows the link each new connection before anything is sent on it."""

    lost_callback: Callable[[], None] = staticmethod(lambda: None)
    acked_callback: Callable[[], None] = staticmethod(lambda: None)
    created_callback: Callable[[Any], None] = staticmethod(lambda _connection: None)

    async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super()._create_connection(*args, **kwargs)
        self.created_callback(connection)
        return connection

    def _remove_message_from_queue(self, mid: int) -> None:
        # gmqtt calls this on each PUBACK for our QoS 1 publishes: a window slot is free.
        super()._remove_message_from_queue(mid)
        self.acked_callback()

    async def reconnect(self, delay: bool = False) -> None:
        self.lost_callback()


def backoff_delays(initial_s: float, maximum_s: float, rng: random.Random) -> Iterator[float]:
    """Exponential backoff with jitter: uniform(initial/2, min(max, initial * 2**n)), n = 0, 1...

    The jitter spreads the reconnects of many daemons after a broker restart."""
    ceiling = initial_s
    while True:
        yield rng.uniform(initial_s / 2, ceiling)
        ceiling = min(maximum_s, ceiling * 2)


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    if settings.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MqttLink:
    """Connect, subscribe, receive with durable acknowledgement, publish; survive broker loss."""

    def __init__(
        self,
        settings: MqttSettings,
        handler: MessageHandler,
        on_connection_change: Callable[[bool], None] = lambda _up: None,
    ) -> None:
        self.settings = settings
        self.subscription = f"{settings.topic_prefix}/+/speed"
        self.status_topic = f"{settings.service_prefix}/status"
        self._handler = handler
        self._on_connection_change = on_connection_change
        self._client = self._make_client()
        self._connected = False
        self._stopping = False
        self._lost = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._subscribe_mid: int | None = None
        self._backlog: deque[tuple[str, bytes, int, bool]] = deque(maxlen=BACKLOG_LIMIT)
        self.backlog_dropped = 0
        self.status_published = 0
        self._rng = random.Random()
        self._writer: _Qos0Writer | None = None
        self._flush_scheduled = False
        self._version = gmqtt.constants.MQTTv50  # 3.1.1 once a broker refuses 5
        self._mqtt5 = True  # of the current connection: PUBLISH packets carry properties
        # WAL batch future -> (the connection its messages came on, their packet ids)
        self._ack_batches: dict[asyncio.Future[object], tuple[object, list[int]]] = {}
        self.lean = self._install_lean_receive(self._client)
        self.fast_reads = False  # of the current connection: PublishReader parses its reads

    def _make_client(self) -> _Client:
        s = self.settings
        will = gmqtt.Message(self.status_topic, b"offline", qos=1, retain=True)
        client = _Client(
            s.client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            will_message=will,
            session_expiry_interval=s.session_expiry_s,
            receive_maximum=s.receive_maximum,
        )
        client.lost_callback = self._connection_lost
        client.acked_callback = self._window_freed
        client.created_callback = self._connection_created
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if s.username is not None:
            client.set_auth_credentials(s.username, s.password_value())
        return client

    # Receiving --------------------------------------------------------------------------
    def _connection_created(self, connection: Any) -> None:
        """Parse this connection's reads ourselves (``PublishReader``) if gmqtt's internals
        are as expected; otherwise gmqtt's receive path with the handler override below."""
        protocol = getattr(connection, "_protocol", None)
        state = getattr(protocol, "_connection_state", None)
        handler = self._client._package_handler
        expected = (
            self.lean
            and callable(getattr(protocol, "data_received", None))
            and hasattr(state, "protocol_version")
            and hasattr(connection, "_last_data_in")
            and hasattr(handler, "current_connection")
        )
        self.fast_reads = bool(expected)
        if not expected:
            log.warning("gmqtt internals not as expected: receiving through gmqtt's read loop")
            return
        mqtt5 = gmqtt.constants.MQTTv50

        def on_read() -> bool:
            connection._last_data_in = time.monotonic()  # gmqtt's keepalive watches this
            return handler.current_connection is connection

        reader = PublishReader(
            lambda messages, packet_ids: self._deliver(messages, packet_ids, connection),
            protocol.data_received,
            lambda: state.protocol_version >= mqtt5,
            on_read,
        )
        protocol.data_received = reader.data_received

    def _install_lean_receive(self, client: _Client) -> bool:
        """Take over QoS 1 deliveries from gmqtt's handler (no task per message): used when a
        connection's reads go through gmqtt (``fast_reads`` False, or packets gmqtt parsed
        before handing over)."""
        handler = client._package_handler
        if not hasattr(handler, "_handle_qos_1_publish_packet"):
            log.warning("gmqtt without the expected packet handler: using async on_message")
            return False
        handler._handle_qos_1_publish_packet = self._on_qos1
        client.on_message = self._on_qos0  # a plain function: gmqtt calls it without a task
        if hasattr(handler, "_handle_publish_packet"):
            self._gmqtt_publish_packet = handler._handle_publish_packet
            handler._handle_publish_packet = self._on_publish_packet
        return True

    def _on_publish_packet(self, command: int, packet: bytes) -> None:
        """Parse a PUBLISH gmqtt framed (at a third of its parser's cost) and deliver it.

        Properties are skipped as in ``PublishReader``; QoS 2 and alias-only topics (empty)
        still go to gmqtt's parser.
        """
        qos = (command >> 1) & 0x03
        topic_end = 2 + ((packet[0] << 8) | packet[1])
        if qos == 2 or topic_end == 2:
            self._gmqtt_publish_packet(command, packet)
            return
        topic = packet[2:topic_end].decode("utf-8", "replace")
        position = topic_end + 2 if qos else topic_end
        if self._mqtt5:
            length, shift = 0, 0
            while True:  # the property length, a variable byte integer
                byte = packet[position]
                position += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            position += length
        message = (topic, packet[position:], qos, bool(command & 0x08))
        if qos:
            mid = (packet[topic_end] << 8) | packet[topic_end + 1]
            self._deliver([message], [mid], self._client._connection)
        else:
            self._deliver([message], [], self._client._connection)

    def _on_qos0(
        self, _client: object, topic: str | bytes, payload: bytes, qos: int, _properties: object
    ) -> int:
        # QoS 0 is never a redelivery
        self._deliver([(_topic_text(topic), payload, qos, False)], [], self._client._connection)
        return SUCCESS

    def _on_qos1(
        self, mid: int, payload: bytes, topic: str | bytes, properties: dict[str, Any]
    ) -> None:
        message = (_topic_text(topic), payload, 1, bool(properties.get("dup")))
        self._deliver([message], [mid], self._client._connection)

    def _deliver(self, messages: list[Message], packet_ids: list[int], connection: Any) -> None:
        """Hand messages to the handler; acknowledge the QoS 1 ones once it says durable."""
        durable = self._handler(messages)
        if not packet_ids:
            return
        if durable is None:
            connection.send_package(b"".join(PUBACK_SUCCESS + _MID.pack(m) for m in packet_ids))
            return
        batch = self._ack_batches.get(durable)
        if batch is None:
            batch = self._ack_batches[durable] = (connection, [])
            durable.add_done_callback(self._acknowledge)
        batch[1].extend(packet_ids)

    def _acknowledge(self, durable: asyncio.Future[object]) -> None:
        """The batch is in the log: one write with all its PUBACKs (never if it failed)."""
        connection, mids = self._ack_batches.pop(durable)
        if durable.cancelled() or durable.exception() is not None:
            return  # not logged: the broker redelivers after the next reconnect
        if connection is not self._client._connection or connection.is_closing():
            return  # the broker redelivers these on the new connection; they are acked there
        connection.send_package(b"".join(PUBACK_SUCCESS + _MID.pack(mid) for mid in mids))

    async def _on_message(
        self,
        _client: object,
        topic: str | bytes,
        payload: bytes,
        qos: int,
        properties: dict[str, Any],
    ) -> int:
        message = (_topic_text(topic), payload, qos, bool(properties.get("dup")))
        durable = self._handler([message])
        if durable is not None:
            await durable  # the PUBACK goes out after this returns
        return SUCCESS

    def _on_subscribe(self, _client: object, mid: int, _qos: object, _properties: object) -> None:
        if mid == self._subscribe_mid:
            self._subscribed.set()

    # Connection supervision -------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    async def connect_forever(self) -> None:
        """Connect (retrying with backoff), subscribe, announce online; returns when ready."""
        delays = backoff_delays(
            self.settings.reconnect_initial_s, self.settings.reconnect_max_s, self._rng
        )
        while not self._stopping:
            try:
                await self._connect_once()
                return
            except (OSError, MQTTConnectError, TimeoutError) as error:
                delay = next(delays)
                log.warning(
                    "broker %s:%s unavailable (%s); retrying in %.1f s",
                    self.settings.host,
                    self.settings.port,
                    error or type(error).__name__,
                    delay,
                )
                await self._close_quietly()
                await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        s = self.settings
        self._lost.clear()
        self._subscribed.clear()
        tls = tls_context(s) or False
        connecting = self._client.connect(
            s.host, s.port, ssl=tls, keepalive=s.keepalive_s, version=self._version
        )
        await self._until_lost(connecting, CONNECTING)
        mqtt5 = self._client._connection_state.protocol_version >= gmqtt.constants.MQTTv50
        if not mqtt5 and not self.lean:
            log.error("the broker refused MQTT 5: gmqtt acknowledges before the log is written")
        connection = self._client._connection
        self._writer = _Qos0Writer(connection._protocol, mqtt5) if self.lean else None
        self._mqtt5 = mqtt5
        self._subscribe_mid = self._client.subscribe(self.subscription, qos=1)
        await self._until_lost(self._subscribed.wait(), "while subscribing")
        self._lost.clear()  # stale signals from refused attempts
        if not self._client.is_connected:
            raise OSError("connection lost right after subscribing")
        self._connected = True
        self._on_connection_change(True)
        self._client.publish(self.status_topic, b"online", qos=1, retain=True)
        self.status_published += 1
        self.flush_backlog()
        log.info("connected to %s:%s, subscribed to %s", s.host, s.port, self.subscription)

    async def _until_lost(self, step: Awaitable[object], what: str) -> None:
        """Await a connection step, but give up at once when gmqtt reports the connection
        lost (a refused CONNACK or protocol downgrade never completes ``connect``)."""
        step_task = asyncio.ensure_future(step)
        lost_task = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {step_task, lost_task}, timeout=CONNECT_TIMEOUT_S, return_when="FIRST_COMPLETED"
            )
        finally:
            for task in (step_task, lost_task):
                task.cancel()
        if step_task in done:
            step_task.result()  # raises a connect error
            return
        if what == CONNECTING:
            self._try_other_version()
        reason = "connection lost" if lost_task in done else f"no answer in {CONNECT_TIMEOUT_S} s"
        raise OSError(f"{reason} {what}")

    def _try_other_version(self) -> None:
        """A broker that refuses MQTT 5 (CONNACK 1) or does not answer it at all (amqtt, the
        embedded fallback) gets MQTT 3.1.1 on the next attempt, and the other way round.
        Crash safety holds under both: this module sends the PUBACKs itself."""
        v5, v311 = gmqtt.constants.MQTTv50, gmqtt.constants.MQTTv311
        self._version = v311 if self._version == v5 else v5
        if self._version == v311:
            log.warning("no MQTT 5 session from the broker; trying MQTT 3.1.1")

    def _connection_lost(self) -> None:
        if self._stopping:
            return
        if self._connected:
            log.warning("lost the broker connection; reconnecting")
            self._connected = False
            self._on_connection_change(False)
        self._lost.set()

    async def connect_and_supervise(self) -> None:
        await self.connect_forever()
        await self.supervise()

    async def supervise(self) -> None:
        """Reconnect after every loss, forever (until ``close``)."""
        while not self._stopping:
            await self._lost.wait()
            if self._stopping:
                return
            await self._close_quietly()
            await self.connect_forever()

    async def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._client._disconnect()

    # Publishing -------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Send now, or keep for after the reconnect; True when it went out now."""
        if self._connected and not self._backlog:
            if qos == 0 and self._writer is not None:
                self._writer.publish(topic, payload, retain)
                return True
            try:
                self._client.publish(topic, payload, qos=qos, retain=retain)
                return True
            except OverflowError:  # QoS 1 window full (broker's max in-flight): retry later
                pass
        if len(self._backlog) == self._backlog.maxlen:
            self.backlog_dropped += 1
        # A copy of exactly its size: orjson's bytes keep a 4 KB buffer each, and up to
        # BACKLOG_LIMIT of them wait here (measured: recovering 300 000 logged messages
        # before connecting held +597 MB, +215 MB with the copy).
        self._backlog.append((topic, bytes(memoryview(payload)), qos, retain))
        return False

    def _window_freed(self) -> None:
        """QoS 1 outputs wait in the backlog while the broker's window is full: resume."""
        if self._backlog and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_backlog)

    def flush_backlog(self) -> None:
        self._flush_scheduled = False
        while self._backlog and self._connected:
            topic, payload, qos, retain = self._backlog[0]
            try:
                self._client.publish(topic, payload, qos=qos, retain=retain)
            except OverflowError:
                return
            self._backlog.popleft()

    @property
    def backlog_size(self) -> int:
        return len(self._backlog)

    async def close(self) -> None:
        """Publish ``offline`` (retained), disconnect cleanly (no will), stop reconnecting."""
        self._stopping = True
        self._lost.set()
        if self._connected:
            self.flush_backlog()
            if self._writer is not None:
                self._writer.flush()
            self._client.publish(self.status_topic, b"offline", qos=1, retain=True)
            self.status_published += 1
            self._connected = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.disconnect(), 2.0)
        else:
            await self._close_quietly()


# --- A plain client for the tools: record, replay, demo ----------------------------------


def quiet_mqtt_library_logs() -> None:
    """For the CLI tools: gmqtt logs each connection at INFO and a protocol downgrade (MQTT 5
    refused by a 3.1.1 broker) as a warning; only its errors are worth a user's screen."""
    logging.getLogger("gmqtt").setLevel(logging.ERROR)


def parse_broker_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` -> (host, port, tls, user,
    password). Raises ValueError naming the URL."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker URL {url!r} is not mqtt://host[:port] or mqtts://host[:port]")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ValueError(f"broker URL {url!r} has an invalid port") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, parts.scheme == "mqtts", user, password


class _AckingClient(gmqtt.Client):
    """gmqtt client that reports each PUBACK (gmqtt itself only drops the stored message)."""

    acknowledged: Callable[[int], None] = staticmethod(lambda _mid: None)
    lost: Callable[[], None] = staticmethod(lambda: None)

    def publish_mid(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Like ``publish``, but returns the packet id (gmqtt's ``publish`` drops it)."""
        mid, package = self._connection.publish(
            gmqtt.Message(topic, payload, qos=qos, retain=retain)
        )
        if qos > 0:
            self._persistent_storage.push_message(mid, package)
        return int(mid or 0)

    def _remove_message_from_queue(self, mid: int) -> None:
        super()._remove_message_from_queue(mid)
        self.acknowledged(mid)

    async def reconnect(self, delay: bool = False) -> None:
        # gmqtt calls this when the connection drops. The tools fail fast instead: a replay
        # that cannot say which messages the broker has is better stopped with exit 1.
        self.lost()


class ToolClient:
    """Clean-session MQTT client for ``record``, ``replay`` and ``demo``.

    ``await publish(..., qos=1)`` returns once the broker acknowledged the message; when the
    broker's in-flight window (its Receive Maximum) is full it waits for a free slot. Received
    messages go to ``on_message(topic, payload, retain)``, a plain function that runs before
    the PUBACK is sent, so a recorder that writes there loses nothing it acknowledged.
    A lost connection fails every waiting publish (and later ones) with ConnectionError:
    no reconnect, so the caller can report exactly how far it got.
    """

    def __init__(
        self,
        url: str,
        client_id: str | None = None,
        on_message: Callable[[str, bytes, bool], None] | None = None,
    ) -> None:
        self.host, self.port, self.tls, username, password = parse_broker_url(url)
        self.url = url
        self._on_message_callback = on_message
        self._client = _AckingClient(
            client_id, clean_session=True, optimistic_acknowledgement=False
        )
        self._client.acknowledged = self._acknowledged
        self._client.lost = self._connection_lost
        self._lost_error: ConnectionError | None = None
        self.lost = asyncio.Event()  # set when the connection drops
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        if username is not None:
            self._client.set_auth_credentials(username, password)
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        # The broker's in-flight window (its Receive Maximum), learnt from the first refusal,
        # so later publishes wait for a slot instead of building packets that cannot go out.
        self._window: int | None = None
        self._subacks: dict[int, asyncio.Future[None]] = {}

    async def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect or raise ConnectionError naming the broker."""
        context = ssl.create_default_context() if self.tls else False
        # MQTT 3.1.1: the tools need nothing from 5, and every broker speaks it, the embedded
        # amqtt included (gmqtt's downgrade from 5 costs a reconnect delay of several seconds).
        connecting = self._client.connect(
            self.host, self.port, ssl=context, version=gmqtt.constants.MQTTv311
        )
        try:
            await asyncio.wait_for(connecting, timeout_s)
        except (OSError, TimeoutError, MQTTConnectError) as error:
            raise ConnectionError(
                f"cannot connect to broker {self.url}: {error or 'timeout'}"
            ) from error

    async def subscribe(
        self, *filters: str, qos: int = 1, timeout_s: float = CONNECT_TIMEOUT_S
    ) -> None:
        """Subscribe and wait for the SUBACK; PermissionError when the broker refuses."""
        subscriptions = [gmqtt.Subscription(f, qos=qos) for f in filters]
        mid = self._client.subscribe(subscriptions)
        done = asyncio.get_running_loop().create_future()
        self._subacks[mid] = done
        await asyncio.wait_for(done, timeout_s)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish; at QoS 1 return only once the broker acknowledged it."""
        if self._lost_error is not None:
            raise self._lost_error
        if qos == 0:
            self._client.publish(topic, payload, qos=0, retain=retain)
            return
        while True:
            if self._window is None or len(self._acks) < self._window:
                try:
                    mid = self._client.publish_mid(topic, payload, qos, retain)
                    break
                except OverflowError:  # every packet id of the broker's window is in flight
                    self._window = max(1, len(self._acks))
            slot = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(slot)
            await slot
        acknowledged = asyncio.get_running_loop().create_future()
        self._acks[mid] = acknowledged
        await acknowledged

    def _acknowledged(self, mid: int) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)
        while self._slot_waiters:  # one packet id came free: wake one waiting publisher
            slot = self._slot_waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                break

    def _connection_lost(self) -> None:
        if self._lost_error is not None:
            return
        self._lost_error = ConnectionError(f"lost the connection to broker {self.url}")
        self.lost.set()
        waiting = [*self._acks.values(), *self._slot_waiters, *self._subacks.values()]
        self._acks.clear()
        self._slot_waiters.clear()
        self._subacks.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(self._lost_error)

    async def _on_message(
        self, _client: object, topic: str, payload: bytes, _qos: int, properties: dict[str, Any]
    ) -> int:
        if self._on_message_callback is not None:
            retain = bool(properties.get("retain", 0)) if isinstance(properties, dict) else False
            self._on_message_callback(topic, payload, retain)
        return SUCCESS

    def _on_subscribe(
        self, _client: object, mid: int, granted: object, _properties: object
    ) -> None:
        future = self._subacks.pop(mid, None)
        if future is None or future.done():
            return
        codes = granted if isinstance(granted, list | tuple) else [granted]
        if any(isinstance(code, int) and code >= 0x80 for code in codes):
            future.set_exception(PermissionError(f"broker {self.url} refused the subscription"))
        else:
            future.set_result(None)

    async def disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.disconnect(), 2.0)

    async def __aenter__(self) -> ToolClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()
