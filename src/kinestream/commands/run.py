"""``kinestream run``: the daemon (settings from --config, KINESTREAM_* and these flags)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from kinestream.commands import SUMMARIES
from kinestream.config import Settings, load_settings
from kinestream.io.eventloop import new_event_loop

# flag attribute -> (section, key) in the settings
FLAG_KEYS: dict[str, tuple[str, str]] = {
    "broker": ("mqtt", "broker"),
    "client_id": ("mqtt", "client_id"),
    "topic_prefix": ("mqtt", "topic_prefix"),
    "metrics_port": ("metrics", "port"),
    "state_dir": ("state", "dir"),
    "method": ("tracker", "method"),
    "default_unit": ("tracker", "default_unit"),
    "nats_url": ("nats", "url"),
    "partitions": ("nats", "partitions"),
    "worker_id": ("nats", "worker_id"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help=SUMMARIES["run"],
        description=(
            "Subscribe to {prefix}/+/speed and publish kinematics, trips, events and retained "
            "state per vehicle, with Prometheus metrics. Every key of the TOML config can also "
            "be set as KINESTREAM_<SECTION>__<KEY>; flags win over both."
        ),
    )
    add_config_flags(parser)
    parser.add_argument("--broker", metavar="URL", help="mqtt://host:port or mqtts://host:port")
    parser.add_argument("--client-id", help="MQTT client id (default: kinestream-<hostname>)")
    parser.add_argument("--topic-prefix", metavar="P", help="topic prefix (default: vehicles)")
    parser.add_argument("--metrics-port", metavar="N", help="Prometheus port (default: 9108)")
    parser.add_argument("--method", help="kalman | polyfit | difference (default: kalman)")
    parser.add_argument("--default-unit", help="unit of payloads without one (default: m/s)")
    parser.add_argument(
        "--transport", choices=("mqtt", "nats"), help="mqtt (default) or nats: a partitioned worker"
    )
    parser.add_argument("--nats-url", metavar="URL", help="nats://host:4222[,nats://...]")
    parser.add_argument("--partitions", metavar="N", help="partitions in the server mapping")
    parser.add_argument("--worker-id", help="NATS worker id (default: kinestream-<host>-<pid>)")
    parser.set_defaults(handler=run)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="TOML", help="settings file")
    parser.add_argument("--state-dir", metavar="DIR", help="checkpoints and write-ahead log")


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {}
    for attribute, (section, key) in FLAG_KEYS.items():
        value = getattr(args, attribute, None)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    transport = getattr(args, "transport", None)
    if transport is not None:  # the one top-level key with a flag
        overrides["transport"] = transport  # type: ignore[assignment]
    return load_settings(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    configure_logging(settings.log_level)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from kinestream.service import Service, install_signal_handlers

    if settings.transport == "nats":
        from kinestream.nats_service import NatsService

        service: Service | NatsService = NatsService(settings)
    else:
        service = Service(settings)
    install_signal_handlers(service)
    return await service.run()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # gmqtt logs every connection at INFO and each lost connection with a traceback.
    logging.getLogger("gmqtt").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)
