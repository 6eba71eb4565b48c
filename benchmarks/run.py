"""kinestream's benchmark harness: one command, one table.

    python benchmarks/run.py            # full: medians of 3 runs, ~15 min on 2 cores
    python benchmarks/run.py --quick    # 1 run each, smaller counts, ~8 min
    python benchmarks/run.py --skip nodered,offline --markdown out.md

Online rows (private Mosquitto on a free port, separate publisher and measuring subscriber):
throughput first publish -> last kinematics received, readings/s; latency publish ->
kinematics at 50% and 90% of the measured max rate; daemon CPU µs per reading
(/proc/PID/stat) and RSS; QoS 1 in with the daemon's write-ahead log on. Every throughput is
also given as a ratio to the bare gmqtt echo measured in the same run (benchmarks/echo.py),
which survives a noisy shared machine better than absolute figures. The Node-RED peer runs
the flow in benchmarks/nodered/ against the same broker. Offline rows: `kinestream process`
per method, the batch core per method on 1 000 vehicles, RSS per vehicle with 100 000.
Anything not available (e.g. a command not landed yet) is printed as "not available: why".
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchlib import mosquitto_version, private_broker, rss_bytes
from offline import offline_rows
from pipeline import Summary, run_trial, settle
from systems import (
    UnavailableError,
    nodered_available,
    nodered_version,
    start_daemon,
    start_echo,
    start_nodered,
)

VEHICLES = 1_000
SECTIONS = ("ceiling", "kinestream", "latency", "qos1", "nodered", "memory", "offline")
MEMORY_VEHICLES = 100_000
MEMORY_RATE = 2_500.0  # readings/s of first-seen vehicles the daemon keeps up with here


@dataclass
class Plan:
    runs: int
    flat_out_count: int
    latency_seconds: float
    nodered_count: int
    offline_scale: float


QUICK = Plan(runs=1, flat_out_count=40_000, latency_seconds=4.0, nodered_count=20_000,
             offline_scale=0.2)  # fmt: skip
FULL = Plan(runs=3, flat_out_count=150_000, latency_seconds=10.0, nodered_count=60_000,
            offline_scale=1.0)  # fmt: skip


@dataclass
class Row:
    name: str
    value: str
    reference: str = ""
    goal: str = ""
    verdict: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: str) -> None:
        self.rows.append(Row(*args))
        print(f"  {args[0]}: {args[1]} {args[2] if len(args) > 2 else ''}", flush=True)


def measure(start: Callable, qos: int, count: int, runs: int, rate: float = 0.0) -> Summary:
    """Median-able trials; each with a fresh broker and a fresh system under test."""
    trials = []
    for _ in range(runs):
        with private_broker() as broker, start(broker.port) as process:
            trials.append(
                run_trial(
                    broker.port, process.pid, count, VEHICLES, qos, rate,
                    broker_pid=broker.process.pid,
                )
            )  # fmt: skip
        settle()
    return Summary(trials)


def kilo(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate / 1000:.1f}k/s"


def rate_cell(summary: Summary) -> str:
    lost = 1.0 - summary.min_delivered_fraction
    text = f"{kilo(summary.med('readings_per_s'))} (spread {summary.spread:.0%})"
    return text + (f", {lost:.1%} NOT DELIVERED" if lost > 0 else "")


def check(ok: bool) -> str:
    return "met" if ok else "NOT met"


ECHOES = (
    ("gmqtt", "gmqtt bare echo"),
    ("gmqtt-lean", "gmqtt echo, batched QoS 0 writes"),
    ("raw", "asyncio echo, no client library (the machine's floor)"),
)


def online_rows(plan: Plan, skip: set[str], report: Report) -> None:
    ceilings: dict[tuple[str, int], float] = {}
    for qos in (0, 1):
        for client, label in ECHOES:
            if "ceiling" in skip:
                break
            summary = measure(
                lambda port, q=qos, c=client: start_echo(port, q, c), qos,
                plan.flat_out_count, plan.runs,
            )  # fmt: skip
            ceilings[client, qos] = summary.med("readings_per_s")
            cpu, broker_cpu = (
                summary.med("cpu_us_per_reading"),
                summary.med("broker_cpu_us_per_reading"),
            )
            note = "the ceiling" if client == "gmqtt" else "reference"
            report.add(
                f"{label}, QoS {qos} in ({note})",
                rate_cell(summary),
                f"echo {cpu:.0f} µs/msg, Mosquitto {broker_cpu:.0f} µs/msg",
            )
    kinestream_max = None
    if "kinestream" not in skip:
        kinestream_max = daemon_row(plan, 0, ceilings, report)
    if "latency" not in skip and kinestream_max:
        latency_rows(plan, kinestream_max, report)
    if "qos1" not in skip:
        daemon_row(plan, 1, ceilings, report)
    if "nodered" not in skip:
        nodered_rows(plan, kinestream_max, report)
    if "memory" not in skip:
        daemon_memory_row(plan, report, MEMORY_RATE)


def daemon_row(
    plan: Plan, qos: int, ceilings: dict[tuple[str, int], float], report: Report
) -> float | None:
    name = f"kinestream run, QoS {qos} in" + (" (write-ahead log before PUBACK)" if qos else "")
    try:
        summary = measure(start_daemon, qos, plan.flat_out_count, plan.runs)
    except UnavailableError as why:
        report.add(name, f"not available: {why}")
        return None
    rate = summary.med("readings_per_s")
    ceiling, lean = ceilings.get(("gmqtt", qos)), ceilings.get(("gmqtt-lean", qos))
    ratio = rate / ceiling if ceiling else None
    goal = "≥ 30k/s and ≥ 0.7 × ceiling" if qos == 0 else "≥ 0.7 × QoS 1 ceiling"
    ok = (ratio or 0) >= 0.7 and (qos == 1 or rate >= 30_000)
    ratio_text = f"{ratio:.2f} × ceiling" if ratio else "no ceiling measured"
    if lean:
        ratio_text += f", {rate / lean:.2f} × batched echo"
    report.add(name, rate_cell(summary), ratio_text, goal, check(ok))
    cpu, rss = summary.med("cpu_us_per_reading"), summary.med("rss_mb")
    broker_cpu = summary.med("broker_cpu_us_per_reading")
    report.add(
        f"daemon CPU per reading, QoS {qos}",
        f"{cpu:.1f} µs",
        f"RSS {rss:.0f} MB; Mosquitto {broker_cpu:.0f} µs/reading",
    )
    return rate


def latency_rows(plan: Plan, max_rate: float, report: Report) -> None:
    for fraction in (0.5, 0.9):
        rate = max_rate * fraction
        count = int(rate * plan.latency_seconds)
        summary = measure(start_daemon, 0, count, plan.runs, rate=rate)
        p50, p90, p99 = (summary.med(f"p{p}_ms") for p in (50, 90, 99))
        goal = "p99 ≤ 20 ms" if fraction == 0.5 else ""
        # Kept up: the output rate matches the offered one (it lags only by the latency).
        kept_up = summary.med("readings_per_s") / rate
        report.add(
            f"latency publish → kinematics at {fraction:.0%} of max ({kilo(rate)} offered)",
            f"p50 {p50:.1f} / p90 {p90:.1f} / p99 {p99:.1f} ms",
            f"output rate {kept_up:.0%} of offered, CPU {summary.med('cpu_us_per_reading'):.0f} µs"
            f"; p99 to the sink's read {summary.med('p99_read_ms'):.1f} ms",
            goal,
            check(p99 <= 20.0) if goal else "",
        )


def nodered_rows(plan: Plan, kinestream_max: float | None, report: Report) -> None:
    reason = nodered_available()
    if reason:
        report.add("Node-RED flow, QoS 0 in", f"not available: {reason}")
        return
    summary = measure(lambda port: start_nodered(port, 0), 0, plan.nodered_count, plan.runs)
    rate = summary.med("readings_per_s")
    verdict = check(kinestream_max is not None and kinestream_max > rate)
    reference = f"kinestream {kinestream_max / rate:.1f} × faster" if kinestream_max else ""
    report.add(
        f"Node-RED {nodered_version()} flow, QoS 0 in", rate_cell(summary), reference,
        "kinestream faster", verdict,
    )  # fmt: skip
    cpu, rss = summary.med("cpu_us_per_reading"), summary.med("rss_mb")
    report.add("Node-RED CPU per reading", f"{cpu:.1f} µs", f"RSS {rss:.0f} MB")


def daemon_memory_row(plan: Plan, report: Report, rate: float) -> None:
    """The daemon's RSS growth from ready (no vehicle) to 100 000 vehicles tracked, right
    after the traffic and again once checkpoints (every 5 s here) have saved them all.

    Offered at a rate the daemon sustains for first-seen vehicles (each one costs a state-store
    lookup and a new tracker): flat out, the client's backlog would be counted too."""
    name = f"daemon RSS per tracked vehicle ({MEMORY_VEHICLES:,} vehicles, 1 reading each)"
    checkpoint_s = 5.0
    env = {"KINESTREAM_STATE__CHECKPOINT_INTERVAL_S": str(checkpoint_s)}
    try:
        with (
            private_broker() as broker,
            start_daemon(broker.port, env=env) as daemon,
        ):
            before = rss_bytes(daemon.pid)
            run_trial(broker.port, daemon.pid, MEMORY_VEHICLES, MEMORY_VEHICLES, 0, rate)
            after_traffic = rss_bytes(daemon.pid)
            time.sleep(3 * checkpoint_s)  # at least one checkpoint of every vehicle
            after_checkpoint = rss_bytes(daemon.pid)
    except UnavailableError as why:
        report.add(name, f"not available: {why}")
        return
    traffic = (after_traffic - before) / MEMORY_VEHICLES
    steady = (after_checkpoint - before) / MEMORY_VEHICLES
    report.add(
        name,
        f"{steady:,.0f} B ({traffic:,.0f} B right after the traffic)",
        f"RSS {before / 1e6:.0f} → {after_traffic / 1e6:.0f} → {after_checkpoint / 1e6:.0f} MB, "
        f"{rate / 1000:.1f}k/s offered, checkpoints every {checkpoint_s:.0f} s",
        "≤ 2 KB",
        check(steady <= 2048),
    )


def versions() -> str:
    import gmqtt

    return (
        f"Python {platform.python_version()}, gmqtt {gmqtt.__version__}, "
        f"Mosquitto {mosquitto_version()}, Node-RED {nodered_version()}, "
        f"{os.cpu_count()} cores ({platform.machine()})"
    )


def markdown(report: Report, plan: Plan) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {today}; {versions()}; median of {plan.runs} run(s), 1 000 vehicles.",
        "",
        "| measurement | result | reference | goal | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {r.value} | {r.reference} | {r.goal} | {r.verdict} |" for r in report.rows
    ]
    lines += ["", *report.notes]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 run each, smaller counts")
    parser.add_argument("--runs", type=int, help="override the number of runs")
    parser.add_argument("--skip", default="", help=f"comma-separated, from {','.join(SECTIONS)}")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan.runs = args.runs
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    report = Report()
    print(versions(), flush=True)
    online_rows(plan, skip, report)
    if "offline" not in skip:
        offline_rows(plan.offline_scale, plan.runs, report)
    table = markdown(report, plan)
    print("\n" + table)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
