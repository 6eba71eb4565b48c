"""Partition leases (kinestream.leases) against an in-memory bucket with NATS KV's write rules,
and the state bucket's value codec."""

from __future__ import annotations

import asyncio

import pytest

from kinestream.io.state_store import StoredVehicle
from kinestream.leases import Leases, fair_share, partition_key
from kinestream.nats_service import decode_state, encode_state


class FakeBucket:
    """Revision-checked create/update/delete like a KV bucket (one revision counter)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, int]] = {}
        self.revision = 0

    def _write(self, key: str, value: bytes) -> int:
        self.revision += 1
        self.entries[key] = (value, self.revision)
        return self.revision

    async def get(self, key):
        return self.entries.get(key)

    async def put(self, key, value):
        return self._write(key, value)

    async def create(self, key, value):
        return None if key in self.entries else self._write(key, value)

    async def update(self, key, value, revision):
        current = self.entries.get(key)
        if current is None or current[1] != revision:
            return None
        return self._write(key, value)

    async def delete(self, key, revision=None):
        current = self.entries.get(key)
        if current is None or (revision is not None and current[1] != revision):
            return False
        del self.entries[key]
        return True

    async def keys_with_values(self, prefix):
        return [k for k in self.entries if k.startswith(prefix)]

    async def purge_key(self, key):
        self.entries.pop(key, None)

    def expire(self, key: str) -> None:
        """What the bucket's TTL does to a key nobody renewed."""
        self.entries.pop(key, None)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, bool]] = []

    async def acquired(self, partition: int, _revision: int) -> None:
        self.events.append(("acquired", partition, False))

    async def release(self, partition: int, lost: bool) -> None:
        self.events.append(("released", partition, lost))


def make(bucket: FakeBucket, worker: str, partitions: int = 6, clock=None):
    recorder = Recorder()
    leases = Leases(
        bucket,  # type: ignore[arg-type]
        worker,
        partitions,
        3.0,
        acquired=recorder.acquired,
        release=recorder.release,
        **({"clock": clock} if clock else {}),
    )
    return leases, recorder


@pytest.mark.parametrize(
    ("partitions", "workers", "share"), [(6, 1, 6), (6, 2, 3), (6, 3, 2), (8, 3, 3), (2, 3, 1)]
)
def test_fair_share_is_the_ceiling_of_partitions_per_worker(partitions, workers, share):
    """Every partition has an owner when all workers take their share: ceil(N / workers)."""
    assert fair_share(partitions, workers) == share


def test_a_second_worker_gets_half_and_no_partition_has_two_owners():
    """Alone, a worker takes every partition; when a second one joins, the first gives back
    the extras and the second takes them, never both owning one partition."""
    bucket = FakeBucket()
    first, _ = make(bucket, "a")
    second, _ = make(bucket, "b")

    async def scenario() -> None:
        await first.step()
        assert first.owned == list(range(6))
        for _ in range(3):
            await second.step()
            await first.step()
            assert not set(first.owned) & set(second.owned)
        await second.step()

    asyncio.run(scenario())
    assert len(first.owned) == 3 and len(second.owned) == 3
    owners = {bucket.entries[partition_key(p)][0] for p in range(6)}
    assert owners == {b"a", b"b"}


def test_an_expired_worker_s_partitions_are_taken_over():
    """When a worker stops renewing (its keys expire), the survivor takes its partitions."""
    bucket = FakeBucket()
    first, _ = make(bucket, "a")
    second, recorder = make(bucket, "b")

    async def scenario() -> None:
        await first.step()
        await second.step()
        await first.step()
        await second.step()
        assert len(second.owned) == 3
        for key in [k for k, (v, _r) in bucket.entries.items() if v == b"a" or k == "workers.a"]:
            bucket.expire(key)
        await second.step()

    asyncio.run(scenario())
    assert second.owned == list(range(6))
    assert [e for e in recorder.events if e[0] == "released"] == []


def test_a_renewal_that_lost_the_race_releases_as_lost():
    """If another worker wrote the lease key since our last revision, the partition is given
    up without checkpointing (``lost``) and no longer valid."""
    bucket = FakeBucket()
    leases, recorder = make(bucket, "a", partitions=1)

    async def scenario() -> None:
        await leases.step()
        await bucket.put(partition_key(0), b"intruder")
        await leases._renew()

    asyncio.run(scenario())
    assert ("released", 0, True) in recorder.events
    assert not leases.valid(0) and leases.owned == []


def test_a_lease_is_valid_for_half_a_ttl_after_the_renewal_was_sent():
    """The time fence: a worker touches a partition only within ttl/2 of sending its last
    successful renewal (the server keeps the key a full ttl after receiving it)."""
    now = [100.0]
    bucket = FakeBucket()
    leases, _ = make(bucket, "a", partitions=1, clock=lambda: now[0])
    asyncio.run(leases.step())
    now[0] += 1.49
    assert leases.valid(0)
    now[0] += 0.02
    assert not leases.valid(0)


def test_state_value_round_trips_with_its_applied_sequence():
    """The state bucket's value carries the tracker state and the last applied sequence."""
    row = StoredVehicle("truck-7", b"\x01state", b'{"ts":1.0}', 1.0, 2.5)
    applied, decoded = decode_state("truck-7", encode_state(41, row))
    assert applied == 41 and decoded == row


def test_state_value_of_an_unknown_format_is_refused_with_the_vehicle():
    """A value written by a future format is refused with a message naming the vehicle."""
    import msgspec

    value = msgspec.msgpack.encode((99, 1, b"", None, None, None))
    with pytest.raises(ValueError, match=r"truck-7.*format 99"):
        decode_state("truck-7", value)
