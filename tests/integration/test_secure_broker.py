"""TLS (mqtts://, CA verification) and username/password against a real Mosquitto."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kinestream.config import load_settings
from kinestream.io.broker import MosquittoBroker, find_mosquitto
from kinestream.io.mqtt import MqttLink

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_mosquitto() is None or shutil.which("openssl") is None,
        reason="needs mosquitto, mosquitto_passwd and openssl",
    ),
]
PASSWORD = "s3cret-pw-1234"


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    paths = {name: directory / f"{name}.pem" for name in ("ca", "ca-key", "server", "key")}
    csr = directory / "server.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", str(paths["ca-key"]), "-out", str(paths["ca"]))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(paths["key"]), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]), "-CAkey",
            str(paths["ca-key"]), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
            "-out", str(paths["server"]))  # fmt: skip
    return paths


class SecureMosquitto(MosquittoBroker):
    """TLS-only listener, no anonymous access, one user from a password file."""

    def __init__(self, directory: Path) -> None:
        self.certs = make_certificates(directory)
        self.password_file = directory / "passwd"
        self.password_file.touch()
        subprocess.run(
            ["mosquitto_passwd", "-b", str(self.password_file), "daemon", PASSWORD],
            check=True,
            capture_output=True,
        )
        super().__init__()

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    def config_text(self) -> str:
        return "\n".join(
            [
                f"listener {self.port} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {self.password_file}",
                f"cafile {self.certs['ca']}",
                f"certfile {self.certs['server']}",
                f"keyfile {self.certs['key']}",
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
                "log_dest stdout",
            ]
        ) + "\n"  # fmt: skip

    def _wait_ready(self, timeout_s: float) -> None:  # TLS: a TCP connect is enough here
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"secure mosquitto not ready: {self.log_tail()}")


@pytest.fixture
def secure_broker(tmp_path):
    broker = SecureMosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def connect(broker: SecureMosquitto, wait_s: float, **mqtt_settings: object) -> bool:
    settings = load_settings(
        overrides={
            "mqtt": {
                "broker": broker.url,
                "client_id": "secure-test",
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.2,
                **mqtt_settings,
            }
        }
    ).mqtt

    async def scenario() -> bool:
        link = MqttLink(settings, lambda *_: None)
        task = asyncio.ensure_future(link.connect_forever())
        await asyncio.wait([task], timeout=wait_s)
        connected = link.connected
        await link.close()
        task.cancel()
        return connected

    return asyncio.run(scenario())


def test_tls_with_ca_and_password_file_connects(secure_broker, tmp_path):
    """mqtts:// verifying the server against the configured CA, with the password read from a
    file, connects and subscribes."""
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    assert connect(
        secure_broker,
        15,
        username="daemon",
        password_file=str(password_file),
        tls_ca_file=str(secure_broker.certs["ca"]),
    )


def test_untrusted_server_certificate_is_refused(secure_broker):
    """Without the CA, the server's certificate does not verify: no connection (retrying)."""
    assert not connect(secure_broker, 2, username="daemon", password=PASSWORD)


def test_wrong_password_keeps_retrying_and_is_never_logged(secure_broker, caplog):
    """A refused password leaves the link retrying; neither password appears in any log."""
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-pw-5678"
    ca = str(secure_broker.certs["ca"])
    assert not connect(secure_broker, 2, username="daemon", password=wrong, tls_ca_file=ca)
    assert any("unavailable" in record.getMessage() for record in caplog.records)
    assert wrong not in caplog.text
    assert PASSWORD not in caplog.text
