"""Where a latency tail comes from: the daemon at a fixed offered rate, instrumented.

    python benchmarks/latency_probe.py --rate 16000 [--seconds 8] [--vehicles 1000]
        [--env KINESTREAM_STATE__CHECKPOINT_INTERVAL_S=2] [--stall 0.3]

Runs `kinestream run` (through latency_probe_daemon.py) behind a private broker with the
benchmark's publisher and sink, and prints the latency percentiles and daemon CPU per reading
(as run.py measures them), the worst 50 ms windows by send time, the GC collections and the
event-loop callbacks longer than 2 ms during the trial (wall and CPU time: a callback whose
wall time is far above its CPU time was descheduled), and loop polls per message. `--stall S`
SIGSTOPs the daemon for S seconds 2 s into the traffic, to see how a backlog drains. Set
BENCH_SRC to measure another checkout (A/B).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import numpy as np

from benchlib import (
    free_port,
    private_broker,
    python_script,
    spawn,
    stop_process,
    wait_for_retained,
)
from pipeline import Trial, run_trial

WINDOW_S = 0.05
PUBLISHER_START_S = 1.0  # from starting the trial to its first publish, roughly


@contextlib.contextmanager
def probed_daemon(port: int, env: dict[str, str], out: Path) -> Iterator[Popen]:
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-probe-") as tmp:
        log = Path(tmp) / "daemon.log"
        args = python_script(
            "latency_probe_daemon.py", "run", "--broker", f"mqtt://127.0.0.1:{port}",
            "--state-dir", str(Path(tmp) / "state"), "--metrics-port", str(free_port()),
        )  # fmt: skip
        process = spawn(args, log, {**env, "PROBE_OUT": str(out)})
        try:
            if not wait_for_retained(port, "kinestream/status", b"online", 60.0):
                raise RuntimeError(log.read_text(errors="replace")[-2000:])
            yield process
        finally:
            stop_process(process)


def stall_later(pid: int, seconds: float) -> None:
    def stall() -> None:
        time.sleep(PUBLISHER_START_S + 2.0)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(pid, signal.SIGCONT)

    threading.Thread(target=stall, daemon=True).start()


def report(trial: Trial, events: dict, top: int) -> None:
    latency, sent = trial.latency_ms, trial.send_times
    start = sent.min()
    print(
        f"delivered {trial.delivered}/{trial.expected} at {trial.readings_per_s:,.0f}/s; "
        f"p50 {trial.p50_ms:.1f} / p90 {trial.p90_ms:.1f} / p99 {trial.p99_ms:.1f} / "
        f"max {latency.max():.1f} ms; daemon CPU {trial.cpu_us_per_reading:.1f} µs/reading, "
        f"Mosquitto {trial.broker_cpu_us_per_reading:.1f}; loop polls per message "
        f"{events['polls'] / trial.delivered:.3f} (daemon's whole life)"
    )
    window = ((sent - start) // WINDOW_S).astype(int)
    worst = np.zeros(window.max() + 1)
    np.maximum.at(worst, window, latency)
    print(f"50 ms windows with a max above 20 ms: {(worst > 20).sum()} of {len(worst)}; worst:")
    print("  " + ", ".join(f"{i * WINDOW_S:.2f} s: {worst[i]:.0f} ms" for i in
                           sorted(np.argsort(worst)[::-1][:top])))  # fmt: skip
    collections = [c for c in events["gc"] if c[0] >= start]
    for generation in (0, 1, 2):
        pauses = [c[2] * 1000 for c in collections if c[1] == generation]
        if pauses:
            print(f"GC gen {generation}: {len(pauses)} collections, max {max(pauses):.2f} ms, "
                  f"total {sum(pauses):.1f} ms")  # fmt: skip
    slow = sorted((s for s in events["slow"] if s[0] >= start), key=lambda s: -s[1])
    print(f"callbacks over the threshold during the trial: {len(slow)}; longest:")
    for at, wall, cpu, name in slow[:top]:
        print(f"  {at - start:+.3f} s  wall {wall * 1000:.1f} ms  CPU {cpu * 1000:.1f} ms  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, required=True, help="offered readings/s")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--vehicles", type=int, default=1_000)
    parser.add_argument("--env", action="append", default=[], help="K=V for the daemon")
    parser.add_argument("--stall", type=float, default=0.0, help="SIGSTOP the daemon S s")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-probe-") as tmp:
        out = Path(tmp) / "events.json"
        with private_broker() as broker, probed_daemon(broker.port, env, out) as daemon:
            if args.stall:
                stall_later(daemon.pid, args.stall)
            trial = run_trial(
                broker.port, daemon.pid, int(args.rate * args.seconds), args.vehicles, 0,
                args.rate, broker_pid=broker.process.pid,
            )  # fmt: skip
        events = json.loads(out.read_text())
    report(trial, events, args.top)


if __name__ == "__main__":
    sys.exit(main())
