"""``kinestream demo``: the whole product on one machine with no setup.

Starts a private broker (Mosquitto on a free loopback port, else the embedded amqtt broker),
the daemon (``python -m kinestream run`` in a child process with a temporary state dir and
its own metrics port), and a simulated fleet publishing live; then shows what the daemon
publishes, per vehicle, until Ctrl-C or ``duration_s``. Everything it started is stopped and
removed on the way out, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kinestream.errors import KinestreamError
from kinestream.fleet_view import FleetView
from kinestream.io.broker import (
    PrivateBroker,
    child_environment,
    free_port,
    start_private_broker,
    stop_process,
)
from kinestream.io.mqtt import ToolClient
from kinestream.simulator import SimulatedVehicle, build_fleet, bundled_profiles

TOPIC_PREFIX = "vehicles"
SERVICE_PREFIX = "kinestream"
PERIOD_S = 1.0
READY_TIMEOUT_S = 60.0
SNAPSHOT_INTERVAL_S = 5.0  # plain-text snapshots when stdout is not a terminal
REDRAW_INTERVAL_S = 1.0
CLEAR_SCREEN = "\x1b[H\x1b[2J"
_LOG_TAIL_CHARS = 1500


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration_s: float | None = None
    vehicles: int = 8
    seed: int = 0
    metrics_port: int | None = None
    broker: str = "auto"  # auto | mosquitto | embedded (see io.broker.start_private_broker)


class DaemonProcess:
    """``kinestream run`` in a child process, its output kept in a log file."""

    def __init__(self, broker_url: str, state_dir: Path, metrics_port: int) -> None:
        self.broker_url = broker_url
        self.state_dir = state_dir
        self.metrics_port = metrics_port
        self.log_path = state_dir.parent / "daemon.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "kinestream", "run",
            "--broker", self.broker_url,
            "--state-dir", str(self.state_dir),
            "--metrics-port", str(self.metrics_port),
            "--client-id", f"kinestream-demo-{os.getpid()}",
        ]  # fmt: skip

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_environment(),
            )

    def exited(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (the daemon checkpoints and says offline), SIGKILL after timeout_s."""
        process, self._process = self._process, None
        stop_process(process, timeout_s)

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return text[-_LOG_TAIL_CHARS:].strip() or "(no output)"


