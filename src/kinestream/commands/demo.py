"""``kinestream demo``: a private broker, a simulated fleet, the daemon and a live table.

Needs nothing but this package: Mosquitto is used when installed, otherwise an embedded
Python broker. At a terminal the table redraws every second; otherwise a plain snapshot is
printed every few seconds and a summary at the end. ``--duration`` counts from the moment
the fleet starts driving.
"""

from __future__ import annotations

import argparse

from kinestream.commands import SUMMARIES
from kinestream.commands.arguments import positive_seconds, whole_number
from kinestream.demo import DemoOptions, run_demo
from kinestream.io.mqtt import quiet_mqtt_library_logs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help=SUMMARIES["demo"],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=positive_seconds,
        metavar="S",
        help="stop after S seconds (default: Ctrl-C)",
    )
    parser.add_argument(
        "--vehicles",
        type=whole_number(1, 10_000),
        default=8,
        metavar="N",
        help="simulated vehicles (default 8)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the fleet's noise")
    parser.add_argument(
        "--metrics-port", type=int, metavar="N", help="daemon metrics port (default: a free one)"
    )
    parser.add_argument(
        "--broker", choices=("auto", "mosquitto", "embedded"), default="auto",
        help="private broker: Mosquitto when installed (auto), or the embedded Python one",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_mqtt_library_logs()
    options = DemoOptions(
        duration_s=args.duration,
        vehicles=args.vehicles,
        seed=args.seed,
        metrics_port=args.metrics_port,
        broker=args.broker,
    )
    return run_demo(options)
