"""CSV speed inputs for ``process`` and ``replay``: one vehicle per file, one row per reading.

Columns are named with ``CsvOptions`` or recognised from the bundled formats (drive cycles:
``cycSecs``/``cycMps``; GPS logs: ``timestamp``/``speed_mph``). Time is numeric seconds or
ISO 8601 text (``timezone`` applies when the text has no offset). Numeric times that all lie
before 2000-01-01 are offsets from the start of a schedule (a drive cycle's 0..1369 s): they
are placed at ``time_origin_s`` so that they are valid event times. A UTF-8 BOM is fine.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

import msgspec

from kinestream.core.records import RejectReason
from kinestream.core.units import MPS_PER_UNIT, SpeedUnit
from kinestream.errors import UsageError
from kinestream.io.logs import BadLine, Message
from kinestream.io.payloads import Sample, parse_timestamp

__all__ = ["EPOCH_2000_S", "CsvOptions", "CsvSpeedReader", "default_vehicle_id"]

EPOCH_2000_S = 946_684_800.0  # 2000-01-01T00:00:00Z

# Recognised column names, in order of preference; a speed name implies its unit.
TIME_COLUMNS = ("cycSecs", "timestamp", "ts", "time", "time_s", "t")
SPEED_COLUMNS: dict[str, SpeedUnit | None] = {
    "cycMps": SpeedUnit.METRES_PER_SECOND,
    "speed_mps": SpeedUnit.METRES_PER_SECOND,
    "speed_kmh": SpeedUnit.KILOMETRES_PER_HOUR,
    "speed_kph": SpeedUnit.KILOMETRES_PER_HOUR,
    "speed_mph": SpeedUnit.MILES_PER_HOUR,
    "speed_kn": SpeedUnit.KNOTS,
    "speed": None,  # unit from --speed-unit, else the default unit
}
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """How to read a speed CSV; ``None`` means "recognise it from the header"."""

    time_column: str | None = None
    speed_column: str | None = None
    speed_unit: SpeedUnit | None = None
    vehicle_id: str | None = None
    timezone: tzinfo = UTC
    time_origin_s: float = EPOCH_2000_S
    default_unit: SpeedUnit = field(default=SpeedUnit.METRES_PER_SECOND)


def default_vehicle_id(path: Path) -> str:
    """The file's stem, with characters a vehicle id cannot hold replaced by ``_``."""
    return _NOT_IN_ID.sub("_", path.name.removesuffix(".gz").rsplit(".", 1)[0])[:128] or "_"


