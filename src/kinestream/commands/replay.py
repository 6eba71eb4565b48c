"""``kinestream replay``: publish recorded logs or CSV files to a broker, at QoS 1.

Messages go out at the recorded pace (the log's receive times ``t``; a CSV row's own time)
times ``--speed``, or with ``--max-rate`` as fast as the broker acknowledges them. Several
inputs are merged by time, so several vehicles replay side by side. ``--rebase-time`` shifts
every event time by one offset so that the first reading is now (at ``--speed`` above 1 the
times run ahead of the clock, and the daemon refuses readings more than ``max_future_s``
ahead). The command exits 0 only once the broker acknowledged every message.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from kinestream.commands import SUMMARIES
from kinestream.commands.arguments import positive_factor
from kinestream.commands.process import add_input_arguments, input_options, report_problems
from kinestream.commands.tool_client import check_broker_url, connect_tool_client
from kinestream.errors import KinestreamError
from kinestream.io.mqtt import quiet_mqtt_library_logs
from kinestream.io.replayer import Message, ReplayCounts, merge_by_time, replay_messages
from kinestream.offline import Problem, check_inputs, input_messages

_BAR_WIDTH = 30


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help=SUMMARIES["replay"],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=positive_factor, default=1.0, metavar="X",
        help="replay X times faster than recorded (default 1: real time)",
    )  # fmt: skip
    pace.add_argument("--max-rate", action="store_true", help="as fast as the broker acknowledges")
    parser.add_argument(
        "--rebase-time", action="store_true",
        help="shift event times so that the first reading is now",
    )  # fmt: skip
    parser.add_argument("--client-id", help="MQTT client id (default: random)")
    add_input_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    quiet_mqtt_library_logs()
    check_inputs(args.inputs)
    check_broker_url(args.broker)
    speed = None if args.max_rate else args.speed
    if args.rebase_time and (speed is None or speed > 1):
        print(
            "kinestream replay: warning: with --rebase-time faster than real time, event "
            "times run ahead of the clock (the daemon refuses those beyond max_future_s)",
            file=sys.stderr,
        )
    options = input_options(args)
    problems: list[Problem] = []
    messages = merge_by_time(input_messages(path, options, problems) for path in args.inputs)
    progress = _Progress(_estimate_messages(args.inputs)) if sys.stderr.isatty() else None
    started = time.monotonic()
    counts = asyncio.run(
        _replay(
            args.broker,
            client_id=args.client_id,
            messages=messages,
            speed=speed,
            rebase_time=args.rebase_time,
            progress=progress,
        )
    )
    if progress:
        progress.done(counts)
    report_problems(problems, "kinestream replay", "unreadable lines not published")
    elapsed_s = time.monotonic() - started
    print(
        f"replayed {counts.acknowledged} messages, all acknowledged, in {elapsed_s:.1f} s",
        file=sys.stderr,
    )
    return 0


async def _replay(
    url: str,
    *,
    client_id: str | None,
    messages: Iterable[Message],
    speed: float | None,
    rebase_time: bool,
    progress: _Progress | None,
) -> ReplayCounts:
    client = await connect_tool_client(url, client_id)
    latest = ReplayCounts()

    def on_progress(counts: ReplayCounts) -> None:
        nonlocal latest
        latest = counts
        if progress:
            progress.update(counts)

    try:
        return await replay_messages(
            messages, client.publish, speed=speed, rebase_time=rebase_time, on_progress=on_progress
        )
    except ConnectionError as error:
        raise KinestreamError(
            f"{error} after {latest.acknowledged} messages were acknowledged; "
            "the rest may or may not have reached it"
        ) from None
    finally:
        await client.disconnect()


def _estimate_messages(paths: list[Path]) -> int | None:
    """Line count of the inputs (one message per line, give or take a CSV header)."""
    total = 0
    for path in paths:
        if path.suffix == ".gz":
            return None
        with path.open("rb") as file:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda f=file: f.read(1 << 20), b""))
    return total


class _Progress:
    """A one-line bar on stderr (only at a terminal), redrawn at most 10 times a second."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self._drawn_at = 0.0

    def update(self, counts: ReplayCounts) -> None:
        now = time.monotonic()
        if now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        self._draw(counts.acknowledged)

    def _draw(self, acknowledged: int) -> None:
        if self.total:
            share = min(1.0, acknowledged / self.total)
            bar = "#" * int(share * _BAR_WIDTH)
            text = f"[{bar:<{_BAR_WIDTH}}] {acknowledged}/~{self.total} acknowledged"
        else:
            text = f"{acknowledged} acknowledged"
        sys.stderr.write("\r" + text)
        sys.stderr.flush()

    def done(self, counts: ReplayCounts) -> None:
        self.total = counts.acknowledged  # the estimate counted CSV headers too
        self._draw(counts.acknowledged)
        sys.stderr.write("\n")
