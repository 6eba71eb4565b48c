"""``kinestream plot``: one vehicle's speed, acceleration and distance as a PNG.

Inputs are read exactly as ``kinestream process`` reads them (recorded logs or CSV files, same
options) and run through the same core; the figure shows the measured speed with its slope on
a second axis around zero, the distance below, trips shaded and harsh events marked. Needs
matplotlib: ``python -m pip install 'kinestream[plot]'``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kinestream.commands import SUMMARIES
from kinestream.commands.process import (
    add_input_arguments,
    add_settings_arguments,
    input_options,
    load_command_settings,
    report_problems,
)
from kinestream.core.records import HarshEvent, Kinematics, Record
from kinestream.errors import KinestreamError, UsageError
from kinestream.offline import check_inputs, process_inputs
from kinestream.plot import describe_trips, render_png, select_view


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plot",
        help=SUMMARIES["plot"],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--vehicle", help="the vehicle to draw (needed when the input has several)")
    parser.add_argument(
        "--trip", help="draw only this trip: its id, or its number as labelled on the full figure"
    )
    add_settings_arguments(
        parser,
        config_help="the daemon's TOML configuration (tracker parameters, harsh thresholds), as "
        "for `process`; KINESTREAM_* environment variables apply as for `run`",
    )
    add_input_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_inputs(args.inputs)
    if not args.output.name.lower().endswith(".png"):
        raise UsageError(f"-o {args.output}: the figure is written as PNG, name it *.png")
    settings = load_command_settings(args)
    params = settings.params
    records: list[Record] = []
    keep = _keep_for(args.vehicle, records)
    result = process_inputs(
        args.inputs, input_options(args, settings), params, on_kinematics=keep, on_event=keep
    )
    report_problems(result.problems, "kinestream plot", "lines or topics skipped")
    records.extend(trip for s in result.summaries.values() for trip in s.trips)
    view = select_view(
        records,
        vehicle_id=args.vehicle,
        trip_id=args.trip,
        method=params.estimator.method.value,
        params=params,
    )
    try:
        render_png(view, args.output)
    except OSError as error:
        raise KinestreamError(f"cannot write {args.output}: {error.strerror}") from None
    for line in describe_trips(view):
        print(line)
    print(
        f"wrote {args.output}: vehicle {view.vehicle_id!r}, {len(view.kinematics)} readings, "
        f"{len(view.trips)} trips, {len(view.events)} harsh events"
    )
    return 0


def _keep_for(vehicle_id: str | None, records: list[Record]) -> object:
    """Collect records, only the chosen vehicle's when one is named (a fleet log can be big)."""

    def keep(record: Kinematics | HarshEvent) -> None:
        if vehicle_id is None or record.vehicle_id == vehicle_id:
            records.append(record)

    return keep
