"""Where the daemon's CPU goes per reading: py-spy samples `kinestream run` under flat-out load.

    python benchmarks/profile_daemon.py [--count 60000] [--qos 0] [--top 30]

Prints, per function, the share of samples (self and inclusive) converted to µs per reading
with the daemon's measured CPU time (/proc/PID/stat), so findings read "function X costs Y µs
of each message". Needs py-spy (bench extra); sampling adds a little overhead of its own.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchlib import private_broker
from pipeline import run_trial
from systems import start_daemon


def callers_of(path: Path, name: str, depth: int = 6) -> collections.Counter:
    """The last `depth` frames of every sampled stack that contains `name`."""
    stacks: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [_short(frame) for frame in stack.split(";")]
        hits = [i for i, frame in enumerate(frames) if frame.startswith(name + " ")]
        if hits:
            stacks[" <- ".join(reversed(frames[max(0, hits[0] - depth) : hits[0] + 1]))] += int(
                count_text
            )
    return stacks


def collapsed_stats(path: Path) -> tuple[collections.Counter, collections.Counter, int]:
    """Self and inclusive sample counts per frame from py-spy's collapsed ("raw") output."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def _short(frame: str) -> str:
    # "handle (kinestream/pipeline.py:88)" -> "handle (kinestream/pipeline.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--vehicles", type=int, default=1_000)
    parser.add_argument("--callers", help="also print the stacks leading to this function")
    parser.add_argument("--offered", type=float, default=0.0, help="readings/s; 0 = flat out")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy not found: pip install py-spy (bench extra)")
    with tempfile.TemporaryDirectory(prefix="kinestream-bench-profile-") as tmp:
        out = Path(tmp) / "daemon.collapsed"
        with private_broker() as broker, start_daemon(broker.port) as daemon:
            spy = subprocess.Popen(
                [
                    *(py_spy, "record", "--pid", str(daemon.pid), "--format", "raw"),
                    *("--rate", str(args.rate), "--output", str(out), "--nonblocking"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                trial = run_trial(
                    broker.port, daemon.pid, args.count, args.vehicles, args.qos, args.offered
                )
            finally:
                spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
                spy.wait(timeout=30)
        own, inclusive, total = collapsed_stats(out)
        callers = callers_of(out, args.callers) if args.callers else collections.Counter()
    us = trial.cpu_us_per_reading or 0.0
    print(
        f"{trial.delivered} readings at {trial.readings_per_s:,.0f}/s, QoS {args.qos}; "
        f"daemon CPU {us:.1f} µs/reading; {total} samples (incl. idle waits)"
    )
    busy = total - sum(c for f, c in own.items() if ".select (" in f or f.startswith("select "))
    scale = us / busy if busy else 0.0
    print(f"\n{'self µs/reading':>16} {'incl µs/reading':>16}  function")
    for frame, count in own.most_common(args.top):
        print(f"{count * scale:>16.2f} {inclusive[frame] * scale:>16.2f}  {frame}")
    for stack, count in callers.most_common(8):
        print(f"\n{count} samples: {stack}")
    print(f"\n{'incl µs/reading':>16}  function (inclusive, top {args.top})")
    for frame, count in inclusive.most_common(args.top):
        print(f"{count * scale:>16.2f}  {frame}")


if __name__ == "__main__":
    main()
