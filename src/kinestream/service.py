"""``kinestream run``: MQTT in → write-ahead log → Fleet → MQTT out, ticks, checkpoints.

This module only wires the pieces and runs their timers; each piece lives in its own module:
``io.mqtt`` (the link), ``durability`` (log batching, checkpoints, recovery), ``pipeline``
(one message to outputs), ``vehicles`` (per-vehicle clocks, deadlines, residency),
``io.metrics``, ``io.state_store``.

Shutdown (SIGTERM/SIGINT): stop consuming (announce ``offline`` and disconnect), write the log,
checkpoint, exit 0; everything is bounded so it takes well under 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from kinestream.config import Settings, WalFsync
from kinestream.core.fleet import Fleet
from kinestream.durability import Checkpointer, DurableLog, recover
from kinestream.errors import KinestreamError
from kinestream.gc_policy import freeze_startup_objects
from kinestream.io import metrics as metrics_http
from kinestream.io.metrics import Metrics
from kinestream.io.mqtt import Message, MqttLink
from kinestream.io.state_store import (
    WAL_DIR_NAME,
    StateDirLockedError,
    StateStore,
    lock_state_dir,
    release_state_dir,
)
from kinestream.io.wal import WriteAheadLog
from kinestream.pipeline import Pipeline
from kinestream.vehicles import VehicleBook

log = logging.getLogger(__name__)
_T = TypeVar("_T")
EVICT_EVERY_S = 10.0
WORK_SLICE = 256  # vehicles per loop pass for deadline and retained-state work
SCAN_SLICE = 4096  # deadline checks per loop pass
TICK_SLICE = 64  # due vehicles ticked per loop pass (~16 us each, closing trips: ~1 ms)
SHUTDOWN_STEP_TIMEOUT_S = 3.0


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ever_connected = False  # a later connection is then a reconnect

    def request_stop(self) -> None:
        self.stopping.set()

    async def run(self) -> int:
        state_dir = self.settings.state.dir
        try:
            lock = lock_state_dir(state_dir)
        except StateDirLockedError:
            raise
        except OSError as error:
            raise KinestreamError(f"state directory {str(state_dir)!r}: {error}") from None
        try:
            return await self._run_locked()
        finally:
            release_state_dir(lock)

    def _build(self) -> None:
        s = self.settings
        self.store = StateStore(s.state.dir)
        self.wal = WriteAheadLog(s.state.dir / WAL_DIR_NAME, s.state.wal_fsync)
        self.fleet = Fleet(s.tracker.to_params())
        self.book = VehicleBook(self.fleet, self.store, s.state.max_vehicles, s.state.idle_evict_s)
        self.link = MqttLink(s.mqtt, self._on_messages, self._on_connection_change)
        self.pipeline = Pipeline(
            self.fleet,
            self.book,
            self.link.publish,
            self.metrics,
            topic_prefix=s.mqtt.topic_prefix,
            service_prefix=s.mqtt.service_prefix,
            default_unit=s.tracker.default_unit,
            max_future_s=s.tracker.max_future_s,
            max_payload_bytes=s.mqtt.max_payload_bytes,
            output_qos=s.mqtt.output_qos,
            state_interval_s=s.mqtt.state_publish_interval_s,
        )
        self.durable = DurableLog(self.wal)
        self.checkpointer = Checkpointer(self.durable, self.store, self.book, self.metrics)

    async def _run_locked(self) -> int:
        self._build()
        server = None
        try:
            server = self._serve_metrics()
            await self._start_up()
            self._start_timers()
            await self.stopping.wait()
            await self._shutdown()
        finally:
            if server is not None:
                await asyncio.to_thread(server.shutdown)
                server.server_close()
            if not self.checkpointer.in_flight:  # else the writer thread still uses it
                self.store.close()
        return 0

    async def _start_up(self) -> None:
        """Restore and replay, checkpoint, then freeze what start-up made (``gc_policy``)."""
        _restored, report = recover(self.store, self.wal, self.book, self.pipeline, time.time())
        self.metrics.wal_replayed_messages = report.entries
        await self.checkpointer.checkpoint()  # covers the replayed log; opens a segment
        frozen = freeze_startup_objects()  # after the restore: its vehicles are long-lived
        log.debug("%d start-up objects exempted from garbage collection", frozen)

    def _start_timers(self) -> None:
        s = self.settings
        self._start(self.link.connect_and_supervise(), "mqtt")
        self._start(self._every(s.tracker.tick_interval_s, self._tick), "tick")
        self._start(self._every(s.state.checkpoint_interval_s, self._checkpoint), "checkpoint")
        self._start(self._every(EVICT_EVERY_S, self._evict), "evict")
        if s.state.wal_fsync is WalFsync.INTERVAL:
            self._start(self._every(s.state.wal_fsync_interval_s, self._fsync), "fsync")

    # Hot path ---------------------------------------------------------------------------
    def _on_messages(self, messages: list[Message]) -> Awaitable[object] | None:
        """One socket read's messages: into the log, then through the pipeline."""
        received_at = time.time()
        self.durable.append_batch(received_at, messages)
        self.pipeline.handle_batch(messages, received_at)
        return self.durable.durable() if any(message[2] for message in messages) else None

    # Timers -----------------------------------------------------------------------------
    async def _tick(self) -> None:
        """The per-second tick, in slices with a yield between them.

        Its cost grows with the vehicles active since the last tick (measured ~6.6 us per
        reading in one block); sliced, no callback holds the loop for more than about 1 ms.
        Deadlines are scanned ``SCAN_SLICE`` at a time but ticked ``TICK_SLICE`` at a time: a
        due vehicle's tick costs ~16 us, so a fleet falling silent at once made one scan slice
        of 4 096 due vehicles a ~65 ms block.
        """
        now = time.time()
        book, pipeline = self.book, self.pipeline
        for part in _slices(book.take_touched(), WORK_SLICE):
            book.refresh_deadlines(part)
            await asyncio.sleep(0)
        for part in _slices(list(book.due_at.items()), SCAN_SLICE):
            for due in _slices(book.due(now, part), TICK_SLICE):
                pipeline.tick_vehicles(book.due(now, due), now)  # checked again after a yield
                await asyncio.sleep(0)
            await asyncio.sleep(0)
        for part in _slices(list(book.pending_state), WORK_SLICE):
            pipeline.flush_state(now, part)
            await asyncio.sleep(0)
        self.link.flush_backlog()
        m = self.metrics
        m.active_vehicles = len(self.book)
        m.wal_size_bytes = self.wal.size_bytes
        m.evictions = self.book.evictions
        m.outputs_dropped = self.link.backlog_dropped
        m.published["status"] = self.link.status_published

    async def _checkpoint(self) -> None:
        await self.checkpointer.checkpoint()

    def _evict(self) -> None:
        evicted = self.book.evict_idle(time.time())
        if evicted:
            log.info("evicted %d idle vehicles to the state store", evicted)

    async def _fsync(self) -> None:
        await asyncio.to_thread(self.wal.sync)

    def _on_connection_change(self, connected: bool) -> None:
        was = self.metrics.broker_connected
        self.metrics.broker_connected = int(connected)
        if connected and self._ever_connected and not was:
            self.metrics.reconnects += 1
        self._ever_connected = self._ever_connected or connected

    async def _every(self, interval_s: float, action: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                result = action()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("periodic %s failed", getattr(action, "__name__", action))

    def _start(self, coroutine: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coroutine))
        self._tasks[-1].set_name(f"kinestream-{name}")

    def _serve_metrics(self) -> object:
        m = self.settings.metrics
        if not m.enabled:
            return None
        try:
            server = metrics_http.serve(self.metrics, m.bind, m.port)
        except OSError as error:
            raise KinestreamError(
                f"cannot serve metrics on {m.bind}:{m.port}: {error.strerror or error} "
                "(choose another with --metrics-port or metrics.port)"
            ) from None
        log.info("metrics on http://%s:%d/metrics", m.bind, server.server_address[1])
        return server

    # Shutdown ---------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        log.info("stopping: disconnecting, writing the log, checkpointing")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.close(), SHUTDOWN_STEP_TIMEOUT_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.durable.flush()
        try:
            await asyncio.wait_for(self.checkpointer.checkpoint(), SHUTDOWN_STEP_TIMEOUT_S)
        except TimeoutError:
            log.error("final checkpoint timed out; the log keeps everything for the next start")
        self.wal.close()
        log.info("stopped")


def _slices(items: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def install_signal_handlers(service: Service) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.request_stop)
