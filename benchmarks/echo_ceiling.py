"""Bare echo ceilings of the Python MQTT clients on this machine (the MQTT client choice).

For each configuration: a fresh private Mosquitto, echo.py (receive + republish, nothing
else), the raw-socket publisher and sink; median of --runs trials.

    python benchmarks/echo_ceiling.py            # the full matrix (~10 min on 2 cores)
    python benchmarks/echo_ceiling.py --quick    # gmqtt only, 1 run each
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchlib import mosquitto_version, private_broker, python_script
from pipeline import Summary, run_trial, running, settle

VEHICLES = 1_000


@dataclass(frozen=True)
class EchoConfig:
    client: str
    qos_in: int = 0
    qos_out: int = 0
    uvloop: bool = False
    inflight: int = 20
    count: int = 200_000

    @property
    def label(self) -> str:
        return self.client + (" + uvloop" if self.uvloop else "")

    def args(self, port: int) -> list[str]:
        return python_script(
            "echo.py",
            *("--client", self.client, "--port", str(port)),
            *("--qos-in", str(self.qos_in), "--qos-out", str(self.qos_out)),
            *(["--uvloop"] if self.uvloop else []),
        )


def measure_echo(config: EchoConfig, runs: int, rate: float = 0.0) -> Summary:
    trials = []
    for _ in range(runs):
        with (
            private_broker(max_inflight=config.inflight) as broker,
            tempfile.TemporaryDirectory(prefix="kinestream-bench-echo-") as tmp,
            running(config.args(broker.port), "READY", Path(tmp) / "echo.log") as echo,
        ):
            trials.append(
                run_trial(broker.port, echo.pid, config.count, VEHICLES, config.qos_in, rate)
            )
        settle()
    return Summary(trials)


def matrix(quick: bool) -> list[EchoConfig]:
    slow = {"paho": 100_000, "aiomqtt": 40_000}
    clients = [("gmqtt", False), ("gmqtt", True)]
    if not quick:
        clients += [("paho", False), ("aiomqtt", False), ("aiomqtt", True)]
    configs = []
    for client, uv in clients:
        count = slow.get(client, 200_000)
        configs.append(EchoConfig(client, 0, 0, uv, 20, count))
        for inflight in (20, 1000):
            configs.append(EchoConfig(client, 1, 0, uv, inflight, count // 2))
    ackafter = ("gmqtt-ackafter", 1, 0, False)
    configs += [EchoConfig(*ackafter, inflight, 100_000) for inflight in (20, 1000)]
    if not quick:
        configs += [EchoConfig("gmqtt", 1, 1, False, 20, 100_000)]
    return configs


def row(config: EchoConfig, summary: Summary) -> str:
    rates = ", ".join(f"{t.readings_per_s / 1000:.1f}k" for t in summary.trials)
    delivered = summary.min_delivered_fraction
    return (
        f"| {config.label} | {config.qos_in}/{config.qos_out} | {config.inflight} "
        f"| **{summary.med('readings_per_s') / 1000:.1f}k** | {rates} "
        f"| {summary.med('cpu_us_per_reading'):.0f} | {summary.med('rss_mb'):.0f} "
        f"| {delivered:.1%} |"
    )


HEADER = (
    "| client | QoS in/out | max_inflight | msgs/s (median) | runs | echo CPU µs/msg "
    "| echo RSS MB | delivered |\n|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    print(f"Python {platform.python_version()}, Mosquitto {mosquitto_version()}, {runs} run(s)")
    print(HEADER, flush=True)
    for config in matrix(args.quick):
        print(row(config, measure_echo(config, runs)), flush=True)


if __name__ == "__main__":
    main()
