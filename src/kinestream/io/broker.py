"""Private MQTT brokers for tests and the demo: Mosquitto on a free loopback port, else amqtt.

Both kinds run as child processes behind one interface (`start`, `stop`, `kill`, `restart`,
`url`), so tests can kill or restart either the same way. Mosquitto gets a generated config
(listener on 127.0.0.1 only, anonymous access, optional persistence, in-flight and queue
limits); the embedded fallback runs amqtt in a child interpreter (``python -m
kinestream.io.broker --port N``) for machines without the Debian binary. Nothing here ever
touches the shared broker on port 1883: every broker gets a port of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kinestream.errors import KinestreamError

LOOPBACK = "127.0.0.1"
MOSQUITTO_FALLBACK_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_LOG_TAIL_CHARS = 2000

# Every broker started by this process, so that an interpreter exit never leaves one behind.
_LIVE_BROKERS: weakref.WeakSet[PrivateBroker] = weakref.WeakSet()


class BrokerError(KinestreamError):
    """A private broker could not be started or did not become ready."""


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """What a private broker is configured with.

    ``max_inflight_messages`` and ``max_queued_messages`` are Mosquitto's per-client limits
    (defaults 20 and 1000 there); ``None`` keeps the broker's default. ``max_queued_messages``
    0 means unlimited. ``persistence`` keeps sessions and queued messages across `restart`.
    The embedded broker ignores all three (amqtt has no such settings and keeps nothing).
    """

    port: int | None = None
    persistence: bool = False
    max_inflight_messages: int | None = None
    max_queued_messages: int | None = None


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (PATH, then Debian's /usr/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in MOSQUITTO_FALLBACK_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _connect_packet(client_id: bytes) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session (built by hand: no client library here)."""
    variable_header = b"\x00\x04MQTT\x04\x02\x00\x0a"
    payload = len(client_id).to_bytes(2, "big") + client_id
    remaining = variable_header + payload
    return b"\x10" + bytes([len(remaining)]) + remaining


