"""The bare echo: the least a Python MQTT client can do per reading (receive it, publish one
message back), with no decoding or processing. Its throughput is the ceiling any daemon on
the same client can reach, so kinestream's figures are reported as ratios to it.

    python benchmarks/echo.py --client gmqtt --port P --qos-in 1 --qos-out 0 [--uvloop]

Clients: gmqtt (default optimistic acknowledgement: PUBACK before the handler runs),
gmqtt-ackafter (PUBACK after the handler returns, the mode a crash-safe daemon needs),
gmqtt-lean (QoS 0 out encoded by hand and written once per event-loop pass),
gmqtt-fastrx (gmqtt-lean plus PUBLISH parsed straight from data_received),
raw (no client library at all: the floor of an asyncio echo),
paho (its own network loop, one thread), aiomqtt (asyncio wrapper around paho).
Prints READY once the subscription is acknowledged; runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from benchlib import (
    TOPIC_PREFIX,
    connect_packet,
    puback_packet,
    publish_packet,
    split_packets,
    subscribe_packet,
)

IN_FILTER = f"{TOPIC_PREFIX}/+/speed"
SUFFIX_IN = "speed"
SUFFIX_OUT = "kinematics"
# gmqtt-lean only: hold outputs this long to coalesce writes (0: flush at the end of the pass).
FLUSH_DELAY_S = float(os.environ.get("ECHO_FLUSH_DELAY_S", "0"))


def out_topic(topic: str) -> str:
    return topic[: -len(SUFFIX_IN)] + SUFFIX_OUT


def ready() -> None:
    print("READY", flush=True)


async def run_gmqtt(port: int, qos_in: int, qos_out: int, ack_after: bool) -> None:
    import gmqtt

    client = gmqtt.Client("bench-echo", optimistic_acknowledgement=not ack_after)
    subscribed = asyncio.Event()

    def on_message(client, topic, payload, qos, properties):
        client.publish(out_topic(topic), payload, qos=qos_out)
        return 0

    async def on_message_async(client, topic, payload, qos, properties):
        # gmqtt sends the PUBACK only after this coroutine returns its reason code.
        client.publish(out_topic(topic), payload, qos=qos_out)
        return 0

    client.on_message = on_message_async if ack_after else on_message
    client.on_subscribe = lambda *args: subscribed.set()
    await client.connect("127.0.0.1", port)
    client.subscribe(IN_FILTER, qos=qos_in)
    await subscribed.wait()
    ready()
    await asyncio.Event().wait()


class BatchedWriter:
    """QoS 0 PUBLISH packets encoded here and written once per event-loop pass.

    gmqtt's publish builds each packet through its generic (properties-aware) factory and
    calls transport.write per message, one send() syscall each; this is what a daemon could
    do instead for its QoS 0 outputs. Uses gmqtt's private protocol object (no public API).
    """

    def __init__(self, client, mqtt5: bool = True) -> None:
        self.client = client
        self.pending: list[bytes] = []
        self.properties = b"\x00" if mqtt5 else b""
        self.loop = asyncio.get_running_loop()

    def publish(self, topic: str, payload: bytes) -> None:
        topic_bytes = topic.encode()
        body_len = 2 + len(topic_bytes) + len(self.properties) + len(payload)
        header = bytearray(b"\x30")
        while True:
            digit, body_len = body_len % 128, body_len // 128
            header.append(digit | 0x80 if body_len else digit)
            if not body_len:
                break
        if not self.pending:
            if FLUSH_DELAY_S:
                self.loop.call_later(FLUSH_DELAY_S, self.flush)
            else:
                self.loop.call_soon(self.flush)
        self.pending.append(
            bytes(header) + len(topic_bytes).to_bytes(2, "big") + topic_bytes
            + self.properties + payload
        )  # fmt: skip

    def flush(self) -> None:
        data, self.pending = b"".join(self.pending), []
        self.client._connection._protocol.write_data(data)


def fast_receive(client, on_publish) -> None:
    """Parse PUBLISH packets straight from gmqtt's protocol.data_received.

    gmqtt queues every packet through an asyncio.Queue to its read loop, then parses MQTT 5
    properties and checks whether on_message is a coroutine function, per message. Here
    complete PUBLISH packets are handed to on_publish(topic, payload, qos, packet_id) at once;
    every other packet goes on to gmqtt unchanged. Uses gmqtt's private protocol object.
    """
    protocol = client._connection._protocol
    forward = protocol.data_received
    mqtt5 = protocol.proto_ver == 5
    buffer = bytearray()

    def data_received(data: bytes) -> None:
        buffer.extend(data)
        packets, used = split_packets(buffer)
        del buffer[:used]
        others = []
        for first, body in packets:
            if first >> 4 != 3:
                others.append(_repack(first, body))
                continue
            qos = (first >> 1) & 0x03
            topic_len = int.from_bytes(body[:2], "big")
            start = 2 + topic_len
            packet_id = 0
            if qos:
                packet_id = int.from_bytes(body[start : start + 2], "big")
                start += 2
            if mqtt5:  # skip the property block (variable byte integer length)
                length, multiplier = 0, 1
                while True:
                    digit = body[start]
                    start += 1
                    length += (digit & 0x7F) * multiplier
                    multiplier *= 128
                    if not digit & 0x80:
                        break
                start += length
            on_publish(body[2 : 2 + topic_len].decode(), body[start:], qos, packet_id)
        if others:
            forward(b"".join(others))

    protocol.data_received = data_received


def _repack(first: int, body: bytes) -> bytes:
    size, header = len(body), bytearray((first,))
    while True:
        digit, size = size % 128, size // 128
        header.append(digit | 0x80 if size else digit)
        if not size:
            return bytes(header) + body


async def run_gmqtt_fastrx(port: int, qos_in: int) -> None:
    import gmqtt

    client = gmqtt.Client("bench-echo")
    subscribed = asyncio.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    await client.connect("127.0.0.1", port)
    writer = BatchedWriter(client, mqtt5=client._connection._protocol.proto_ver == 5)

    def on_publish(topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        writer.publish(out_topic(topic), payload)
        if qos:
            writer.pending.append(puback_packet(packet_id))

    fast_receive(client, on_publish)
    client.subscribe(IN_FILTER, qos=qos_in)
    await subscribed.wait()
    ready()
    await asyncio.Event().wait()


async def run_gmqtt_lean(port: int, qos_in: int) -> None:
    import gmqtt

    client = gmqtt.Client("bench-echo")
    subscribed = asyncio.Event()
    writer = BatchedWriter(client)

    def on_message(client, topic, payload, qos, properties):
        writer.publish(out_topic(topic), payload)
        return 0

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    await client.connect("127.0.0.1", port)
    client.subscribe(IN_FILTER, qos=qos_in)
    await subscribed.wait()
    ready()
    await asyncio.Event().wait()


class RawEcho(asyncio.Protocol):
    """No client library: MQTT 3.1.1 framing by hand on an asyncio Protocol, PUBLISH parsed
    straight from data_received, outputs and PUBACKs written once per loop pass. The floor
    of an asyncio echo in Python on this machine, to size what any client adds."""

    def __init__(self, qos_in: int) -> None:
        self.qos_in = qos_in
        self.buffer = bytearray()
        self.pending: list[bytes] = []
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self.subscribed = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(connect_packet("bench-echo") + subscribe_packet(1, IN_FILTER, self.qos_in))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        packets, used = split_packets(self.buffer)
        del self.buffer[:used]
        out = self.pending
        if not out:
            self.loop.call_soon(self.flush)
        for first, body in packets:
            kind = first >> 4
            if kind == 3:
                topic_len = int.from_bytes(body[:2], "big")
                topic = body[2 : 2 + topic_len].decode()
                start = 2 + topic_len
                if first & 0x06:
                    out.append(puback_packet(int.from_bytes(body[start : start + 2], "big")))
                    start += 2
                out.append(publish_packet(out_topic(topic), body[start:]))
            elif kind == 9:
                self.subscribed.set()

    def flush(self) -> None:
        if self.pending:
            self.transport.write(b"".join(self.pending))
            self.pending.clear()


async def run_raw(port: int, qos_in: int) -> None:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: RawEcho(qos_in), "127.0.0.1", port)
    await protocol.subscribed.wait()
    ready()
    await asyncio.Event().wait()


def run_paho(port: int, qos_in: int, qos_out: int) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-echo")

    def on_message(client, userdata, message):
        client.publish(out_topic(message.topic), message.payload, qos_out)

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(IN_FILTER, qos_in)

    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *args: ready()
    client.connect("127.0.0.1", port)
    client.loop_forever()


async def run_aiomqtt(port: int, qos_in: int, qos_out: int) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-echo") as client:
        await client.subscribe(IN_FILTER, qos_in)
        ready()
        async for message in client.messages:
            await client.publish(out_topic(message.topic.value), message.payload, qos=qos_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--client",
        choices=("gmqtt", "gmqtt-ackafter", "gmqtt-lean", "gmqtt-fastrx", "raw", "paho", "aiomqtt"),
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--qos-in", type=int, choices=(0, 1), default=0)
    parser.add_argument("--qos-out", type=int, choices=(0, 1), default=0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()

    if args.client == "paho":
        run_paho(args.port, args.qos_in, args.qos_out)
        return
    if args.client == "gmqtt-fastrx":
        coroutine = run_gmqtt_fastrx(args.port, args.qos_in)
    elif args.client == "raw":
        coroutine = run_raw(args.port, args.qos_in)
    elif args.client == "gmqtt-lean":
        coroutine = run_gmqtt_lean(args.port, args.qos_in)
    elif args.client == "aiomqtt":
        coroutine = run_aiomqtt(args.port, args.qos_in, args.qos_out)
    else:
        ack_after = args.client == "gmqtt-ackafter"
        coroutine = run_gmqtt(args.port, args.qos_in, args.qos_out, ack_after)
    if args.uvloop:
        import uvloop

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)


if __name__ == "__main__":
    main()
