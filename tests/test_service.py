"""The service's own timers without a broker: the sliced tick reaches every vehicle."""

import asyncio
import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from kinestream import durability
from kinestream.config import load_settings
from kinestream.io.state_store import StateStore
from kinestream.service import TICK_SLICE, WORK_SLICE, Service

SRC = Path(__file__).resolve().parents[1] / "src"


def _service_with_silent_vehicles(tmp_path: Path, vehicles: int) -> Service:
    """A built service (inside a running loop) whose vehicles each sent five readings and
    then fell silent 5 minutes ago: every one is due at the next tick."""
    settings = load_settings(
        overrides={"state": {"dir": str(tmp_path)}, "metrics": {"enabled": False}}
    )
    service = Service(settings)
    service._build()
    arrived = time.time() - 300.0
    for v in range(vehicles):
        for i in range(5):
            payload = orjson.dumps({"ts": arrived - 5 + i, "speed": 10.0})
            service.pipeline.handle(f"vehicles/v{v}/speed", payload, arrived)
    return service


def test_sliced_tick_closes_the_trips_of_every_silent_vehicle(tmp_path):
    """More silent vehicles than one slice holds: one tick still closes every open trip
    (published once the broker is there; here they wait in the link's backlog)."""
    vehicles = 3 * WORK_SLICE + 7

    async def scenario() -> list[str]:
        service = _service_with_silent_vehicles(tmp_path, vehicles)
        await service._tick()
        trips = [t for t, _p, _q, _r in service.link._backlog if t.endswith("/trips")]
        service.store.close()
        return trips

    trips = asyncio.run(scenario())
    assert len(trips) == vehicles
    assert len(set(trips)) == vehicles


def test_no_tick_step_ticks_more_than_a_tick_slice_of_vehicles(tmp_path):
    """A whole fleet silent at once: every vehicle is due, yet between two yields to the
    event loop the tick closes the trips of at most TICK_SLICE vehicles."""
    vehicles = 3 * WORK_SLICE + 7

    async def scenario() -> list[int]:
        service = _service_with_silent_vehicles(tmp_path, vehicles)
        trips_per_step = []
        tick = service._tick()
        while True:
            before = len(service.link._backlog)
            try:
                tick.send(None)  # one step: up to the next yield to the loop
            except StopIteration:
                break
            finally:
                step = list(service.link._backlog)[before:]
                trips_per_step.append(sum(t.endswith("/trips") for t, _p, _q, _r in step))
        service.store.close()
        return trips_per_step

    trips_per_step = asyncio.run(scenario())
    assert sum(trips_per_step) == vehicles
    assert max(trips_per_step) <= TICK_SLICE


@pytest.mark.parametrize("chunk_rows", [2048, 3])
def test_sliced_checkpoint_saves_every_vehicle_as_at_the_log_rotation(
    tmp_path, monkeypatch, chunk_rows
):
    """Readings keep arriving while a checkpoint exports vehicles a few at a time (and, with
    small chunks, writes them a few at a time); after a crash, checkpoint + log replay give
    every vehicle exactly the odometer it had live."""
    monkeypatch.setattr(durability, "EXPORT_SLICE", 1)
    monkeypatch.setattr(durability, "CHUNK_ROWS", chunk_rows)
    settings = load_settings(
        overrides={"state": {"dir": str(tmp_path)}, "metrics": {"enabled": False}}
    )
    now = time.time()
    vehicles = 40

    def feed(service: Service, i: int) -> None:
        for v in range(vehicles):
            payload = orjson.dumps({"ts": now - 100 + i, "speed": 5.0 + (v + i) % 7})
            service._on_messages([(f"vehicles/v{v}/speed", payload, 0, False)])

    async def live_run() -> dict[str, float]:
        service = Service(settings)
        service._build()
        for i in range(5):
            feed(service, i)
        checkpoint = asyncio.ensure_future(service.checkpointer.checkpoint())
        await asyncio.sleep(0)
        assert not checkpoint.done()  # it yields between slices
        for i in range(5, 30):  # more than the tracker's duplicate memory (16) per vehicle
            feed(service, i)  # these change vehicles the snapshot may not have exported yet
            await asyncio.sleep(0)
        assert await checkpoint
        for i in range(30, 33):
            feed(service, i)
        service.durable.flush()  # written, as before any acknowledgement; then "kill -9"
        distances = {v: k.distance_m for v, k in service.book.last_kinematics.items()}
        service.store.close()
        return distances

    async def recovered() -> tuple[dict[str, float], int]:
        service = Service(settings)
        service._build()
        durability.recover(service.store, service.wal, service.book, service.pipeline, now)
        distances = {v: orjson.loads(k)["distance_m"] if isinstance(k, bytes) else k.distance_m
                     for v, k in service.book.last_kinematics.items()}  # fmt: skip
        service.store.close()
        return distances, sum(service.metrics.dead_letters.values())

    live = asyncio.run(live_run())
    assert len(live) == vehicles
    distances, dead_letters = asyncio.run(recovered())
    assert distances == live
    # Replay met no state newer than the log: nothing was refused as late.
    assert dead_letters == 0


