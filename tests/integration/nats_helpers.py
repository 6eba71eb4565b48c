"""A private nats-server (the shipped config on free loopback ports), workers, an observer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kinestream.io.broker import free_port
from tests.integration.helpers import SRC, wait_until

REPO = SRC.parent
SERVER_CONFIG = REPO / "config" / "nats" / "nats-server.conf"
NATS_SERVER_PATHS = ("/usr/sbin/nats-server", "/usr/bin/nats-server")


def find_nats_server() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    return next((path for path in NATS_SERVER_PATHS if os.access(path, os.X_OK)), None)


def server_config_for_test(
    text: str, client_port: int, mqtt_port: int, store: Path, partitions: int
) -> str:
    """The shipped config with loopback ports, a private store and ``partitions``."""
    text = text.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{client_port}")
    text = text.replace("listen: 0.0.0.0:1883", f"listen: 127.0.0.1:{mqtt_port}")
    text = re.sub(r"^http: .*$", "", text, flags=re.MULTILINE)
    text = text.replace('store_dir: "/var/lib/nats"', f'store_dir: "{store}"')
    return text.replace("partition(8,1)", f"partition({partitions},1)")


@dataclass
class NatsServer:
    process: subprocess.Popen[bytes]
    client_port: int
    mqtt_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_nats_server(directory: Path, partitions: int) -> NatsServer:
    binary = find_nats_server()
    assert binary is not None, "nats-server is missing: apt-get install nats-server"
    client_port, mqtt_port = free_port(), free_port()
    config = directory / "nats-server.conf"
    config.write_text(
        server_config_for_test(
            SERVER_CONFIG.read_text(), client_port, mqtt_port, directory / "store", partitions
        )
    )
    log_path = directory / "nats-server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    server = NatsServer(process, client_port, mqtt_port, log_path)
    try:
        wait_until(lambda: _listening(client_port) and _listening(mqtt_port), "nats-server")
    except AssertionError:
        server.close()
        raise AssertionError(f"nats-server did not start: {log_path.read_text()}") from None
    return server


def _listening(port: int) -> bool:
    with contextlib.closing(socket.socket()) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Worker:
    """`python -m kinestream run --transport nats` as a child process."""

    def __init__(
        self,
        server: NatsServer,
        worker_id: str,
        partitions: int,
        log_dir: Path,
        args: Sequence[str] = (),
    ) -> None:
        self.worker_id = worker_id
        self.log_path = log_dir / f"{worker_id}.log"
        command = [
            sys.executable, "-m", "kinestream", "run", "--transport", "nats",
            "--nats-url", server.url, "--partitions", str(partitions),
            "--worker-id", worker_id, "--metrics-port", "0", *args,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def terminate(self, timeout_s: float = 10.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass(frozen=True)
class Output:
    subject: str
    body: bytes
    worker: str | None
    seq: int | None
    received_at: float  # wall time the observer got it


class NatsObserver:
    """Subscribes on its own event loop thread; ``outputs`` in arrival order; KV look-ups."""

    def __init__(self, url: str, subjects: Sequence[str]) -> None:
        import nats

        self.outputs: list[Output] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def start() -> object:
            nc = await nats.connect(url)
            for subject in subjects:
                await nc.subscribe(subject, cb=self._on_message, pending_msgs_limit=-1)
            await nc.flush()
            return nc

        self._nc = self._call(start())

    def _call(self, coroutine: object, timeout_s: float = 30.0) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)  # type: ignore[arg-type]

    async def _on_message(self, msg: object) -> None:
        headers = getattr(msg, "headers", None) or {}
        seq = headers.get("Kinestream-Seq")
        output = Output(
            msg.subject,  # type: ignore[attr-defined]
            msg.data,  # type: ignore[attr-defined]
            headers.get("Kinestream-Worker"),
            int(seq) if seq is not None else None,
            time.time(),
        )
        with self._lock:
            self.outputs.append(output)

    def snapshot(self) -> list[Output]:
        with self._lock:
            return list(self.outputs)

    def kv_items(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Live keys under ``prefix`` and their values (from the stream's subjects, then gets)."""

        async def read() -> dict[str, bytes]:
            import nats.js.errors

            js = self._nc.jetstream()  # type: ignore[attr-defined]
            try:
                kv = await js.key_value(bucket)
                info = await js.stream_info(
                    f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.{prefix}>"
                )
            except nats.js.errors.NotFoundError:
                return {}
            found: dict[str, bytes] = {}
            for subject in info.state.subjects or {}:
                key = subject[len(f"$KV.{bucket}.") :]
                with contextlib.suppress(
                    nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError
                ):
                    found[key] = (await kv.get(key)).value or b""
            return found

        return self._call(read())  # type: ignore[return-value]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._nc.close(), 10)  # type: ignore[attr-defined]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
