"""``kinestream run --transport nats``: one partitioned worker on JetStream (docs/scaling.md).

The same ``Pipeline`` (decoder, core, outputs) and ``VehicleBook`` as the MQTT daemon; what
differs is where readings come from (a durable pull consumer per owned partition), where state
lives (a KV bucket shared by all workers, so any worker can take over any partition) and when
readings are acknowledged: in rounds of fetched batches, only after the round's outputs are
flushed and its state is written. A vehicle's value in the state bucket carries the stream
sequence of its last applied reading, so a redelivered reading is recognised and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field

import msgspec

from kinestream.config import Settings
from kinestream.core.fleet import Fleet
from kinestream.io import metrics as metrics_http
from kinestream.io.metrics import Metrics
from kinestream.io.nats_link import Bucket, Delivery, NatsLink, PartitionConsumer, ack_all
from kinestream.io.state_store import StoredVehicle
from kinestream.leases import Leases, partition_key
from kinestream.pipeline import Pipeline
from kinestream.vehicles import Snapshot, VehicleBook

log = logging.getLogger(__name__)

WORKER_HEADER = "Kinestream-Worker"
SEQUENCE_HEADER = "Kinestream-Seq"
STATE_FORMAT = 1
EVICT_EVERY_S = 10.0
SHUTDOWN_STEP_TIMEOUT_S = 3.0


def default_worker_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "localhost"
    return f"kinestream-{host}-{os.getpid()}"


# --- The state bucket's value: (format, applied stream sequence, StoredVehicle fields) -------


def encode_state(applied_seq: int, row: StoredVehicle) -> bytes:
    return msgspec.msgpack.encode(
        (STATE_FORMAT, applied_seq, row.state, row.last_record, row.last_ts, row.received_at)
    )


def decode_state(vehicle_id: str, value: bytes) -> tuple[int, StoredVehicle]:
    fmt, applied_seq, state, last_record, last_ts, received_at = msgspec.msgpack.decode(value)
    if fmt != STATE_FORMAT:
        raise ValueError(f"state of vehicle {vehicle_id!r} has format {fmt}, not {STATE_FORMAT}")
    return applied_seq, StoredVehicle(vehicle_id, state, last_record, last_ts, received_at)


class PrefetchedStates:
    """The ``store`` of the ``VehicleBook``: states loaded from KV before a round needs them
    (``VehicleBook.resume`` is synchronous, the KV is not)."""

    def __init__(self) -> None:
        self.loaded: dict[str, StoredVehicle] = {}

    def load(self, vehicle_id: str) -> StoredVehicle | None:
        return self.loaded.pop(vehicle_id, None)

    def ids(self) -> set[str]:
        """None known at start; ``_load_missing`` adds each vehicle it prefetches."""
        return set()


@dataclass
class Batch:
    partition: int
    deliveries: list[Delivery]
    done: asyncio.Event = field(default_factory=asyncio.Event)


class NatsService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nats = settings.nats
        self.worker_id = self.nats.worker_id or default_worker_id()
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.round_lock = asyncio.Lock()
        # Fetched batches waiting for the next round. A list and an event rather than a queue:
        # wait_for(queue.get(), timeout) can lose an item when both finish at once, and a lost
        # batch would leave its fetcher waiting for ever.
        self.inbox: list[Batch] = []
        self.inbox_ready = asyncio.Event()
        self.outbox: list[tuple[str, bytes, int | None]] = []
        self.current_seq: int | None = None
        self.consumers: dict[int, PartitionConsumer] = {}
        self.fetchers: dict[int, asyncio.Task[None]] = {}
        self.applied_seq: dict[str, int] = {}  # vehicle -> stream sequence in its state
        self.state_rev: dict[str, int] = {}  # vehicle -> KV revision we wrote or read (0: none)
        self.partition_of: dict[str, int] = {}
        self.redelivered_skipped = 0
        topic_prefix = settings.mqtt.topic_prefix
        self.topic_tokens = len(topic_prefix.split("/")) + 2  # prefix, id, "speed"
        self.partition_token = len(self.nats.subject_prefix.split("."))
        self.topic_subject = topic_prefix.replace("/", ".")

    def stream_of(self, partition: int) -> str:
        """One stream per partition: a consumer without a subject filter reads it sequentially
        (a wildcard filter over one shared stream cost the 2.9 server ~1 ms per reading), and a
        cluster spreads the partitions' stream leaders over its nodes."""
        return f"{self.nats.stream}-{partition}"

    def subject_of(self, partition: int) -> str:
        return f"{self.nats.subject_prefix}.{partition}.{self.topic_subject}.*.speed"

    def request_stop(self) -> None:
        self.stopping.set()

    # Start and stop -------------------------------------------------------------------------
    async def run(self) -> int:
        s, n = self.settings, self.nats
        self.link = NatsLink(n.urls(), self.worker_id)
        await self.link.connect()
        self.metrics.broker_connected = 1
        for partition in range(n.partitions):
            await self.link.ensure_stream(
                self.stream_of(partition),
                [self.subject_of(partition)],
                n.replicas,
                n.stream_max_age_s,
            )
        self.states: Bucket = await self.link.bucket(n.state_bucket, None, n.replicas)
        lease_bucket = await self.link.bucket(n.lease_bucket, n.lease_ttl_s, n.replicas, True)
        self.fleet = Fleet(s.tracker.to_params())
        self.cache = PrefetchedStates()
        self.book = VehicleBook(self.fleet, self.cache, s.state.max_vehicles, s.state.idle_evict_s)  # type: ignore[arg-type]
        self.pipeline = Pipeline(
            self.fleet,
            self.book,
            self._publish,
            self.metrics,
            topic_prefix=s.mqtt.topic_prefix,
            service_prefix=s.mqtt.service_prefix,
            default_unit=s.tracker.default_unit,
            max_future_s=s.tracker.max_future_s,
            max_payload_bytes=s.mqtt.max_payload_bytes,
            output_qos=0,
            state_interval_s=s.mqtt.state_publish_interval_s,
        )
        self.leases = Leases(
            lease_bucket,
            self.worker_id,
            n.partitions,
            n.lease_ttl_s,
            acquired=self._acquired,
            release=self._release,
        )
        server = self._serve_metrics()
        log.info("worker %s on %s, %d partitions", self.worker_id, n.url, n.partitions)
        leases = asyncio.ensure_future(self.leases.run(self.stopping))
        processor = asyncio.ensure_future(self._process_loop())
        try:
            await self.stopping.wait()
        finally:
            await self._shutdown(leases, processor)
            if server is not None:
                await asyncio.to_thread(server.shutdown)
                server.server_close()
        return 0

    async def _shutdown(self, leases: asyncio.Task[None], processor: asyncio.Task[None]) -> None:
        log.info("stopping: finishing the round, checkpointing, giving the leases back")
        await asyncio.gather(leases, return_exceptions=True)
        for task in self.fetchers.values():
            task.cancel()
        async with self.round_lock:
            processor.cancel()
        await asyncio.gather(processor, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leases.give_back_all(), SHUTDOWN_STEP_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.link.close(), SHUTDOWN_STEP_TIMEOUT_S)
        log.info("stopped (%d redelivered readings skipped)", self.redelivered_skipped)

    def _serve_metrics(self) -> object:
        m = self.settings.metrics
        if not m.enabled:
            return None
        server = metrics_http.serve(self.metrics, m.bind, m.port)
        log.info("metrics on http://%s:%d/metrics", m.bind, server.server_address[1])
        return server

    # Partitions (called by the leases) ------------------------------------------------------
    async def _acquired(self, partition: int, revision: int) -> None:
        n = self.nats
        consumer = await self.link.take_over_partition(
            self.stream_of(partition),
            f"kinestream-p{partition}-",
            f"kinestream-p{partition}-r{revision}",
            max_ack_pending=4 * n.batch_size,
        )
        self.consumers[partition] = consumer
        self.fetchers[partition] = asyncio.ensure_future(self._fetch_loop(partition, consumer))

    async def _release(self, partition: int, lost: bool) -> None:
        async with self.round_lock:
            await self._drop_partition(partition, lost)

    async def _drop_partition(self, partition: int, lost: bool) -> None:
        """Stop consuming; unless ``lost``, checkpoint its vehicles first. Holds round_lock."""
        fetcher = self.fetchers.pop(partition, None)
        if fetcher is not None:
            fetcher.cancel()
        consumer = self.consumers.pop(partition, None)
        if consumer is not None:
            await consumer.close()
        vehicles = [v for v, p in self.partition_of.items() if p == partition]
        for vehicle_id in vehicles:
            if vehicle_id in self.book.arrived:
                self.book.evict(vehicle_id)
        if not lost:
            await self._checkpoint()
        for vehicle_id in vehicles:
            self.book.evicted.pop(vehicle_id, None)
            self.cache.loaded.pop(vehicle_id, None)
            self.applied_seq.pop(vehicle_id, None)
            self.state_rev.pop(vehicle_id, None)
            del self.partition_of[vehicle_id]

    async def _abandon(self, partition: int, why: str) -> None:
        """Give up a partition whose consumer or state we can no longer trust (holds the lock):
        unacknowledged work is left to the next owner, which may be us again."""
        log.warning("abandoning partition %d: %s", partition, why)
        revision = self.leases.revision.pop(partition, None)
        self.leases.renewed_at.pop(partition, None)
        await self._drop_partition(partition, lost=True)
        if revision is not None:
            with contextlib.suppress(Exception):
                await self.leases.bucket.delete(partition_key(partition), revision)

    # Rounds ---------------------------------------------------------------------------------
    async def _fetch_loop(self, partition: int, consumer: PartitionConsumer) -> None:
        n = self.nats
        while True:
            try:
                deliveries = await consumer.fetch(n.batch_size, n.fetch_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # consumer deleted by a new owner, connection lost
                log.warning("fetch from partition %d failed: %s", partition, error)
                await asyncio.sleep(0.5)
                continue
            if deliveries:
                batch = Batch(partition, deliveries)
                self.inbox.append(batch)
                self.inbox_ready.set()
                await batch.done.wait()

    async def _process_loop(self) -> None:
        interval_s = self.settings.tracker.tick_interval_s
        last_tick = last_evict = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.inbox_ready.wait(), interval_s)
            self.inbox_ready.clear()
            batches, self.inbox = self.inbox, []
            now = time.monotonic()
            async with self.round_lock:
                try:
                    await self._round(batches, tick=now - last_tick >= interval_s)
                except Exception:
                    log.exception("round failed; nothing of it acknowledged")
                finally:
                    for batch in batches:
                        batch.done.set()
            if now - last_tick >= interval_s:
                last_tick = now
            if now - last_evict >= EVICT_EVERY_S:
                last_evict = now
                self.book.evict_idle(time.time())

    async def _round(self, batches: list[Batch], tick: bool) -> None:
        live: list[Batch] = []
        for batch in batches:
            if batch.partition not in self.consumers:
                continue  # released meanwhile: its consumer is gone, nothing to acknowledge
            if not self.leases.valid(batch.partition):
                await self._abandon(batch.partition, "lease not renewed in time")
                continue
            live.append(batch)
        await self._load_missing(live)
        for batch in live:
            for delivery in batch.deliveries:
                self._apply(batch.partition, delivery)
        if tick:
            self.pipeline.tick(time.time())
            self.metrics.active_vehicles = len(self.book)
            self.metrics.broker_connected = int(self.link.connected)
        if any(not self.leases.valid(batch.partition) for batch in live):
            # Stalled past the fence while processing (a paused process, a starved loop):
            # publish nothing and hand every partition of the round to its next owner.
            self.outbox = []
            for partition in {batch.partition for batch in live}:
                await self._abandon(partition, "lease expired during the round")
            return
        await self._send_outbox()
        conflicts = await self._checkpoint()
        for partition in conflicts:
            await self._abandon(partition, "another worker wrote the state of its vehicles")
        for batch in live:
            if batch.partition in self.consumers and batch.partition not in conflicts:
                await ack_all(batch.deliveries[-1])

    def _topic(self, subject: str) -> str:
        return "/".join(subject.split(".")[self.partition_token + 1 :])

    def _vehicle_of(self, topic: str) -> str | None:
        levels = topic.split("/")
        return levels[-2] if len(levels) == self.topic_tokens and levels[-1] == "speed" else None

    async def _load_missing(self, batches: list[Batch]) -> None:
        """Read the KV state of every vehicle in the round that is not in memory.

        The bucket is the truth for a vehicle we do not hold (never seen, evicted and saved,
        or last held by another worker): its revision and applied sequence are refreshed too.
        """
        book = self.book
        wanted = {
            vehicle_id
            for batch in batches
            for delivery in batch.deliveries
            if (vehicle_id := self._vehicle_of(self._topic(delivery.subject))) is not None
            and vehicle_id not in book.arrived
            and vehicle_id not in book.evicted
        }
        if not wanted:
            return
        ordered = sorted(wanted)
        values = await asyncio.gather(*(self.states.get(v) for v in ordered))
        for vehicle_id, found in zip(ordered, values, strict=True):
            self.applied_seq.pop(vehicle_id, None)
            self.cache.loaded.pop(vehicle_id, None)
            if found is None:
                self.state_rev[vehicle_id] = 0
                continue
            value, revision = found
            self.state_rev[vehicle_id] = revision
            try:
                applied_seq, stored = decode_state(vehicle_id, value)
            except (ValueError, msgspec.DecodeError) as error:
                log.error("unreadable state of vehicle %r, starting afresh: %s", vehicle_id, error)
                continue
            self.applied_seq[vehicle_id] = applied_seq
            self.cache.loaded[vehicle_id] = stored
            book.stored_ids.add(vehicle_id)

    def _apply(self, partition: int, delivery: Delivery) -> None:
        topic = self._topic(delivery.subject)
        vehicle_id = self._vehicle_of(topic)
        if vehicle_id is not None and delivery.stream_seq <= self.applied_seq.get(vehicle_id, 0):
            self.redelivered_skipped += 1  # already in the state we loaded: effect happened
            self.metrics.readings["duplicate"] += 1
            return
        self.current_seq = delivery.stream_seq
        try:
            self.pipeline.handle(topic, delivery.payload, delivery.stored_at)
        except Exception:  # a bug must not stop the worker
            log.exception("internal error processing a message on %r", delivery.subject)
        finally:
            self.current_seq = None
        if vehicle_id is not None and vehicle_id in self.book.arrived:
            self.applied_seq[vehicle_id] = delivery.stream_seq
            self.partition_of[vehicle_id] = partition

    # Outputs and checkpoints ----------------------------------------------------------------
    def _publish(self, topic: str, body: bytes, _qos: int, _retain: bool) -> None:
        self.outbox.append((topic.replace("/", "."), body, self.current_seq))

    async def _send_outbox(self) -> None:
        outbox, self.outbox = self.outbox, []
        worker = {WORKER_HEADER: self.worker_id}
        for subject, body, seq in outbox:
            headers = worker if seq is None else {**worker, SEQUENCE_HEADER: str(seq)}
            await self.link.publish(subject, body, headers)
        if outbox:
            await self.link.flush()

    async def _checkpoint(self) -> set[int]:
        """Write every changed vehicle; the partitions whose writes lost a revision race."""
        rows = self.book.take_dirty()
        if not rows:
            return set()
        started = time.monotonic()
        results = await asyncio.gather(*(self._save(row) for row in rows), return_exceptions=True)
        failed = [row for row, ok in zip(rows, results, strict=True) if ok is not True]
        conflicts = {
            self.partition_of[row.vehicle_id]
            for row, ok in zip(rows, results, strict=True)
            if ok is False and row.vehicle_id in self.partition_of
        }
        errors = [ok for ok in results if isinstance(ok, BaseException)]
        if errors:
            log.error("checkpoint of %d vehicles failed: %s", len(errors), errors[0])
            self.book.saved(failed, ok=False)
            raise errors[0]  # nothing of this round is acknowledged
        self.book.saved(rows, ok=True)
        self.metrics.checkpoint_done(time.monotonic() - started)
        return conflicts

    async def _save(self, row: Snapshot) -> bool:
        vehicle_id = row.vehicle_id
        value = encode_state(self.applied_seq.get(vehicle_id, 0), row.stored())
        revision = self.state_rev.get(vehicle_id, 0)
        if revision:
            new = await self.states.update(vehicle_id, value, revision)
        else:
            new = await self.states.create(vehicle_id, value)
        if new is None:
            return False
        self.state_rev[vehicle_id] = new
        return True
