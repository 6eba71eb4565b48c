"""The daemon's hot path in one process, no broker: MQTT bytes in -> outputs encoded.

    python benchmarks/hotpath.py [--count 200000] [--vehicles 1000] [--read-bytes 65536]

Builds the real ``Service`` (write-ahead log, pipeline, book, metrics; state in a temporary
directory) and an ``MqttLink`` whose connection is a stand-in that swallows writes, then
feeds pre-encoded PUBLISH packets in reads of ``--read-bytes`` through the link's receive
path, running the event loop between reads as a socket would (so the once-per-pass output
and log writes happen). Prints µs per reading (process CPU time). No syscalls to a broker, so
it isolates the Python cost; under ``valgrind --tool=callgrind`` the instruction count per
reading is repeatable whatever the machine's load (``--count`` twice and subtract to drop
start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from benchlib import TOPIC_PREFIX, publish_packet, speed_payload, split_packets, vehicle_id
from kinestream.config import load_settings
from kinestream.service import Service


class FakeBroker(asyncio.Transport):
    """The transport under the link: answers CONNECT, SUBSCRIBE and QoS 1 PUBLISH like a
    broker would (CONNACK, SUBACK, PUBACK, MQTT 5) and swallows everything else."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.publish_bytes = 0
        self.measuring = False

    def write(self, data: bytes) -> None:
        if self.measuring:  # outputs only: counted, not parsed (the harness's cost is noise)
            self.publish_bytes += len(data)
            return
        found, _used = split_packets(bytearray(data))
        for first, body in found:
            kind = first >> 4
            if kind == 1:  # CONNECT
                self._answer(b"\x20\x03\x00\x00\x00")
            elif kind == 8:  # SUBSCRIBE: granted QoS 1
                self._answer(b"\x90\x04" + body[:2] + b"\x00\x01")
            elif kind == 3:
                self.publish_bytes += len(body)
                if first & 0x06:
                    topic_end = 2 + int.from_bytes(body[:2], "big")
                    self._answer(b"\x40\x02" + body[topic_end : topic_end + 2])

    def _answer(self, packet: bytes) -> None:
        self.loop.call_soon(self.protocol.data_received, packet)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def connect_link(service: Service) -> FakeBroker:
    """Connect the service's link to a FakeBroker through its normal connect path."""
    loop = asyncio.get_running_loop()
    brokers: list[FakeBroker] = []

    async def create_connection(factory, *_args, **_kwargs):
        protocol = factory()
        transport = FakeBroker(protocol)
        brokers.append(transport)
        protocol.connection_made(transport)
        return transport, protocol

    loop.create_connection = create_connection  # type: ignore[method-assign]
    await asyncio.wait_for(service.link.connect_forever(), 10)
    return brokers[-1]


def packets(count: int, vehicles: int, qos: int) -> list[bytes]:
    """What Mosquitto sends an MQTT 5 subscriber: the publisher's messages with an empty
    property block (the byte before the payload)."""
    topics = [f"{TOPIC_PREFIX}/{vehicle_id(v)}/speed" for v in range(vehicles)]
    return [
        publish_packet(topics[k % vehicles], b"\x00" + speed_payload(k // vehicles, k % vehicles),
                       qos, k % 65535 + 1)
        for k in range(count)
    ]  # fmt: skip


def reads(data: list[bytes], read_bytes: int) -> list[bytes]:
    """The stream cut into socket-sized reads (packets split across reads, as TCP does)."""
    stream = b"".join(data)
    return [stream[i : i + read_bytes] for i in range(0, len(stream), read_bytes)]


async def run(count: int, vehicles: int, read_bytes: int, qos: int, state_dir: Path) -> float:
    settings = load_settings(
        overrides={"state": {"dir": str(state_dir)}, "metrics": {"enabled": False}}
    )
    service = Service(settings)
    service._build()
    broker = await connect_link(service)
    feed = broker.protocol.data_received
    broker.measuring = True
    chunks = reads(packets(count, vehicles, qos), read_bytes)
    started = time.process_time()
    for chunk in chunks:
        feed(chunk)
        await asyncio.sleep(0)  # one loop pass: the output and log writes run
    await asyncio.sleep(0)
    elapsed = time.process_time() - started
    received = service.metrics.messages_received
    assert received == count, (received, count)
    assert service.metrics.published["kinematics"] == count, service.metrics.dead_letters
    service.wal.close()
    service.store.close()
    return elapsed / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--vehicles", type=int, default=1_000)
    parser.add_argument("--read-bytes", type=int, default=65_536)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-hotpath-") as tmp:
        us = asyncio.run(run(args.count, args.vehicles, args.read_bytes, args.qos, Path(tmp)))
    print(f"{args.count} readings, {args.vehicles} vehicles, QoS {args.qos}: {us:.2f} µs/reading")


if __name__ == "__main__":
    main()
