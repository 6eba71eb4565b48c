"""Command-line entry point: parses arguments and hands off to one command module.

Exit codes for every command: 0 success, 1 failure at run time, 2 usage or configuration
error, each failure with one clear line on stderr.

Only the module of the command being run is imported (``kinestream --help`` lists the others
from ``commands.SUMMARIES``): importing them all cost ~0.1 s of every run's start-up (the
daemon's MQTT client, metrics, the demo), which ``process`` on a log does not need.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from typing import Any, NoReturn

from kinestream.commands import SUMMARIES
from kinestream.errors import KinestreamError, UsageError


class _VersionAction(argparse.Action):
    """``--version``: the package version, looked up only when asked (importlib.metadata
    costs ~50 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> NoReturn:
        from kinestream import __version__

        print(f"kinestream {__version__}")  # stdout, as argparse's own version action
        parser.exit()


def build_parser(commands: Collection[str] = SUMMARIES) -> argparse.ArgumentParser:
    """The parser with ``commands`` registered in full; the others are listed by name and
    summary only (``main`` registers just the command named on its command line)."""
    parser = argparse.ArgumentParser(
        prog="kinestream",
        description="Acceleration, jerk and distance from live vehicle speed data.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="show program's version number and exit"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in SUMMARIES.items():
        if name in commands:
            importlib.import_module(f"kinestream.commands.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def named_command(argv: Sequence[str]) -> tuple[str, ...]:
    """The command named on a command line, if any: its first word that is not an option
    (the top-level options take no values)."""
    word = next((word for word in argv if not word.startswith("-")), None)
    return (word,) if word in SUMMARIES else ()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(named_command(argv))
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
