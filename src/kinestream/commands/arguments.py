"""argparse ``type=`` converters shared by the commands, so every command words the same
mistake the same way (argparse prefixes the option: ``argument --duration: ...``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_seconds(text: str) -> float:
    """A finite number of seconds above zero."""
    return _positive_finite(text, "a number of seconds")


def positive_factor(text: str) -> float:
    """A finite multiplier above zero (``--speed 2`` = twice real time)."""
    return _positive_finite(text, "a number")


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """A converter accepting whole numbers in ``[low, high]`` (no upper bound when None)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return convert


def _positive_finite(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be {what} above zero, got {text}")
    return value
