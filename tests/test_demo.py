"""`kinestream demo` end to end: broker, simulated fleet, daemon, table; nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains text (read from /proc, Linux only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def summary_rows(stdout: str) -> dict[str, list[str]]:
    """The final summary's table rows by vehicle id (header and footer skipped)."""
    lines = stdout.split("=== summary", 1)[1].splitlines()[1:]
    assert lines[0].startswith("vehicle")
    return {line.split()[0]: line.split() for line in lines[1:-1]}


def test_demo_runs_without_a_terminal_and_shows_moving_vehicles():
    """With stdout not a terminal, `demo --duration 8` prints where the metrics are, plain
    snapshots and a final summary in which every vehicle has driven a non-zero distance;
    it exits 0 and leaves no daemon running."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "kinestream", "demo", "--duration", "8", "--vehicles", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    try:
        stdout, stderr = demo.communicate(timeout=180)
    finally:
        demo.kill()
    assert demo.returncode == 0, stderr
    assert "metrics: http://127.0.0.1:" in stdout
    assert "\x1b[" not in stdout  # no terminal control codes into a pipe or file
    assert "--- after 5 s ---" in stdout
    rows = summary_rows(stdout)
    assert len(rows) == 4
    distance_column = 3  # vehicle, speed, accel, distance km, ...
    assert all(float(row[distance_column]) > 0 for row in rows.values()), rows
    assert processes_mentioning(f"kinestream-demo-{demo.pid}") == []
