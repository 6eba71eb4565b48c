"""Aggregate readings/s of `kinestream run --transport nats` with 1, 2 and 3 workers.

Per worker count, with a fresh private nats-server (the shipped config/nats/nats-server.conf on
free loopback ports) each time: start K workers and wait until they share the partitions on
the empty stream, then publish R readings of V vehicles straight to NATS (`vehicles.<id>.speed`,
core publishes; the server's mapping partitions them into the stream), and time from the
first publish until every partition's consumer has acknowledged everything (the readings are
processed, published and checkpointed). CPU seconds of the workers and of the server come
from /proc, so the figures can be read per reading whatever the other load on the machine.

    python benchmarks/nats_scaling.py [--workers 1 2 3] [--vehicles 200] [--readings 250]

Run by hand, never by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

import nats  # noqa: E402
from tests.integration.helpers import wait_until  # noqa: E402
from tests.integration.nats_helpers import NatsObserver, Worker, start_nats_server  # noqa: E402

T0 = 1767225600.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_balanced(url: str, partitions: int, workers: int) -> None:
    observer = NatsObserver(url, [])
    try:
        wait_until(
            lambda: (
                len(owners := observer.kv_items("kinestream-leases", "partitions.")) == partitions
                and len(set(owners.values())) == workers
            ),
            f"{workers} workers sharing {partitions} partitions",
        )
    finally:
        observer.close()


async def publish_and_wait(
    url: str, partitions: int, vehicles: int, readings: int
) -> tuple[float, float, int]:
    """Seconds to publish, seconds until everything is acknowledged (both from the first
    publish), and the number of state writes (the state bucket's last sequence)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    total = vehicles * readings
    bodies = [
        (f"vehicles.veh-{v}.speed", orjson.dumps({"ts": T0 + i, "speed": 10.0 + (i + v) % 7}))
        for i in range(readings)
        for v in range(vehicles)
    ]
    started = time.perf_counter()
    for subject, body in bodies:
        await nc.publish(subject, body)
    await nc.flush()
    published = time.perf_counter() - started
    streams = [f"KINESTREAM-{p}" for p in range(partitions)]
    while True:
        stored = pending = 0
        for stream in streams:
            stored += (await js.stream_info(stream)).state.messages
            for info in await js.consumers_info(stream):
                pending += info.num_pending + info.num_ack_pending
        if stored >= total and pending == 0:
            break
        await asyncio.sleep(0.05)
    done = time.perf_counter() - started
    writes = (await js.stream_info("KV_kinestream-state")).state.last_seq
    await nc.close()
    return published, done, writes


def run_once(workers: int, partitions: int, vehicles: int, readings: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="nats-bench-") as tmp:
        directory = Path(tmp)
        server = start_nats_server(directory, partitions)
        started: list[Worker] = []
        try:
            for index in range(workers):
                started.append(Worker(server, f"bench{index}", partitions, directory))
            wait_balanced(server.url, partitions, workers)
            cpu_before = [cpu_seconds(w.process.pid) for w in started]
            server_before = cpu_seconds(server.process.pid)
            published_s, done_s, writes = asyncio.run(
                publish_and_wait(server.url, partitions, vehicles, readings)
            )
            worker_cpu = sum(
                cpu_seconds(w.process.pid) - b for w, b in zip(started, cpu_before, strict=True)
            )
            server_cpu = cpu_seconds(server.process.pid) - server_before
        finally:
            for worker in started:
                worker.kill()
            server.close()
    total = vehicles * readings
    return {
        "workers": workers,
        "readings": total,
        "publish_s": round(published_s, 2),
        "done_s": round(done_s, 2),
        "readings_per_s": round(total / done_s),
        "state_writes_per_reading": round(writes / total, 3),
        "worker_cpu_us_per_reading": round(worker_cpu / total * 1e6, 1),
        "server_cpu_us_per_reading": round(server_cpu / total * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--readings", type=int, default=250, help="per vehicle")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    for workers in args.workers:
        for _ in range(args.repeat):
            result = run_once(workers, args.partitions, args.vehicles, args.readings)
            print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