class DemoScreen:
    """The live table at a terminal; plain snapshots every few seconds otherwise."""

    def __init__(self, out: TextIO, interactive: bool, header: list[str]) -> None:
        self.out = out
        self.interactive = interactive
        self.header = header
        self._shown_at = 0.0

    def show(self, view: FleetView, elapsed_s: float, now: float) -> None:
        interval = REDRAW_INTERVAL_S if self.interactive else SNAPSHOT_INTERVAL_S
        if elapsed_s - self._shown_at < interval:
            return
        self._shown_at = elapsed_s
        if self.interactive:
            lines = [*self.header, "", *view.render(now), "", f"running {elapsed_s:.0f} s"]
            self.out.write(CLEAR_SCREEN + "\n".join(lines) + "\n")
        else:
            self.out.write(f"--- after {elapsed_s:.0f} s ---\n" + "\n".join(view.render(now)))
            self.out.write("\n")
        self.out.flush()

    def summary(self, view: FleetView, elapsed_s: float, now: float) -> None:
        trips = sum(row.trips_completed for row in view.vehicles.values())
        lines = [
            f"=== summary after {elapsed_s:.0f} s: {len(view.vehicles)} vehicles, "
            f"{view.kinematics_received} kinematics records, {trips} trips completed ===",
            *view.render(now),
        ]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo to the end; exit code 0, or KinestreamError with what went wrong."""
    with contextlib.ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kinestream-")))
        broker = start_private_broker(prefer=options.broker)
        cleanup.callback(broker.close)
        out.write(f"kinestream demo: starting the daemon against {broker.kind} on {broker.url}\n")
        out.flush()
        daemon = DaemonProcess(broker.url, workdir / "state", options.metrics_port or free_port())
        cleanup.callback(daemon.stop)
        daemon.start()
        return asyncio.run(_run(options, broker, daemon, out))


async def _run(
    options: DemoOptions, broker: PrivateBroker, daemon: DaemonProcess, out: TextIO
) -> int:
    view = FleetView()
    online = asyncio.Event()
    viewer = ToolClient(broker.url, on_message=_dispatch(view, online))
    await viewer.connect()
    try:
        await viewer.subscribe(
            f"{TOPIC_PREFIX}/+/kinematics", f"{TOPIC_PREFIX}/+/trips", f"{SERVICE_PREFIX}/status"
        )
        await _wait_online(online, daemon)
        header = [
            f"kinestream demo: {options.vehicles} simulated vehicles -> {broker.url} "
            f"({broker.kind}) -> daemon -> {TOPIC_PREFIX}/<id>/kinematics",
            f"metrics: http://127.0.0.1:{daemon.metrics_port}/metrics   "
            f"subscribe: {TOPIC_PREFIX}/+/kinematics on {broker.url}   stop: Ctrl-C",
        ]
        out.write("\n".join(header) + "\n")
        out.flush()
        screen = DemoScreen(out, out.isatty(), header)
        await _drive_and_show(
            options, url=broker.url, view=view, screen=screen, daemon=daemon, viewer=viewer
        )
    finally:
        await viewer.disconnect()
    return 0


def _dispatch(view: FleetView, online: asyncio.Event) -> object:
    def on_message(topic: str, payload: bytes, _retain: bool) -> None:
        if topic == f"{SERVICE_PREFIX}/status":
            if payload == b"online":
                online.set()
            return
        try:
            record = json.loads(payload)
        except ValueError:
            record = None  # counted as unreadable by the view
        if topic.endswith("/trips"):
            view.on_trip(record)
        else:
            view.on_kinematics(record, time.time())

    return on_message


async def _wait_online(online: asyncio.Event, daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not online.is_set():
        code = daemon.exited()
        if code is not None:
            raise KinestreamError(f"the daemon exited with code {code}: {daemon.log_tail()}")
        if time.monotonic() > deadline:
            raise KinestreamError(
                f"the daemon did not report online within {READY_TIMEOUT_S:.0f} s: "
                f"{daemon.log_tail()}"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(online.wait(), 0.2)


async def _drive_and_show(
    options: DemoOptions,
    *,
    url: str,
    view: FleetView,
    screen: DemoScreen,
    daemon: DaemonProcess,
    viewer: ToolClient,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    fleet = build_fleet(bundled_profiles(), options.vehicles, seed=options.seed, period_s=PERIOD_S)
    publisher = ToolClient(url)
    await publisher.connect()
    drivers = [asyncio.create_task(_drive(vehicle, publisher)) for vehicle in fleet]
    started = loop.time()
    try:
        while not stop.is_set():
            elapsed_s = loop.time() - started
            if options.duration_s is not None and elapsed_s >= options.duration_s:
                break
            if daemon.exited() is not None:
                raise KinestreamError(f"the daemon stopped: {daemon.log_tail()}")
            if viewer.lost.is_set() or publisher.lost.is_set():
                raise KinestreamError(f"lost the connection to the private broker {url}")
            screen.show(view, elapsed_s, time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        await publisher.disconnect()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    screen.summary(view, loop.time() - started, time.time())


async def _drive(vehicle: SimulatedVehicle, publisher: ToolClient) -> None:
    """Publish one reading per period at real pace, stamped with the current time."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(vehicle.start_delay_s)
    topic = f"{TOPIC_PREFIX}/{vehicle.vehicle_id}/speed"
    first = loop.time()
    step = 0
    while True:
        speed_mps = vehicle.sample_mps(step)
        if speed_mps is not None:
            payload = json.dumps(vehicle.payload(time.time(), speed_mps)).encode()
            await publisher.publish(topic, payload, qos=1)
        step += 1
        await asyncio.sleep(max(0.0, first + step * PERIOD_S - loop.time()))
