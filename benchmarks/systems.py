"""The systems under test, each started against a private broker and always stopped after.

- echo: the bare gmqtt receive-and-republish (benchmarks/echo.py), the ceiling (and its
  variant with batched QoS 0 writes, `--client gmqtt-lean`);
- kinestream: the daemon, `python -m kinestream run` from this checkout's src/;
- nodered: Node-RED 4.1 running flow.json (mqtt in -> function -> mqtt out), headless.
Each `start_*` is a context manager yielding the process whose CPU and RSS are measured, or
raises UnavailableError with the reason when that system cannot run here.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchlib import (
    BENCH_DIR,
    REPO_DIR,
    free_port,
    python_script,
    spawn,
    stop_process,
    wait_for_line,
    wait_for_retained,
)

NODERED_DIR = BENCH_DIR / "nodered"
NODERED_MAIN = NODERED_DIR / "node_modules" / "node-red" / "red.js"
STATUS_TOPIC = "kinestream/status"


class UnavailableError(Exception):
    """This system cannot be measured here (the message says why)."""


# ---------------------------------------------------------------- echo


@contextlib.contextmanager
def start_echo(port: int, qos_in: int, client: str = "gmqtt") -> Iterator[subprocess.Popen]:
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-echo-") as tmp:
        log = Path(tmp) / "echo.log"
        args = python_script("echo.py", "--client", client, "--port", str(port))
        process = spawn([*args, "--qos-in", str(qos_in), "--qos-out", "0"], log)
        try:
            wait_for_line(log, "READY", process, 30.0)
            yield process
        finally:
            stop_process(process)


# ---------------------------------------------------------------- kinestream run


def daemon_available() -> str | None:
    """None if `kinestream run` exists in this checkout, else the reason it cannot run."""
    env_path = str(REPO_DIR / "src")
    result = subprocess.run(
        [sys.executable, "-m", "kinestream", "run", "--help"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        cwd=REPO_DIR,
        timeout=60,
        check=False,
    )
    if result.returncode == 0:
        return None
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return f"`kinestream run` not available yet ({last[:120]})"


@contextlib.contextmanager
def start_daemon(
    port: int, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    reason = daemon_available()
    if reason:
        raise UnavailableError(reason)
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-daemon-") as tmp:
        log = Path(tmp) / "daemon.log"
        args = [sys.executable, "-m", "kinestream", "run", "--broker", f"mqtt://127.0.0.1:{port}"]
        args += ["--state-dir", str(Path(tmp) / "state"), "--metrics-port", str(free_port())]
        process = spawn([*args, *extra], log, env)
        try:
            if not wait_for_retained(port, STATUS_TOPIC, b"online", 60.0):
                tail = log.read_text(errors="replace")[-1500:]
                raise UnavailableError(f"daemon never published {STATUS_TOPIC}=online: {tail}")
            yield process
        finally:
            stop_process(process)


# ---------------------------------------------------------------- Node-RED


def nodered_available() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not NODERED_MAIN.exists():
        return "Node-RED not installed (cd benchmarks/nodered && npm ci)"
    return None


def nodered_version() -> str:
    package = NODERED_MAIN.parent / "package.json"
    return json.loads(package.read_text())["version"] if package.exists() else "not installed"


def write_nodered_files(user_dir: Path, port: int, qos_in: int) -> Path:
    """A settings file (no editor, no admin API, private broker) and the flow pointed at it."""
    flow = json.loads((NODERED_DIR / "flow.json").read_text())
    for node in flow:
        if node["type"] == "mqtt-broker":
            node["broker"], node["port"] = "127.0.0.1", str(port)
        if node["type"] == "mqtt in":
            node["qos"] = str(qos_in)
    (user_dir / "flows.json").write_text(json.dumps(flow))
    settings = user_dir / "settings.js"
    settings.write_text(
        "module.exports = {\n"
        f"  uiPort: {free_port()}, uiHost: '127.0.0.1',\n"
        f"  userDir: {json.dumps(str(user_dir))}, flowFile: 'flows.json',\n"
        "  httpAdminRoot: false, httpNodeRoot: false, credentialSecret: false,\n"
        "  logging: { console: { level: 'info', metrics: false, audit: false } },\n"
        "  telemetry: { enabled: false }, diagnostics: { enabled: false },\n"
        "};\n"
    )
    return settings


@contextlib.contextmanager
def start_nodered(port: int, qos_in: int) -> Iterator[subprocess.Popen]:
    reason = nodered_available()
    if reason:
        raise UnavailableError(reason)
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-nodered-") as tmp:
        user_dir = Path(tmp)
        settings = write_nodered_files(user_dir, port, qos_in)
        log = user_dir / "nodered.log"
        args = ["node", str(NODERED_MAIN), "--settings", str(settings), "--userDir", tmp]
        process = spawn(args, log)
        try:
            wait_for_line(log, "Connected to broker", process, 60.0)
            # The subscription follows the connection; give it a moment to be acknowledged.
            wait_for_line(log, "Started flows", process, 10.0)
            time.sleep(1.0)
            yield process
        finally:
            stop_process(process)
