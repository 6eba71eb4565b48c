"""Partition ownership through leases in a NATS KV bucket (docs/scaling.md, "Ownership").

Keys: ``workers.<id>`` (membership) and ``partitions.<n>`` (value: the owner's id). The bucket's
TTL expires the keys of a worker that stopped renewing. A lease is renewed with a
revision-checked update, taken with ``create`` (fails while the key exists), and given back
with a revision-checked delete once its partition's work is checkpointed and acknowledged.

The worker supplies two callbacks: ``acquired(partition, revision)`` (start consuming) and
``release(partition, lost)`` (stop; checkpoint first unless ``lost``). ``valid`` is the time
fence the worker checks before touching a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable

from kinestream.io.nats_link import Bucket

log = logging.getLogger(__name__)

Acquired = Callable[[int, int], Awaitable[None]]
Release = Callable[[int, bool], Awaitable[None]]

WORKERS_PREFIX = "workers."
PARTITIONS_PREFIX = "partitions."
RENEWALS_PER_TTL = 4  # renew every ttl/4
VALID_FRACTION = 0.5  # process for ttl/2 after sending the last successful renewal


def fair_share(partitions: int, live_workers: int) -> int:
    """How many partitions each worker aims at: ``ceil(N / workers)`` (at least one worker)."""
    return math.ceil(partitions / max(1, live_workers))


def partition_key(partition: int) -> str:
    return f"{PARTITIONS_PREFIX}{partition}"


class Leases:
    def __init__(
        self,
        bucket: Bucket,
        worker_id: str,
        partitions: int,
        ttl_s: float,
        *,
        acquired: Acquired,
        release: Release,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket = bucket
        self.worker_id = worker_id
        self.partitions = partitions
        self.ttl_s = ttl_s
        self._acquired = acquired
        self._release = release
        self._clock = clock
        self.revision: dict[int, int] = {}  # owned partition -> lease revision
        self.renewed_at: dict[int, float] = {}  # owned partition -> clock() before the renewal
        self.takeovers = 0
        self.live_workers = 1

    @property
    def owned(self) -> list[int]:
        return sorted(self.revision)

    def valid(self, partition: int) -> bool:
        """True while this worker may still touch ``partition`` (see the module docstring)."""
        renewed = self.renewed_at.get(partition)
        return renewed is not None and self._clock() - renewed < self.ttl_s * VALID_FRACTION

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(self.step(), self.ttl_s)
            except TimeoutError:
                log.warning("lease round took over %.1f s; trying again", self.ttl_s)
            except Exception:  # a lost connection: keep trying; the time fence protects us
                log.exception("lease round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.ttl_s / RENEWALS_PER_TTL)

    async def step(self) -> None:
        """Renew membership and leases, then move towards the fair share."""
        await self.bucket.put(f"{WORKERS_PREFIX}{self.worker_id}", b"")
        await self._renew()
        live = await self.bucket.keys_with_values(WORKERS_PREFIX)  # expired/purged ones vanish
        self.live_workers = max(1, len(live))
        target = fair_share(self.partitions, self.live_workers)
        if len(self.revision) > target:
            for partition in self.owned[target:]:
                await self.give_back(partition)
        elif len(self.revision) < target:
            await self._take_free(target - len(self.revision))

    async def _renew(self) -> None:
        for partition, revision in list(self.revision.items()):
            sent_at = self._clock()
            new = await self.bucket.update(
                partition_key(partition), self.worker_id.encode(), revision
            )
            if partition not in self.revision:  # abandoned by the worker meanwhile
                if new is not None:
                    await self.bucket.delete(partition_key(partition), new)
                continue
            if new is None:
                log.warning("lost the lease of partition %d (another worker holds it)", partition)
                await self._forget(partition, lost=True)
            else:
                self.revision[partition] = new
                self.renewed_at[partition] = sent_at

    async def _take_free(self, wanted: int) -> None:
        # Try every partition we do not hold: create fails at once where a lease exists.
        others = [p for p in range(self.partitions) if p not in self.revision]
        random.shuffle(others)  # workers racing for free partitions rarely collide
        for partition in others:
            if wanted <= 0:
                break
            sent_at = self._clock()
            revision = await self.bucket.create(partition_key(partition), self.worker_id.encode())
            if revision is None:
                continue  # held by another worker
            wanted -= 1
            self.revision[partition] = revision
            self.renewed_at[partition] = sent_at
            self.takeovers += 1
            log.info("took partition %d (lease revision %d)", partition, revision)
            try:
                await self._acquired(partition, revision)
            except Exception:
                log.exception("could not start partition %d; giving it back", partition)
                await self._forget(partition, lost=True)
                await self.bucket.delete(partition_key(partition))

    async def give_back(self, partition: int) -> None:
        """Stop consuming (checkpointed and acknowledged), then delete the lease."""
        revision = self.revision.get(partition)
        if revision is None:
            return
        await self._forget(partition, lost=False)
        await self.bucket.delete(partition_key(partition), revision)
        log.info("gave back partition %d", partition)

    async def give_back_all(self) -> None:
        for partition in self.owned:
            await self.give_back(partition)
        # Purged, not deleted: a delete marker would still count as a member.
        await self.bucket.purge_key(f"{WORKERS_PREFIX}{self.worker_id}")

    async def _forget(self, partition: int, lost: bool) -> None:
        self.revision.pop(partition, None)
        self.renewed_at.pop(partition, None)
        await self._release(partition, lost)
