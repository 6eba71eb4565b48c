"""``kinestream state [--state-dir DIR] list|show ID|reset ID``: inspect or reset saved vehicles.

Refuses while a daemon holds the state directory (the same lock the daemon takes), so it never
races a checkpoint. ``reset`` also refuses while the write-ahead log still holds readings a
checkpoint does not cover (after a crash): they would re-create part of the vehicle on the next
start; starting and stopping the daemon once folds them into the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import orjson

from kinestream.commands import SUMMARIES
from kinestream.commands.run import add_config_flags, settings_from_args
from kinestream.errors import KinestreamError
from kinestream.io.state_store import (
    WAL_DIR_NAME,
    StateStore,
    lock_state_dir,
    release_state_dir,
)
from kinestream.io.wal import list_generations, segment_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "state",
        help=SUMMARIES["state"],
        description="Inspect or reset the daemon's saved per-vehicle state (daemon stopped).",
    )
    add_config_flags(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="one line per saved vehicle")
    show = actions.add_parser("show", help="the saved state of one vehicle, as JSON")
    show.add_argument("vehicle_id")
    reset = actions.add_parser("reset", help="forget a vehicle (odometer, trip, history)")
    reset.add_argument("vehicle_id")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    state_dir = settings_from_args(args).state.dir
    if not state_dir.is_dir():
        raise KinestreamError(f"state directory {str(state_dir)!r} does not exist")
    lock = lock_state_dir(state_dir)
    store = StateStore(state_dir)
    try:
        if args.action == "list":
            return list_vehicles(store)
        if args.action == "show":
            return show_vehicle(store, args.vehicle_id)
        return reset_vehicle(store, args.vehicle_id)
    finally:
        store.close()
        release_state_dir(lock)


def list_vehicles(store: StateStore) -> int:
    print(f"{'vehicle_id':<24} {'last event time (UTC)':<26} {'distance_m':>12}  trip_id")
    for vehicle_id in store.list_ids():
        stored = store.load(vehicle_id)
        record = _record(stored.last_record if stored else None)
        when = _iso(stored.last_ts if stored else None)
        distance = record.get("distance_m")
        shown = f"{distance:.1f}" if isinstance(distance, int | float) else "-"
        print(f"{vehicle_id:<24} {when:<26} {shown:>12}  {record.get('trip_id') or '-'}")
    return 0


def show_vehicle(store: StateStore, vehicle_id: str) -> int:
    stored = store.load(vehicle_id)
    if stored is None:
        raise KinestreamError(f"no saved state for vehicle {vehicle_id!r}")
    summary = {
        "vehicle_id": vehicle_id,
        "last_ts": stored.last_ts,
        "last_ts_utc": _iso(stored.last_ts),
        "received_at": stored.received_at,
        "state_bytes": len(stored.state),
        "last_kinematics": _record(stored.last_record) or None,
    }
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def reset_vehicle(store: StateStore, vehicle_id: str) -> int:
    pending = uncovered_log_bytes(store)
    if pending:
        raise KinestreamError(
            f"the write-ahead log holds {pending} bytes of readings no checkpoint covers yet "
            "(the daemon did not stop cleanly); start and stop the daemon once, then reset"
        )
    if not store.delete(vehicle_id):
        raise KinestreamError(f"no saved state for vehicle {vehicle_id!r}")
    print(f"reset vehicle {vehicle_id!r}: its next reading starts from zero")
    return 0


def uncovered_log_bytes(store: StateStore) -> int:
    """Bytes in write-ahead log segments the store's last checkpoint does not cover."""
    wal_dir = store.path.parent / WAL_DIR_NAME
    if not wal_dir.is_dir():
        return 0
    covered = store.wal_generation()
    generations = [g for g in list_generations(wal_dir) if g >= covered]
    return sum(segment_path(wal_dir, g).stat().st_size for g in generations)


def _record(raw: bytes | None) -> dict[str, object]:
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
