"""Shared pieces of the benchmark scripts: a private Mosquitto, raw MQTT 3.1.1 framing for the
load generator and the measuring subscriber, and process bookkeeping.

The publisher and the measuring subscriber speak MQTT over a bare socket on purpose: on a
2-core machine every CPU cycle they spend is taken from the system under test, and a
pre-encoded byte stream costs far less than any client library.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")
TOPIC_PREFIX = "vehicles"
BASE_TS = 1767225600.0


# ---------------------------------------------------------------- MQTT 3.1.1 wire format


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        digit = n % 128
        n //= 128
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str) -> bytes:
    # Clean session, keepalive 0 (no PINGREQ needed for the benchmark's bounded lifetime).
    body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _utf8(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = struct.pack("!H", packet_id) + _utf8(topic_filter) + bytes([qos])
    return b"\x82" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    body = _utf8(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _remaining_length(len(body)) + body


def puback_packet(packet_id: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", packet_id)


def split_packets(buffer: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Complete packets (first byte, body) at the start of buffer, and the bytes they used."""
    packets = []
    pos = 0
    size = len(buffer)
    while pos + 2 <= size:
        multiplier, length, i = 1, 0, pos + 1
        while True:
            if i >= size:
                return packets, pos
            digit = buffer[i]
            length += (digit & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not digit & 0x80:
                break
        end = i + length
        if end > size:
            break
        packets.append((buffer[pos], bytes(buffer[i:end])))
        pos = end
    return packets, pos


def parse_publish(first_byte: int, body: bytes) -> tuple[str, bytes]:
    (topic_len,) = struct.unpack_from("!H", body)
    start = 2 + topic_len + (2 if first_byte & 0x06 else 0)
    return body[2 : 2 + topic_len].decode(), body[start:]


def open_mqtt(port: int, client_id: str, timeout_s: float = 10.0) -> socket.socket:
    """A connected, CONNACKed socket to the broker on 127.0.0.1:port."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(client_id))
    connack = _recv_exact(sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"broker refused connection: CONNACK {connack.hex()}")
    return sock


def subscribe(sock: socket.socket, topic_filter: str, qos: int) -> None:
    sock.sendall(subscribe_packet(1, topic_filter, qos))
    suback = _recv_exact(sock, 5)
    if suback[0] != 0x90 or suback[4] > 2:
        raise RuntimeError(f"subscription to {topic_filter!r} refused: SUBACK {suback.hex()}")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("broker closed the connection")
        data += chunk
    return data


def wait_for_retained(port: int, topic: str, expected: bytes, timeout_s: float) -> bool:
    """True once `topic` holds the retained payload `expected` (e.g. a readiness flag)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError):
            sock = open_mqtt(port, f"bench-probe-{os.getpid()}", timeout_s=1.0)
            try:
                subscribe(sock, topic, 0)
                sock.settimeout(0.5)
                buf = bytearray()
                with contextlib.suppress(TimeoutError):
                    while True:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                        packets, _ = split_packets(buf)
                        for first, body in packets:
                            if first >> 4 == 3 and parse_publish(first, body)[1] == expected:
                                return True
            finally:
                sock.close()
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------- workload


def vehicle_id(index: int) -> str:
    return f"v{index:05d}"


def speed_payload(step: int, vehicle: int) -> bytes:
    """About 60 bytes of JSON: event time one second apart per vehicle, a smooth speed."""
    speed_mps = 15.0 + 5.0 * ((step * 7 + vehicle * 13) % 100) / 100.0
    ts = BASE_TS + step + (vehicle % 1000) / 1000.0
    return b'{"ts":%.3f,"speed":%.6f,"unit":"m/s"}' % (ts, speed_mps)


def step_from_ts(ts: float, vehicle: int) -> int:
    """Inverse of speed_payload's event time: which step of that vehicle a record belongs to."""
    return round(ts - BASE_TS - (vehicle % 1000) / 1000.0)


def message_index(vehicle: int, step: int, vehicles: int) -> int:
    """Inverse of the publisher's order: message k goes to vehicle k % V, step k // V."""
    return step * vehicles + vehicle


# ---------------------------------------------------------------- processes


@dataclass
class Broker:
    port: int
    process: subprocess.Popen
    workdir: Path


def mosquitto_binary() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mosquitto_version() -> str:
    binary = mosquitto_binary()
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].replace("mosquitto version ", "") if out else "unknown"


@contextlib.contextmanager
def private_broker(max_inflight: int = 20, max_queued: int = 1_000_000) -> Iterator[Broker]:
    """A throwaway Mosquitto on a free loopback port (never the shared one on 1883).

    max_queued is raised from the default 1000 so a QoS 1 burst is never dropped by the
    broker while the consumer catches up (QoS 0 is dropped by the in-flight rules anyway).
    """
    binary = mosquitto_binary()
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    workdir = Path(tempfile.mkdtemp(prefix="kinestream-bench-broker-"))
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        f"max_inflight_messages {max_inflight}\n"
        f"max_queued_messages {max_queued}\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n"
    )
    log = (workdir / "mosquitto.log").open("wb")
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_for_port(port, process)
        yield Broker(port, process, workdir)
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited at start with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on port {port} within {timeout_s} s")


def stop_process(process: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within grace_s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)


def spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a child in its own process group (so cleanup kills its children too)."""
    full_env = dict(os.environ)
    # BENCH_SRC: measure another checkout's kinestream (A/B comparisons of a change).
    src = os.environ.get("BENCH_SRC", str(REPO_DIR / "src"))
    full_env["PYTHONPATH"] = os.pathsep.join([src, str(BENCH_DIR), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO_DIR,
            start_new_session=True,
        )
    finally:
        log.close()


def python_script(name: str, *args: str) -> list[str]:
    return [sys.executable, str(BENCH_DIR / name), *args]


def wait_for_line(path: Path, marker: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Wait until a child's log contains marker (its readiness signal)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and marker in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            tail = path.read_text(errors="replace")[-2000:] if path.exists() else ""
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}: {tail}")
        time.sleep(0.05)
    raise RuntimeError(f"{process.args[:3]} not ready within {timeout_s} s")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
