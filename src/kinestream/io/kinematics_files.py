"""Kinematics records to a file: JSON Lines, or CSV, one record or many rows at once.

``process -o`` writes one kinematics record per accepted reading. The stream engine hands
records one by one (``write``); the batch engine hands columns of many rows, encoded in one
call without a record object per row (``encode_columns``, possibly in a worker process) and
appended in order (``write_encoded``). Both give the same bytes (a test holds them to it).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import fields
from typing import IO, Any, Protocol

import msgspec

from kinestream.core.batch_result import KinematicsColumns
from kinestream.core.records import Kinematics

__all__ = ["KINEMATICS_FIELDS", "CsvKinematicsWriter", "JsonLinesKinematicsWriter", "Writer"]

# The CSV header and the JSON keys follow the record type, so no field can be left out.
KINEMATICS_FIELDS = tuple(field.name for field in fields(Kinematics))

# Encodes like Kinematics (same keys, same order); NaN encodes as null, as None does.
_KinematicsRow = msgspec.defstruct("_KinematicsRow", KINEMATICS_FIELDS, gc=False)


class Writer(Protocol):
    """One record at a time (``write``), or many rows: ``encode_columns`` is pure (it may run
    in a worker process) and ``write_encoded`` appends its results in order."""

    def write(self, record: Kinematics) -> None: ...

    def encode_columns(self, columns: KinematicsColumns) -> bytes | str: ...

    def write_encoded(self, encoded: bytes | str) -> None: ...


class JsonLinesKinematicsWriter:
    """One compact JSON object per line, keys in the record's field order."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._encoder = msgspec.json.Encoder()

    def write(self, record: Kinematics) -> None:
        self._file.write(self._encoder.encode(record) + b"\n")

    def encode_columns(self, columns: KinematicsColumns) -> bytes:
        return self._encoder.encode_lines(map(_KinematicsRow, *columns))

    def write_encoded(self, encoded: bytes | str) -> None:
        self._file.write(encoded)  # type: ignore[arg-type]  # bytes from encode_columns


class CsvKinematicsWriter:
    """A header row of the field names, then one row per record: floats as ``repr`` (all
    digits), an empty cell for a missing value, flags joined by ``;``."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self._writer = csv.writer(file)
        self._writer.writerow(KINEMATICS_FIELDS)

    def write(self, record: Kinematics) -> None:
        self._writer.writerow(
            (
                record.vehicle_id,
                repr(record.ts),
                repr(record.speed_mps),
                _cell(record.acceleration_mps2),
                _cell(record.acceleration_sigma_mps2),
                _cell(record.jerk_mps3),
                repr(record.distance_m),
                record.trip_id or "",
                _cell(record.trip_distance_m),
                ";".join(record.flags),
            )
        )

    def encode_columns(self, columns: KinematicsColumns) -> str:
        text = io.StringIO(newline="")
        _write_rows(csv.writer(text), columns)
        return text.getvalue()

    def write_encoded(self, encoded: bytes | str) -> None:
        self._file.write(encoded)  # type: ignore[arg-type]  # text from encode_columns


def _write_rows(writer: Any, columns: KinematicsColumns) -> None:
    """The rows of ``columns`` through a ``csv.writer`` (whose type is private)."""
    writer.writerows(
        zip(
            columns.vehicle_id,
            map(repr, columns.ts),
            map(repr, columns.speed_mps),
            map(_cell, columns.acceleration_mps2),
            map(_cell, columns.acceleration_sigma_mps2),
            map(_cell, columns.jerk_mps3),
            map(repr, columns.distance_m),
            [trip_id or "" for trip_id in columns.trip_id],
            map(_cell, columns.trip_distance_m),
            map(";".join, columns.flags),
            strict=True,
        )
    )


def _cell(value: float | None) -> str:
    """All digits of a value; empty where there is none (None, or NaN in columns)."""
    return "" if value is None or math.isnan(value) else repr(value)