class CsvSpeedReader:
    """Rows of one CSV as readings; rows that cannot be read go to ``bad_rows``.

    The header is read when the reader is made, so a missing column fails early with a
    ``UsageError`` naming the columns that are there.
    """

    def __init__(self, path: Path, options: CsvOptions = CsvOptions()) -> None:
        self.path = path
        self.vehicle_id = options.vehicle_id or default_vehicle_id(path)
        self.bad_rows: list[BadLine] = []
        self._options = options
        header = _read_header(path)
        self.time_column = _pick_time_column(header, options.time_column, path)
        self.speed_column, self.unit = _pick_speed_column(header, options, path)
        self._time_index = header.index(self.time_column)
        self._speed_index = header.index(self.speed_column)

    def rows(self) -> Iterator[tuple[float, float]]:
        """``(ts, speed)`` per good row, speed in ``self.unit``, in file order."""
        origin_s: float | None = None  # decided by the first numeric time in the file
        # errors="replace": a stray invalid byte spoils its row (counted), not the whole file.
        with self.path.open(newline="", encoding="utf-8-sig", errors="replace") as file:
            for line_number, row in _records(csv.reader(file), self.bad_rows):
                try:
                    raw_ts, speed, is_text = self._cells(row)
                except _BadRow as bad:
                    message = f"row {line_number}: {bad}"
                    self.bad_rows.append(BadLine(line_number, bad.reason, message))
                    continue
                if is_text:
                    yield raw_ts, speed
                    continue
                if origin_s is None:
                    origin_s = self._options.time_origin_s if raw_ts < EPOCH_2000_S else 0.0
                yield raw_ts + origin_s, speed

    def samples(self) -> Iterator[Sample]:
        """``(ts, speed_mps, flags)`` per good row."""
        factor = MPS_PER_UNIT[self.unit]
        for ts, speed in self.rows():
            yield ts, speed * factor, ()

    def messages(self, topic_prefix: str = "vehicles") -> Iterator[Message]:
        """Rows as recorded MQTT messages ``(t, topic, payload)``, received at their own ts."""
        topic = f"{topic_prefix}/{self.vehicle_id}/speed"
        unit = self.unit.value
        for ts, speed in self.rows():
            yield ts, topic, msgspec.json.encode({"ts": ts, "speed": speed, "unit": unit})

    def _cells(self, row: list[str]) -> tuple[float, float, bool]:
        """``(raw_ts, speed, ts_was_text)``; numeric times come before any origin is added."""
        if len(row) <= max(self._time_index, self._speed_index):
            raise _BadRow(RejectReason.MALFORMED_PAYLOAD, f"has {len(row)} cells, too few")
        speed_text = row[self._speed_index].strip()
        try:
            speed = float(speed_text)
        except ValueError:
            message = f"speed {speed_text!r} in column {self.speed_column!r} is not a number"
            raise _BadRow(RejectReason.INVALID_FIELD, message) from None
        time_text = row[self._time_index].strip()
        try:
            return float(time_text), speed, False
        except ValueError:
            pass
        try:
            return parse_timestamp(time_text, self._options.timezone), speed, True
        except ValueError as error:
            message = f"column {self.time_column!r}: {error}"
            raise _BadRow(RejectReason.INVALID_TIMESTAMP, message) from None


def _records(reader: Any, bad_rows: list[BadLine]) -> Iterator[tuple[int, list[str]]]:
    """Data rows after the header with their line numbers; rows csv cannot parse are counted."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # a NUL byte, an over-long field...
            line = reader.line_num
            bad_rows.append(BadLine(line, RejectReason.MALFORMED_PAYLOAD, f"row {line}: {error}"))
            continue
        if reader.line_num > 1 and row:  # line 1 is the header
            yield reader.line_num, row


class _BadRow(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _read_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as file:
            header = next(csv.reader(file), None)
    except csv.Error as error:
        raise UsageError(f"{path}: unreadable CSV header ({error})") from None
    if header and any("\ufffd" in name for name in header):
        raise UsageError(f"{path}: the CSV header is not UTF-8 text: {header}")
    if not header:
        raise UsageError(f"{path}: empty CSV file (no header row)")
    return [name.strip() for name in header]


def _pick_time_column(header: list[str], wanted: str | None, path: Path) -> str:
    return _pick(header, (wanted,) if wanted else TIME_COLUMNS, "time", "--time-column", path)


def _pick_speed_column(header: list[str], options: CsvOptions, path: Path) -> tuple[str, SpeedUnit]:
    wanted = (options.speed_column,) if options.speed_column else tuple(SPEED_COLUMNS)
    name = _pick(header, wanted, "speed", "--speed-column", path)
    implied = SPEED_COLUMNS.get(name) or _implied_unit(name)
    return name, options.speed_unit or implied or options.default_unit


def _implied_unit(name: str) -> SpeedUnit | None:
    for known, unit in SPEED_COLUMNS.items():
        if known.lower() == name.lower():
            return unit
    return None


def _pick(header: list[str], candidates: tuple[str, ...], what: str, flag: str, path: Path) -> str:
    """The first candidate in the header, matched exactly, else ignoring case."""
    for candidate in candidates:
        if candidate in header:
            return candidate
    lowered = {name.lower(): name for name in header}
    for candidate in candidates:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    tried = ", ".join(repr(name) for name in candidates)
    raise UsageError(
        f"{path}: no {what} column (looked for {tried}; the header has {header}); use {flag}"
    )