@pytest.fixture
def thawed_afterwards() -> Iterator[None]:
    """The permanent generation is process-wide: give it back to the collector."""
    try:
        yield
    finally:
        gc.unfreeze()


def test_start_up_freezes_the_restored_vehicles_out_of_garbage_collection(
    tmp_path, thawed_afterwards
):
    """Once started, nothing start-up made (restored vehicles included) is in a generation
    the cyclic collector walks, so its first full collection does not stall the traffic."""
    settings = load_settings(
        overrides={"state": {"dir": str(tmp_path)}, "metrics": {"enabled": False}}
    )
    now = time.time()

    async def first_run() -> None:
        service = Service(settings)
        service._build()
        for i in range(3):
            payload = orjson.dumps({"ts": now - 10 + i, "speed": 5.0})
            service._on_messages([("vehicles/v1/speed", payload, 0, False)])
        assert await service.checkpointer.checkpoint()
        service.store.close()

    async def restart() -> tuple[bool, bool]:
        service = Service(settings)
        service._build()
        await service._start_up()
        assert "v1" in service.fleet  # restored from the checkpoint
        collected = {id(obj) for obj in gc.get_objects()}
        restored_tracker = service.fleet.tracker("v1")
        made_later = [restored_tracker]  # e.g. by the traffic
        later_collected = any(obj is made_later for obj in gc.get_objects())
        service.store.close()
        return id(restored_tracker) in collected, later_collected

    asyncio.run(first_run())
    tracker_collected, later_collected = asyncio.run(restart())
    assert not tracker_collected
    assert later_collected  # the collector still sees what traffic makes


def test_checkpoint_failing_between_chunks_leaves_everything_to_the_next_one(tmp_path, monkeypatch):
    """A checkpoint whose write fails after some chunks commits nothing (the store keeps the
    previous checkpoint); every vehicle of it, resident or evicted, goes into the next one, so
    after a crash the odometers recovered equal the live ones."""
    monkeypatch.setattr(durability, "EXPORT_SLICE", 1)
    monkeypatch.setattr(durability, "CHUNK_ROWS", 3)
    write_rows = durability._write_rows
    chunks_written = 0

    def fail_at_the_third_chunk(transaction, rows):
        nonlocal chunks_written
        chunks_written += 1
        if chunks_written == 3:
            raise OSError("disk full")
        write_rows(transaction, rows)

    settings = load_settings(
        overrides={"state": {"dir": str(tmp_path)}, "metrics": {"enabled": False}}
    )
    now = time.time()
    vehicles = 20

    def feed(service: Service, i: int, some: range = range(vehicles)) -> None:
        for v in some:
            payload = orjson.dumps({"ts": now - 100 + i, "speed": 5.0 + (v + i) % 7})
            service._on_messages([(f"vehicles/v{v}/speed", payload, 0, False)])

    async def live_run() -> dict[str, float]:
        service = Service(settings)
        service._build()
        store, book = service.store, service.book
        for i in range(5):
            feed(service, i)
        for v in range(5):  # evicted before the checkpoint: only the snapshot holds them
            book.evict(f"v{v}")
        monkeypatch.setattr(durability, "_write_rows", fail_at_the_third_chunk)
        checkpoint = asyncio.ensure_future(service.checkpointer.checkpoint())
        for i in range(5, 8):
            await asyncio.sleep(0)
            feed(service, i, range(3))  # v0..v2 resumed from the snapshot being written
            book.evict(f"v{10 + i}")  # evicted while the checkpoint runs
        assert await checkpoint is False
        assert (store.count(), store.wal_generation()) == (0, 0)  # none of it committed
        monkeypatch.setattr(durability, "_write_rows", write_rows)
        assert await service.checkpointer.checkpoint()
        assert store.count() == vehicles
        for i in range(8, 11):
            feed(service, i)  # every vehicle resident again
        service.durable.flush()  # then "kill -9"
        distances = {v: k.distance_m for v, k in book.last_kinematics.items()}
        store.close()
        return distances

    async def recovered() -> dict[str, float]:
        service = Service(settings)
        service._build()
        durability.recover(service.store, service.wal, service.book, service.pipeline, now)
        distances = {v: orjson.loads(k)["distance_m"] if isinstance(k, bytes) else k.distance_m
                     for v, k in service.book.last_kinematics.items()}  # fmt: skip
        assert sum(service.metrics.dead_letters.values()) == 0
        service.store.close()
        return distances

    live = asyncio.run(live_run())
    assert len(live) == vehicles
    assert asyncio.run(recovered()) == live


