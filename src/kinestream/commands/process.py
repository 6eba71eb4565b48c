"""``kinestream process``: recorded logs or CSV files through the core, offline.

``-o OUT`` writes the kinematics records (JSON Lines, or CSV when OUT ends in ``.csv``);
``--summary`` prints one compact JSON object per vehicle to stdout. Lines and topics that
belong to no vehicle are reported on stderr (counted, with the first few line numbers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from kinestream.commands import SUMMARIES
from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.core.units import SpeedUnit, parse_unit
from kinestream.errors import KinestreamError, UsageError
from kinestream.io.csv_input import EPOCH_2000_S, CsvOptions, default_vehicle_id
from kinestream.io.kinematics_files import (
    CsvKinematicsWriter,
    JsonLinesKinematicsWriter,
    Writer,
)
from kinestream.io.payloads import parse_timestamp
from kinestream.offline import (
    InputOptions,
    Problem,
    ProcessResult,
    check_inputs,
    input_kind,
    process_inputs,
)
from kinestream.settings_env import has_settings_variables

_SHOWN_PROBLEMS = 5
_BAR_WIDTH = 30


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "process",
        help=SUMMARIES["process"],
        description=(
            "Run recorded logs or CSV files through the daemon's computation, offline. "
            "-o OUT writes the kinematics records (JSON Lines, or CSV when OUT ends in .csv); "
            "--summary prints one compact JSON object per vehicle. Lines and topics that "
            "belong to no vehicle are counted on stderr with their line numbers."
        ),
    )
    parser.add_argument(
        "-o", "--output", type=Path, metavar="OUT", help="kinematics records: .jsonl or .csv"
    )
    parser.add_argument("--summary", action="store_true", help="one JSON object per vehicle")
    add_settings_arguments(
        parser,
        config_help="the daemon's TOML configuration: tracker parameters, topic prefix, payload "
        "limit and max_future_s; KINESTREAM_* environment variables apply as for `run`",
    )
    parser.add_argument(
        "--jobs", type=_jobs, default=_default_jobs(), metavar="N",
        help="worker processes decoding big uncompressed logs (default: the CPUs, up to 4)",
    )  # fmt: skip
    add_input_arguments(parser)
    parser.set_defaults(handler=run)


def add_settings_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """``--method`` and ``--config``, shared with ``plot``; read by ``load_command_settings``."""
    parser.add_argument(
        "--method", choices=[m.value for m in Method], help="default: from the config (kalman)"
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help=config_help)


@dataclass(frozen=True, slots=True)
class CommandSettings:
    """What the offline commands take from the configuration."""

    params: TrackerParams
    inputs: InputOptions  # unit, topic prefix, payload and future bounds (CSV: defaults)


def load_command_settings(args: argparse.Namespace) -> CommandSettings:
    """The configuration file (and KINESTREAM_* variables) with ``--method`` over them.

    With neither, the defaults are the core's and the inputs' own (which config.py's are
    made of): the validating configuration, pydantic, ~0.2 s of start-up, is not loaded.
    """
    if args.config is None and not has_settings_variables():
        method = Method(args.method) if args.method else EstimatorParams().method
        return CommandSettings(
            TrackerParams(estimator=EstimatorParams(method=method)), InputOptions()
        )
    from kinestream.config import load_settings

    overrides = {"tracker": {"method": args.method}} if args.method else None
    settings = load_settings(args.config, overrides)
    inputs = InputOptions(
        default_unit=settings.tracker.default_unit,
        topic_prefix=settings.mqtt.topic_prefix,
        max_payload_bytes=settings.mqtt.max_payload_bytes,
        max_future_s=settings.tracker.max_future_s,
    )
    return CommandSettings(settings.tracker.to_params(), inputs)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs and their flags, shared by ``process``, ``replay`` and ``plot``."""
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help=".jsonl or .csv")
    parser.add_argument(
        "--default-unit", type=_unit, metavar="UNIT",
        help="unit of payloads and CSV speeds that name none (m/s, km/h, mph, kn; "
        "default: the config's, m/s)",
    )  # fmt: skip
    parser.add_argument(
        "--topic-prefix", help="topics are PREFIX/<id>/speed (default: the config's, vehicles)"
    )
    group = parser.add_argument_group("CSV inputs")
    group.add_argument("--time-column", help="default: recognised (cycSecs, timestamp, ts, ...)")
    group.add_argument("--speed-column", help="default: recognised (cycMps, speed_mph, speed...)")
    group.add_argument("--speed-unit", type=_unit, metavar="UNIT", help="default: from the name")
    group.add_argument("--vehicle-id", help="default: the file's stem")
    group.add_argument(
        "--timezone", type=_zone, default=ZoneInfo("UTC"), metavar="ZONE",
        help="IANA zone of ISO times without an offset (default UTC)",
    )  # fmt: skip
    group.add_argument(
        "--time-origin", type=_origin, default=EPOCH_2000_S, metavar="TIME",
        help="where numeric times before 2000 (a cycle's 0..N s) start "
        "(RFC 3339 or epoch s; default 2000-01-01T00:00:00Z)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    check_inputs(args.inputs)
    if args.output is None and not args.summary:
        raise UsageError("nothing to do: give -o OUT and/or --summary")
    settings = load_command_settings(args)
    options = input_options(args, settings)
    params = settings.params
    _warn_shared_default_ids(args.inputs, args.vehicle_id)
    progress = _Progress(sum(p.stat().st_size for p in args.inputs)) if _is_tty() else None
    try:
        with _kinematics_writer(args.output) as writer:
            result = process_inputs(
                args.inputs,
                options,
                params,
                on_kinematics=writer.write if writer else None,
                kinematics_sink=writer,
                on_progress=progress.update if progress else None,
                jobs=args.jobs,
            )
    except (OSError, EOFError) as error:  # a truncated or corrupt .gz, a failing disk
        where = getattr(error, "filename", None) or "input/output"
        raise KinestreamError(f"{where}: {error}") from None
    if progress:
        progress.done()
    report_problems(result.problems, "kinestream process", "lines or topics skipped")
    if args.summary:
        _print_summaries(result)
    return 0


def input_options(
    args: argparse.Namespace, settings: CommandSettings | None = None
) -> InputOptions:
    """The inputs' options from ``add_input_arguments`` flags, over the configuration's."""
    configured = settings.inputs if settings else InputOptions()
    default_unit = args.default_unit or configured.default_unit
    csv_options = CsvOptions(
        time_column=args.time_column,
        speed_column=args.speed_column,
        speed_unit=args.speed_unit,
        vehicle_id=args.vehicle_id,
        timezone=args.timezone,
        time_origin_s=args.time_origin,
        default_unit=default_unit,
    )
    options = replace(configured, csv=csv_options, default_unit=default_unit)
    if args.topic_prefix:
        options = replace(options, topic_prefix=args.topic_prefix)
    return options


def _default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--jobs takes a whole number of at least 1, not {text!r}")
    return int(text)


def _unit(text: str) -> SpeedUnit:
    try:
        return parse_unit(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _zone(text: str) -> tzinfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {text!r} (IANA name)") from None


def _origin(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _print_summaries(result: ProcessResult) -> None:
    encode = msgspec.json.encode
    out = sys.stdout.buffer
    for summary in result.summaries.values():
        out.write(encode(summary.to_json()) + b"\n")
    out.flush()


def _warn_shared_default_ids(paths: Sequence[Path], vehicle_id: str | None) -> None:
    """Two CSVs named alike (two vehicles' 2007-04-09.csv) would silently become one vehicle."""
    if vehicle_id is not None:
        return
    by_id: dict[str, list[Path]] = {}
    for path in paths:
        if input_kind(path) == "csv":
            by_id.setdefault(default_vehicle_id(path), []).append(path)
    for shared_id, shared in by_id.items():
        if len(shared) > 1:
            names = ", ".join(str(p) for p in shared)
            print(
                f"kinestream process: note: {names} all feed vehicle {shared_id!r} (the file "
                "stem); if they are different vehicles, process each with its own --vehicle-id",
                file=sys.stderr,
            )


def report_problems(problems: Sequence[Problem], command: str, what: str) -> None:
    """Count what belongs to no vehicle on stderr, with the first few, never silently.

    ``what`` says what became of them: "lines or topics skipped", "... not published"."""
    if not problems:
        return
    print(f"{command}: {len(problems)} {what}:", file=sys.stderr)
    for problem in problems[:_SHOWN_PROBLEMS]:
        print(f"  {problem}", file=sys.stderr)
    if len(problems) > _SHOWN_PROBLEMS:
        print(f"  ... and {len(problems) - _SHOWN_PROBLEMS} more", file=sys.stderr)


@contextmanager
def _kinematics_writer(path: Path | None) -> Iterator[Writer | None]:
    """A writer of kinematics records to ``path`` (JSON Lines, or CSV by name)."""
    if path is None:
        yield None
        return
    is_csv = path.name.lower().endswith(".csv")
    try:
        file = path.open("w", newline="", encoding="utf-8") if is_csv else path.open("wb")
    except OSError as error:
        raise KinestreamError(f"cannot write {path}: {error.strerror}") from None
    with file:
        if is_csv:
            yield CsvKinematicsWriter(file)  # type: ignore[arg-type]
        else:
            yield JsonLinesKinematicsWriter(file)  # type: ignore[arg-type]


def _is_tty() -> bool:
    return sys.stderr.isatty()


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, total_bytes: int) -> None:
        self._total_bytes = max(total_bytes, 1)
        self._started = time.monotonic()

    def update(self, readings: int, bytes_done: int) -> None:
        fraction = min(bytes_done / self._total_bytes, 1.0)
        filled = round(fraction * _BAR_WIDTH)
        rate = readings / max(time.monotonic() - self._started, 1e-9)
        bar = "#" * filled + " " * (_BAR_WIDTH - filled)
        line = f"\rprocess [{bar}] {fraction:4.0%} {readings:,} readings, {rate:,.0f}/s"
        print(line, end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        print(file=sys.stderr)
