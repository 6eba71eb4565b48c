"""The service's own timers without a broker: the sliced tick reaches every vehicle."""

import asyncio
import gc
import time
from collections.abc import Iterator

import orjson
import pytest

from kinestream.config import load_settings
from kinestream.service import WORK_SLICE, Service


def test_sliced_tick_closes_the_trips_of_every_silent_vehicle(tmp_path):
    """More silent vehicles than one slice holds: one tick still closes every open trip
    (published once the broker is there; here they wait in the link's backlog)."""
    vehicles = 3 * WORK_SLICE + 7
    settings = load_settings(
        overrides={"state": {"dir": str(tmp_path)}, "metrics": {"enabled": False}}
    )

    async def scenario() -> list[str]:
        service = Service(settings)
        service._build()
        arrived = time.time() - 300.0  # their last readings came 5 minutes ago
        for v in range(vehicles):
            for i in range(5):
                payload = orjson.dumps({"ts": arrived - 5 + i, "speed": 10.0})
                service.pipeline.handle(f"vehicles/v{v}/speed", payload, arrived)
        await service._tick()
        trips = [t for t, _p, _q, _r in service.link._backlog if t.endswith("/trips")]
        service.store.close()
        return trips

    trips = asyncio.run(scenario())
    assert len(trips) == vehicles
    assert len(set(trips)) == vehicles


def test_sliced_checkpoint_saves_every_vehicle_as_at_the_log_rotation(tmp_path, monkeypatch):
    """Readings keep arriving while a checkpoint exports vehicles a few at a time; after a
    crash, checkpoint + log replay give every vehicle exactly the odometer it had live."""
    from kinestream import durability

    monkeypatch.setattr(durability, "EXPORT_SLICE", 1)
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
