"""Load generator: N speed readings over V vehicles, flat out or at a fixed offered rate.

Message k goes to vehicle k % V (topic vehicles/v00012/speed) with that vehicle's step k // V.
Every packet is encoded before the clock starts; the send time of each message (monotonic
clock, comparable across processes on Linux) is saved to --times for the latency figures.

    python benchmarks/publisher.py --port P --count 100000 --vehicles 1000 [--rate 20000]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np

from benchlib import TOPIC_PREFIX, open_mqtt, publish_packet, speed_payload, vehicle_id

FLAT_OUT_BATCH = 256  # messages per send() in flat-out mode


def build_packets(count: int, vehicles: int, qos: int) -> list[bytes]:
    topics = [f"{TOPIC_PREFIX}/{vehicle_id(v)}/speed" for v in range(vehicles)]
    return [
        publish_packet(
            topics[k % vehicles], speed_payload(k // vehicles, k % vehicles), qos, k % 65535 + 1
        )
        for k in range(count)
    ]


class AckDrain(threading.Thread):
    """Reads (and counts) the broker's PUBACKs so the socket never backs up at QoS 1."""

    def __init__(self, sock) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.acks = 0

    def run(self) -> None:
        pending = b""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            pending += data
            whole = len(pending) // 4  # PUBACK is always 4 bytes
            self.acks += whole
            pending = pending[whole * 4 :]


def send_flat_out(sock, packets: list[bytes], times: np.ndarray) -> None:
    for start in range(0, len(packets), FLAT_OUT_BATCH):
        end = min(start + FLAT_OUT_BATCH, len(packets))
        times[start:end] = time.monotonic()
        sock.sendall(b"".join(packets[start:end]))


def send_at_rate(sock, packets: list[bytes], times: np.ndarray, rate: float) -> None:
    t0 = time.monotonic()
    sent = 0
    total = len(packets)
    while sent < total:
        now = time.monotonic()
        due = min(total, int((now - t0) * rate) + 1)
        if due > sent:
            times[sent:due] = now
            sock.sendall(b"".join(packets[sent:due]))
            sent = due
        else:
            time.sleep(max(0.0, min(0.0005, t0 + sent / rate - now)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--vehicles", type=int, default=1_000)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s; 0 = flat out")
    parser.add_argument("--times", required=True, help="where to save send times (.npy)")
    parser.add_argument("--ack-timeout", type=float, default=60.0)
    args = parser.parse_args()

    packets = build_packets(args.count, args.vehicles, args.qos)
    times = np.zeros(args.count)
    sock = open_mqtt(args.port, "bench-publisher")
    sock.settimeout(None)
    drain = AckDrain(sock)
    drain.start()
    if args.rate > 0:
        send_at_rate(sock, packets, times, args.rate)
    else:
        send_flat_out(sock, packets, times)
    finished = time.monotonic()
    deadline = finished + args.ack_timeout
    while args.qos and drain.acks < args.count and time.monotonic() < deadline:
        time.sleep(0.01)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    np.save(args.times, times)
    summary = {
        "sent": args.count,
        "first_publish": float(times[0]),
        "last_publish": float(times[-1]),
        "send_duration_s": finished - float(times[0]),
        "acks": drain.acks,
    }
    print("DONE " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