def mqtt_handshake_ok(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when an MQTT server at host:port answers CONNECT with an accepting CONNACK.

    A listening socket is not enough: a broker may accept TCP before it serves MQTT.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(_connect_packet(b"kinestream-probe-%d" % os.getpid()))
            connack = sock.recv(4)
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT, so no will or session lingers
    except OSError:
        return False
    return len(connack) == 4 and connack[0] == 0x20 and connack[3] == 0


def _load_prctl() -> Callable[[int, int], int] | None:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


# Resolved here, not in the child: between fork and exec only this call runs, and no import
# (whose lock another thread of a test process may hold at the fork) can deadlock it.
_PRCTL = _load_prctl() if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the parent dies (even by kill -9)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_environment() -> dict[str, str]:
    """Our environment, with this very copy of kinestream (installed or not) first on
    PYTHONPATH, for a child ``python -m kinestream...``."""
    source_root = str(Path(__file__).resolve().parents[2])
    inherited = os.environ.get("PYTHONPATH")
    path = source_root if not inherited else os.pathsep.join([source_root, inherited])
    return {**os.environ, "PYTHONPATH": path}


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after timeout_s; nothing to do when it already exited."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class PrivateBroker:
    """A broker child process on 127.0.0.1:port; subclasses say how to launch it.

    The port is chosen once and kept across `restart`, so clients reconnect to the same URL.
    Use as a context manager, or call `stop` (a finalizer): a broker that fails to become
    ready is killed before the error is raised.
    """

    kind = "broker"

    def __init__(self, options: BrokerOptions | None = None, workdir: str | None = None) -> None:
        self.options = options or BrokerOptions()
        self.host = LOOPBACK
        self.port = self.options.port or free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"kinestream-{self.kind}-"))
        self.log_path = self.workdir / f"{self.kind}.log"
        self._process: subprocess.Popen[bytes] | None = None
        _LIVE_BROKERS.add(self)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        return None  # inherit ours

    def start(self, timeout_s: float = 15.0) -> PrivateBroker:
        """Launch the broker and return once it completes an MQTT handshake."""
        if self.is_running():
            return self
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                preexec_fn=_die_with_parent if _PRCTL is not None else None,  # noqa: PLW1509
            )
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise BrokerError(
                    f"{self.kind} on port {self.port} exited with code "
                    f"{self._process.returncode if self._process else None}: {self.log_tail()}"
                )
            if mqtt_handshake_ok(self.host, self.port):
                return
            time.sleep(0.05)
        raise BrokerError(
            f"{self.kind} on port {self.port} not ready after {timeout_s} s: {self.log_tail()}"
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file), SIGKILL after timeout_s."""
        process, self._process = self._process, None
        stop_process(process, timeout_s)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved since the last autosave."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self, timeout_s: float = 15.0) -> PrivateBroker:
        """Stop gracefully and start again on the same port (same persistence directory)."""
        self.stop()
        return self.start(timeout_s)

    def close(self) -> None:
        """Stop the broker and remove the temporary directory this object created."""
        self.stop()
        _LIVE_BROKERS.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-_LOG_TAIL_CHARS:].strip() or "(empty log)"

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.url} {state} pid={self.pid}>"


class MosquittoBroker(PrivateBroker):
    """Debian's mosquitto with a generated config in its own temporary directory."""

    kind = "mosquitto"

    def __init__(
        self,
        options: BrokerOptions | None = None,
        workdir: str | None = None,
        binary: str | None = None,
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise BrokerError("no mosquitto binary on PATH or in /usr/sbin")
        self.binary = found
        super().__init__(options, workdir)
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text(self.config_text())

    def config_text(self) -> str:
        """The generated mosquitto.conf: loopback only, anonymous, the configured limits."""
        lines = [
            f"listener {self.port} {LOOPBACK}",
            "allow_anonymous true",
            # Run as root, mosquitto would drop to user `mosquitto`, which cannot write the
            # persistence file into our private temporary directory: stay who we are.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "set_tcp_nodelay true",
        ]
        if self.options.max_inflight_messages is not None:
            lines.append(f"max_inflight_messages {self.options.max_inflight_messages}")
        if self.options.max_queued_messages is not None:
            lines.append(f"max_queued_messages {self.options.max_queued_messages}")
        if self.options.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.workdir}/",
                "autosave_interval 1",
            ]
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]


class EmbeddedBroker(PrivateBroker):
    """amqtt (pure Python) in a child interpreter: the fallback where mosquitto is missing.

    It keeps no persistence and has no in-flight or queue limits; tests that depend on those
    must skip when only this broker is available.
    """

    kind = "embedded"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kinestream.io.broker", "--port", str(self.port)]

    def environment(self) -> dict[str, str]:
        return child_environment()


def start_private_broker(
    options: BrokerOptions | None = None, *, prefer: str = "auto"
) -> PrivateBroker:
    """Start and return a ready private broker: Mosquitto when present, else the embedded one.

    ``prefer`` is ``auto``, ``mosquitto`` (fail without the binary) or ``embedded``.
    """
    if prefer not in {"auto", "mosquitto", "embedded"}:
        raise ValueError(f"prefer must be auto, mosquitto or embedded, not {prefer!r}")
    use_mosquitto = prefer == "mosquitto" or (prefer == "auto" and find_mosquitto())
    if not use_mosquitto and importlib.util.find_spec("amqtt") is None:
        raise BrokerError(
            "no mosquitto binary (Debian: apt-get install mosquitto) and no amqtt for the "
            "embedded broker (pip install 'kinestream[demo]'): install either"
        )
    broker: PrivateBroker = MosquittoBroker(options) if use_mosquitto else EmbeddedBroker(options)
    try:
        return broker.start()
    except BaseException:
        broker.close()
        raise


@atexit.register
def _stop_all_brokers() -> None:
    for broker in list(_LIVE_BROKERS):
        with contextlib.suppress(Exception):
            broker.close()


# --- the embedded broker's child process -------------------------------------------------


async def _serve_amqtt(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    """``python -m kinestream.io.broker --port N``: serve amqtt on 127.0.0.1:N until SIGTERM."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve_amqtt(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
