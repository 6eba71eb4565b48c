"""Command-line entry point: parses arguments and hands off to one command module.

Exit codes for every command: 0 success, 1 failure at run time, 2 usage or configuration
error, each failure with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kinestream import __version__
from kinestream.errors import KinestreamError, UsageError

# One module per command under kinestream.commands; each exposes register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "process",
    "plot",
    "run",
    "state",
    "record",
    "replay",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinestream",
        description="Acceleration, jerk and distance from live vehicle speed data.",
    )
    parser.add_argument("--version", action="version", version=f"kinestream {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"kinestream.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UsageError as error:
        print(f"kinestream {args.command}: {error}", file=sys.stderr)
        return 2
    except KinestreamError as error:
        print(f"kinestream {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
