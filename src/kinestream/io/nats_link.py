"""The only module that knows the NATS client library (nats-py): connection, JetStream, KV.

Everything here is a thin, typed wrapper so that the worker (``nats_service``) and the leases
(``leases``) read as plain logic: a KV write that lost a revision race returns ``None`` rather
than raising, a fetch that found nothing returns ``[]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

__all__ = ["Bucket", "Delivery", "NatsLink", "PartitionConsumer"]

V1_ACK_TOKENS = 9
ACK_WAIT_S = 300.0  # redelivery within one owner is never relied upon (see scaling.md)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message from a partition: what the worker needs, and the handle to acknowledge."""

    subject: str
    payload: bytes
    stream_seq: int
    stored_at: float  # server time the stream stored it (epoch seconds)
    msg: Msg


class Bucket:
    """A KV bucket with revision-checked writes that report a lost race as ``None``."""

    def __init__(self, js: JetStreamContext, kv: KeyValue, name: str) -> None:
        self._js = js
        self._kv = kv
        self._stream = f"KV_{name}"
        self._pre = f"$KV.{name}."

    async def get(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await self._kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return (entry.value or b""), int(entry.revision or 0)

    async def put(self, key: str, value: bytes) -> int:
        return int(await self._kv.put(key, value))

    async def create(self, key: str, value: bytes) -> int | None:
        """Write only if the key does not exist (or was deleted); ``None`` if it exists."""
        try:
            return int(await self._kv.create(key, value))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def update(self, key: str, value: bytes, revision: int) -> int | None:
        """Write only if ``revision`` is still the latest; ``None`` if someone wrote since."""
        try:
            return int(await self._kv.update(key, value, last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def delete(self, key: str, revision: int | None = None) -> bool:
        try:
            return bool(await self._kv.delete(key, last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return False

    async def keys_with_values(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` holding a message (a value or a delete marker).

        From the stream's subject counts, not a KV watcher: a watcher waits for the end of the
        initial values, which never comes if a key expires between its creation and delivery.
        """
        info = await self._js.stream_info(self._stream, subjects_filter=f"{self._pre}{prefix}>")
        return [subject[len(self._pre) :] for subject in (info.state.subjects or {})]

    async def purge_key(self, key: str) -> None:
        """Remove every message of ``key``, leaving no delete marker behind."""
        await self._js.purge_stream(self._stream, subject=f"{self._pre}{key}")


def ack_reply_position(reply: str) -> tuple[int, float]:
    """(stream sequence, stored-at epoch seconds) from a JetStream message's reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts_ns>.<pending>`` (9 tokens) or
    the v2 form with a domain and account hash in front and a random token at the end (12):
    the same fields nats-py's ``Msg.metadata`` parses, at a fraction of its cost.
    """
    tokens = reply.split(".")
    offset = 0 if len(tokens) == V1_ACK_TOKENS else 2
    return int(tokens[5 + offset]), int(tokens[7 + offset]) / 1e9


class PartitionConsumer:
    """Pulls one partition's durable consumer, keeping one pull request outstanding.

    Messages arrive through a plain subscription callback into a buffer; ``fetch`` returns the
    buffer (waiting up to the timeout for a first message) and asks for the next batch before
    returning, so it travels while the worker processes this one. nats-py's own ``fetch``
    waits on every single message with a timer, which cost a fifth of the worker's CPU. A pull
    request ends when its batch is delivered or with a status: 408 (expired, nothing more) or
    409 (e.g. a new owner deleted the consumer: ``fetch`` raises).
    """

    SETTLE_S = 0.002  # after the first message, let the rest of a burst arrive

    def __init__(self, nc: Client, stream: str, name: str) -> None:
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"
        self._inbox = nc.new_inbox()
        self._buffer: list[Delivery] = []
        self._arrived = asyncio.Event()
        self._owed = 0  # messages the outstanding request may still deliver
        self._error: str | None = None
        self._subscription: object = None
        self.name = name

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(
            self._inbox, cb=self._on_message, pending_msgs_limit=-1, pending_bytes_limit=-1
        )

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None and msg.reply:
            stream_seq, stored_at = ack_reply_position(msg.reply)
            self._buffer.append(Delivery(msg.subject, msg.data, stream_seq, stored_at, msg))
            self._owed -= 1
        elif status in ("404", "408"):
            self._owed = 0
        elif status == "409":
            self._owed = 0
            self._error = f"409 {msg.headers.get('Description', '')}".strip()  # type: ignore[union-attr]
        else:
            return  # idle heartbeat or an unknown status: nothing changes
        self._arrived.set()

    async def _request(self, batch: int, timeout_s: float) -> None:
        body = {"batch": batch, "expires": int(timeout_s * 1e9)}
        self._owed = batch
        await self._nc.publish(self._next_subject, json.dumps(body).encode(), reply=self._inbox)

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        if not self._buffer:
            if self._owed <= 0:
                await self._request(batch, timeout_s)
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_s + 1.0)
            except TimeoutError:
                self._owed = 0  # the request was lost (a reconnect): send a new one next time
            if self._buffer and self._owed > 0:
                await asyncio.sleep(self.SETTLE_S)
        if self._error is not None:
            error, self._error = self._error, None
            raise ConnectionError(f"pull from consumer {self.name} failed: {error}")
        taken, self._buffer = self._buffer, []
        if taken and self._owed <= 0:
            await self._request(batch, timeout_s)  # the next batch travels while we work
        return taken

    async def close(self) -> None:
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):  # gone already
            await self._subscription.unsubscribe()  # type: ignore[attr-defined]


class NatsLink:
    def __init__(self, urls: list[str], name: str) -> None:
        self.urls = urls
        self.name = name
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None

    async def connect(self) -> None:
        # Reconnect forever: a cluster node going away must not end the worker.
        self.nc = await nats.connect(
            servers=self.urls,
            name=self.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            allow_reconnect=True,
        )
        self.js = self.nc.jetstream()

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def ensure_stream(
        self, name: str, subjects: list[str], replicas: int, max_age_s: float
    ) -> None:
        """Create the stream, or leave an existing one as it is (the first worker wins)."""
        assert self.js is not None
        config = StreamConfig(
            name=name,
            subjects=subjects,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=max_age_s,
        )
        try:
            await self.js.stream_info(name)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError:  # another worker created it meanwhile
                await self.js.stream_info(name)

    async def bucket(
        self, name: str, ttl_s: float | None, replicas: int, memory: bool = False
    ) -> Bucket:
        assert self.js is not None
        try:
            return Bucket(self.js, await self.js.key_value(name), name)
        except nats.js.errors.BucketNotFoundError:
            pass
        config = KeyValueConfig(
            bucket=name,
            history=1,
            ttl=ttl_s,
            replicas=replicas,
            storage=StorageType.MEMORY if memory else StorageType.FILE,
        )
        try:
            return Bucket(self.js, await self.js.create_key_value(config), name)
        except nats.js.errors.BadRequestError:
            return Bucket(self.js, await self.js.key_value(name), name)

    async def take_over_partition(
        self, stream: str, name_prefix: str, name: str, max_ack_pending: int
    ) -> PartitionConsumer:
        """Replace the partition's consumers by one named ``name`` starting after their ack floor.

        The old consumer may hold messages a dead owner fetched and never acknowledged; reading
        its floor and starting a new one right after it redelivers them at once and in order,
        where waiting for ``ack_wait`` would deliver newer messages first.
        """
        assert self.js is not None
        start_seq = 0
        for info in await self.js.consumers_info(stream):
            if not info.name.startswith(name_prefix):
                continue
            floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
            configured = int(info.config.opt_start_seq or 0)
            start_seq = max(start_seq, floor + 1, configured)
            if info.name != name:
                await self._delete_consumer(stream, info.name)
        with_start: Mapping[str, object] = (
            {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start_seq}
            if start_seq > 1
            else {"deliver_policy": DeliverPolicy.ALL}
        )
        config = ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.ALL,
            ack_wait=ACK_WAIT_S,
            max_ack_pending=max_ack_pending,
            **with_start,  # type: ignore[arg-type]
        )
        try:
            await self.js.add_consumer(stream, config)
        except nats.js.errors.BadRequestError:
            await self.js.consumer_info(stream, name)  # ours from before: keep it; else raise
        assert self.nc is not None
        consumer = PartitionConsumer(self.nc, stream, name)
        await consumer.start()
        return consumer

    async def _delete_consumer(self, stream: str, name: str) -> None:
        assert self.js is not None
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_consumer(stream, name)

    async def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        assert self.nc is not None
        await self.nc.publish(subject, body, headers=headers)

    async def flush(self, timeout_s: float = 10.0) -> None:
        assert self.nc is not None
        await self.nc.flush(timeout=timeout_s)

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except (TimeoutError, nats.errors.Error):
                await self.nc.close()


async def ack_all(delivery: Delivery) -> None:
    """Acknowledge ``delivery`` and, by the consumer's AckAll policy, everything before it."""
    await delivery.msg.ack()
