"""The service's own timers without a broker: the sliced tick reaches every vehicle."""

import asyncio
import time

import orjson

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
