"""The shipped host Mosquitto config is accepted by the installed Mosquitto."""

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from kinestream.io.broker import find_mosquitto, free_port, mqtt_handshake_ok

pytestmark = pytest.mark.integration
CONFIG = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "mosquitto.conf"


def test_mosquitto_starts_with_the_host_config(tmp_path):
    """Every option in config/mosquitto/mosquitto.conf is valid for this Mosquitto version and
    the broker serves MQTT with it (port and persistence directory moved to the test's own)."""
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("needs the mosquitto binary (Debian package mosquitto)")
    port = free_port()
    replaced = {
        "listener": f"listener {port} 127.0.0.1",
        "persistence_location": f"persistence_location {tmp_path}/",
    }
    lines = [replaced.get(line.split(" ")[0], line) for line in CONFIG.read_text().splitlines()]
    lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
    local = tmp_path / "mosquitto.conf"
    local.write_text("\n".join(lines) + "\n")
    broker = subprocess.Popen(
        [binary, "-c", str(local)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 10.0
        while broker.poll() is None and not mqtt_handshake_ok("127.0.0.1", port):
            assert time.monotonic() < deadline, "mosquitto did not answer within 10 s"
            time.sleep(0.1)
        assert broker.poll() is None, f"mosquitto exited: {broker.communicate()[0]}"
    finally:
        broker.kill()
        broker.wait()