_CHILD = """
import asyncio, sys, time, orjson
from kinestream import durability
from kinestream.config import load_settings
from kinestream.service import Service

durability.EXPORT_SLICE, durability.CHUNK_ROWS = 1, 2
write_rows, chunks = durability._write_rows, 0

def write_then_hang(transaction, rows):
    global chunks
    write_rows(transaction, rows)
    chunks += 1
    if chunks == 3:  # some chunks of the second checkpoint are in its open transaction
        print("hanging", flush=True)
        time.sleep(60)

async def main(state_dir, now):
    settings = load_settings(overrides={"state": {"dir": state_dir}, "metrics": {"enabled": False}})
    service = Service(settings)
    service._build()
    def feed(i):
        for v in range(12):
            payload = orjson.dumps({"ts": now - 100 + i, "speed": 5.0 + (v + i) % 7})
            service._on_messages([(f"vehicles/v{v}/speed", payload, 0, False)])
    for i in range(5):
        feed(i)
    assert await service.checkpointer.checkpoint()
    for i in range(5, 9):
        feed(i)
    service.durable.flush()
    live = {v: k.distance_m for v, k in service.book.last_kinematics.items()}
    print(orjson.dumps(live).decode(), flush=True)
    durability._write_rows = write_then_hang
    await service.checkpointer.checkpoint()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def test_kill_minus_9_inside_a_chunked_checkpoint_recovers_the_live_odometers(tmp_path):
    """SIGKILL while a checkpoint has written some chunks into its transaction: the store keeps
    the previous checkpoint whole, and checkpoint + log replay give the live odometers."""
    now = time.time()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), repr(now)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    try:
        live = orjson.loads(child.stdout.readline())
        assert child.stdout.readline() == b"hanging\n"
    finally:
        child.kill()
        child.wait(10)
    store = StateStore(tmp_path)
    assert store.wal_generation() == 1  # the first checkpoint's, none of the second
    last_ts = {stored.last_ts for stored in store.recent(100)}
    assert (store.count(), len(live), last_ts) == (12, 12, {now - 100 + 4})

    async def recovered() -> dict[str, float]:
        settings = load_settings(
            overrides={"state": {"dir": str(tmp_path)}, "metrics": {"enabled": False}}
        )
        service = Service(settings)
        service._build()
        durability.recover(service.store, service.wal, service.book, service.pipeline, now)
        assert sum(service.metrics.dead_letters.values()) == 0
        distances = {v: orjson.loads(k)["distance_m"] if isinstance(k, bytes) else k.distance_m
                     for v, k in service.book.last_kinematics.items()}  # fmt: skip
        service.store.close()
        return distances

    assert asyncio.run(recovered()) == live
    store.close()
