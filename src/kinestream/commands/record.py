"""``kinestream record``: capture live MQTT messages into a recorded log (JSON Lines).

Each message becomes one line ``{"t", "topic", "payload"}`` (``payload_b64`` for bytes that
are not UTF-8), the format ``process`` and ``replay`` read. A line is written and flushed
before the message is acknowledged, so a killed recorder keeps everything it acknowledged.
Stops after ``--count`` messages, after ``--duration`` seconds, or on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from kinestream.commands import SUMMARIES
from kinestream.commands.arguments import positive_seconds, whole_number
from kinestream.commands.tool_client import check_broker_url, connect_tool_client
from kinestream.errors import KinestreamError, UsageError
from kinestream.io.logs import LogWriter
from kinestream.io.mqtt import quiet_mqtt_library_logs

DEFAULT_TOPIC = "vehicles/+/speed"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "record",
        help=SUMMARIES["record"],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    parser.add_argument(
        "--topic", action="append", metavar="FILTER",
        help=f"topic filter to record (repeatable; default {DEFAULT_TOPIC})",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output", required=True, metavar="LOG",
        help="recorded log to append to (.jsonl, .jsonl.gz; '-' for stdout)",
    )  # fmt: skip
    parser.add_argument("--count", type=whole_number(1), metavar="N", help="stop after N messages")
    parser.add_argument(
        "--duration", type=positive_seconds, metavar="S", help="stop after S seconds"
    )
    parser.add_argument("--client-id", help="MQTT client id (default: random)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_mqtt_library_logs()
    check_broker_url(args.broker)
    filters = args.topic or [DEFAULT_TOPIC]
    for topic_filter in filters:
        problem = topic_filter_problem(topic_filter)
        if problem:
            raise UsageError(f"--topic {topic_filter!r}: {problem}")
    where = "stdout" if args.output == "-" else args.output
    with _open_log(args.output) as writer:
        recorder = Recorder(writer, args.count)
        session = _record(
            args.broker,
            filters=filters,
            recorder=recorder,
            duration_s=args.duration,
            client_id=args.client_id,
            where=where,
        )
        asyncio.run(session)
    print(f"recorded {recorder.written} messages to {where}", file=sys.stderr)
    return 0


class Recorder:
    """Writes each message as one flushed log line until ``count`` messages are written."""

    def __init__(self, writer: LogWriter, count: int | None) -> None:
        self.writer = writer
        self.count = count
        self.written = 0
        self.finished = asyncio.Event()

    def on_message(self, topic: str, payload: bytes, _retain: bool) -> None:
        if self.count is not None and self.written >= self.count:
            return  # arrived after the last one asked for: not part of this recording
        self.writer.append_message(time.time(), topic, payload)
        self.writer.flush()
        self.written += 1
        if self.count is not None and self.written >= self.count:
            self.finished.set()


async def _record(
    url: str,
    *,
    filters: list[str],
    recorder: Recorder,
    duration_s: float | None,
    client_id: str | None,
    where: str,
) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, recorder.finished.set)
    client = await connect_tool_client(url, client_id, on_message=recorder.on_message)
    try:
        try:
            await client.subscribe(*filters, qos=1)
        except (PermissionError, ConnectionError, TimeoutError) as error:
            raise KinestreamError(f"cannot subscribe to {' '.join(filters)}: {error}") from None
        # Tells a user (and tests) that from now on nothing published is missed.
        print(f"recording {' '.join(filters)} from {url} to {where}", file=sys.stderr, flush=True)
        ends = [asyncio.ensure_future(e.wait()) for e in (recorder.finished, client.lost)]
        await asyncio.wait(ends, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
        for end in ends:
            end.cancel()
        if client.lost.is_set() and not recorder.finished.is_set():
            raise KinestreamError(
                f"lost the connection to broker {url} after recording {recorder.written} "
                "messages (all of them are in the log)"
            )
    finally:
        await client.disconnect()


@contextlib.contextmanager
def _open_log(output: str) -> Iterator[LogWriter]:
    target: Path | IO[bytes] = sys.stdout.buffer if output == "-" else Path(output)
    try:
        writer = LogWriter(target)
    except OSError as error:
        raise UsageError(f"cannot write {output}: {error.strerror}") from None
    try:
        yield writer
    finally:
        writer.close()


def topic_filter_problem(topic_filter: str) -> str | None:
    """Why an MQTT topic filter is invalid (MQTT 3.1.1 section 4.7), or None."""
    if not topic_filter:
        return "a topic filter cannot be empty"
    levels = topic_filter.split("/")
    for number, level in enumerate(levels, start=1):
        if "#" in level and (level != "#" or number != len(levels)):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None
