"""Measuring subscriber: receives the output stream and timestamps every message.

While running it only frames packets (cheap); topics and payloads are parsed after the last
message, so it takes as little CPU as possible from the system under test. Each message is
mapped back to the publisher's index k (vehicle from the topic, step from the event time),
so latency = receive time - send time of message k.

    python benchmarks/sink.py --port P --expect 100000 --vehicles 1000 --out recv.npz
"""

from __future__ import annotations

import argparse
import bisect
import json
import socket
import struct
import time

import numpy as np
import orjson

from benchlib import TOPIC_PREFIX, open_mqtt, parse_publish, step_from_ts, subscribe

BATCH_BYTES = 16_384
PAUSE_S = 0.0005
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not name it
TIMESPEC = struct.Struct("@ll")


def frame_end(stream: bytearray, pos: int) -> int:
    """End offset of the packet starting at pos, or -1 if it is not complete yet."""
    size = len(stream)
    i, multiplier, length = pos + 1, 1, 0
    while True:
        if i >= size:
            return -1
        digit = stream[i]
        length += (digit & 0x7F) * multiplier
        multiplier *= 128
        i += 1
        if not digit & 0x80:
            break
    end = i + length
    return end if end <= size else -1


def kernel_arrival(ancillary: list, now_wall: float, now: float) -> float:
    """When the kernel queued the newest data of a read (SO_TIMESTAMPNS, wall clock), on the
    monotonic clock the publisher uses; ``now`` if the kernel gave no timestamp."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return now - max(0.0, now_wall - (seconds + nanoseconds * 1e-9))
    return now


def receive(sock, expect: int, idle_s: float, deadline_s: float) -> tuple[bytearray, list, bool]:
    stream = bytearray()
    ends: list[int] = []  # stream length after each recv ...
    times: list[float] = []  # ... and when that recv returned
    arrivals: list[float] = []  # ... and when its newest bytes reached the socket
    pos = count = 0
    stop_at = time.monotonic() + deadline_s
    sock.settimeout(idle_s)
    timed_out = False
    ancillary_size = socket.CMSG_SPACE(TIMESPEC.size)
    while count < expect:
        try:
            data, ancillary, _flags, _address = sock.recvmsg(1 << 20, ancillary_size)
        except TimeoutError:
            timed_out = True
            break
        now = time.monotonic()
        now_wall = time.time()
        if not data:
            break
        arrivals.append(kernel_arrival(ancillary, now_wall, now))
        stream += data
        if len(data) < BATCH_BYTES:
            # Let a few messages accumulate: one recv per message would cost this process
            # (and so the system under test, on 2 cores) a syscall per message. Latencies
            # are overstated by at most this pause.
            time.sleep(PAUSE_S)
        ends.append(len(stream))
        times.append(now)
        while (end := frame_end(stream, pos)) >= 0:
            count += stream[pos] >> 4 == 3
            pos = end
        if now > stop_at:
            timed_out = True
            break
    return stream, list(zip(ends, times, arrivals, strict=True)), timed_out


def decode(stream: bytearray, marks: list, vehicles: int, ts_field: str):
    ends = [end for end, _, _ in marks]
    indices, recv_times, arrival_times = [], [], []
    pos = 0
    while (end := frame_end(stream, pos)) >= 0:
        first = stream[pos]
        if first >> 4 == 3:
            header_len = 1
            while stream[pos + header_len] & 0x80:
                header_len += 1
            topic, payload = parse_publish(first, bytes(stream[pos + header_len + 1 : end]))
            vehicle = int(topic.split("/")[1][1:])
            ts = orjson.loads(payload)[ts_field]
            indices.append(step_from_ts(ts, vehicle) * vehicles + vehicle)
            mark = marks[bisect.bisect_left(ends, end)]
            recv_times.append(mark[1])
            arrival_times.append(mark[2])
        pos = end
    return np.array(indices, dtype=np.int64), np.array(recv_times), np.array(arrival_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--vehicles", type=int, required=True)
    parser.add_argument("--topic", default=f"{TOPIC_PREFIX}/+/kinematics")
    parser.add_argument("--ts-field", default="ts")
    parser.add_argument("--idle", type=float, default=10.0, help="give up after s of silence")
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    sock = open_mqtt(args.port, "bench-sink")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    subscribe(sock, args.topic, 0)
    print("READY", flush=True)
    stream, marks, timed_out = receive(sock, args.expect, args.idle, args.deadline)
    sock.close()
    indices, recv_times, arrival_times = decode(stream, marks, args.vehicles, args.ts_field)
    np.savez(args.out, indices=indices, recv_times=recv_times, arrival_times=arrival_times)
    summary = {
        "received": len(indices),
        "unique": len(np.unique(indices)),
        "first_recv": float(recv_times.min()) if len(recv_times) else None,
        "last_recv": float(recv_times.max()) if len(recv_times) else None,
        "timed_out": timed_out,
    }
    print("DONE " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
