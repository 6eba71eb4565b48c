"""Offline processing: recorded logs and CSV files through the core, with per-vehicle summaries.

The Python API behind ``kinestream process`` (and the inputs of ``replay`` and ``plot``).
Inputs are read in the order given, each in file order, exactly as the daemon would have
received them: a log's payloads go through the same decoder and the same receive-time check
(``max_future_s``) as live messages.

Nothing read ever disappears silently: every reading ends as a kinematics record, a rejection
or a duplicate of its vehicle; what cannot be tied to a vehicle (an unreadable line, a bad
topic) is kept in ``ProcessResult.problems`` with its file and line.
"""

from __future__ import annotations

import math
import multiprocessing
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from importlib.util import find_spec
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt

from kinestream.core.arrays import FloatArray, IntArray
from kinestream.core.fleet import Fleet
from kinestream.core.params import TrackerParams
from kinestream.core.records import (
    Duplicate,
    HarshEvent,
    Kinematics,
    Reading,
    Record,
    Rejection,
    RejectReason,
    TripSummary,
)
from kinestream.core.units import SpeedUnit
from kinestream.core.validation import check_not_future
from kinestream.errors import UsageError
from kinestream.io.csv_input import CsvOptions, CsvSpeedReader
from kinestream.io.logs import (
    BadLine,
    LogRange,
    LogReader,
    Message,
    MessageBlock,
    SampleColumns,
    decode_sample_columns,
    log_parts,
    payload_bytes,
)
from kinestream.io.payloads import (
    DEFAULT_MAX_FUTURE_S,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_TOPIC_PREFIX,
    DEFAULT_UNIT,
    RECEIVE_TIME_FLAG,
    Sample,
    decode_single_sample,
    decode_speed_samples,
    vehicle_id_from_topic,
)

if TYPE_CHECKING:
    from kinestream.core.batch import BatchResult
    from kinestream.core.batch_result import KinematicsColumns

__all__ = [
    "ColumnsSink",
    "InputOptions",
    "Problem",
    "ProcessResult",
    "VehicleSummary",
    "check_inputs",
    "default_engine",
    "input_kind",
    "input_messages",
    "process_inputs",
]


LOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".log")
CSV_SUFFIXES = (".csv",)
_RECEIVE_TIME_FLAGS = (RECEIVE_TIME_FLAG,)
_ROWS_PER_WRITE = 65_536  # kinematics rows encoded per call when writing columns
# Forking encoders costs ~0.1 s (page tables, pipes): worth it from ~250k rows (0.25 s encoding).
_SLICES_WORTH_FORKING = 4
_UNSEEN = -2  # a topic not seen yet in this input (-1: a refused topic)
# Parallel decoding: parts of about this many bytes (~100k lines), for logs of at least two.
_PART_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class InputOptions:
    """How inputs are read (the CSV options apply to every CSV input)."""

    csv: CsvOptions = field(default_factory=CsvOptions)
    default_unit: SpeedUnit = DEFAULT_UNIT
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_future_s: float = DEFAULT_MAX_FUTURE_S


@dataclass(frozen=True, slots=True)
class Problem:
    """Something read that belongs to no vehicle: an unreadable line, a refused topic."""

    path: Path
    line_number: int | None
    reason: RejectReason
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def input_kind(path: Path) -> Literal["log", "csv"]:
    """``"log"`` or ``"csv"`` from the file name (``.gz`` allowed on top); else UsageError."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(LOG_SUFFIXES):
        return "log"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    known = ", ".join(LOG_SUFFIXES + CSV_SUFFIXES)
    raise UsageError(f"{path}: cannot tell the input format from the name (use {known})")


def check_inputs(paths: Sequence[Path]) -> None:
    """Fail early (UsageError) on an input that does not exist or has an unknown format."""
    if not paths:
        raise UsageError("no input given")
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        input_kind(path)


def input_messages(
    path: Path, options: InputOptions, problems: list[Problem] | None = None
) -> Iterator[Message]:
    """An input as recorded MQTT messages ``(t, topic, payload)``, for ``replay``.

    A CSV row becomes ``{"ts", "speed", "unit"}`` received at its own ts. Unreadable lines
    and rows are appended to ``problems`` once the iteration is over.
    """
    if input_kind(path) == "log":
        reader = LogReader(path)
        yield from reader
        bad = reader.bad_lines
    else:
        csv_reader = CsvSpeedReader(path, _csv_options(options))
        yield from csv_reader.messages(options.topic_prefix)
        bad = csv_reader.bad_rows
    if problems is not None:
        problems.extend(Problem(path, b.line_number, b.reason, b.message) for b in bad)


# --- Reading inputs into columns: what the core is fed, in arrival order --------------


class _Columns:
    """Every reading accepted by the adapters, as arrays in arrival order: vehicle code, ts,
    speed; flags on the side.

    Both engines start from these: the batch core takes the arrays whole, the stream replays
    them through a ``Fleet`` one reading at a time.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.code_of: dict[str, int] = {}
        self.codes = array("q")
        self.ts = array("d")
        self.speed_mps = array("d")
        self.flags: dict[int, tuple[str, ...]] = {}  # sparse: most readings carry none

    def __len__(self) -> int:
        return len(self.ts)

    def code(self, vehicle_id: str) -> int:
        code = self.code_of.get(vehicle_id)
        if code is None:
            code = self.code_of[vehicle_id] = len(self.names)
            self.names.append(vehicle_id)
        return code

    def extend_arrays(
        self, codes: npt.NDArray[np.int64], samples: SampleColumns, start: int, stop: int
    ) -> None:
        """Rows ``start..stop`` of bulk-decoded samples (``codes`` are theirs)."""
        if stop <= start:
            return
        base = len(self.ts)
        receive_time = np.flatnonzero(samples.receive_time[start:stop])
        for i in receive_time.tolist():
            self.flags[base + i] = _RECEIVE_TIME_FLAGS
        self.codes.frombytes(codes.tobytes())
        self.ts.frombytes(samples.ts[start:stop].tobytes())
        self.speed_mps.frombytes(samples.speed_mps[start:stop].tobytes())

    def append(self, code: int, sample: Sample) -> None:
        ts, speed_mps, flags = sample
        if flags:
            self.flags[len(self.ts)] = flags
        self.codes.append(code)
        self.ts.append(ts)
        self.speed_mps.append(speed_mps)

    def extend(self, other: _Columns) -> None:
        """Append ``other``'s readings after these, its vehicles mapped onto these codes."""
        base = len(self.ts)
        if other.names:
            mapping = np.array([self.code(name) for name in other.names], dtype=np.int64)
            self.codes.frombytes(mapping[np.frombuffer(other.codes, dtype=np.int64)].tobytes())
        self.ts.extend(other.ts)
        self.speed_mps.extend(other.speed_mps)
        self.flags.update({base + i: flags for i, flags in other.flags.items()})

    def arrays(self) -> tuple[IntArray, FloatArray, FloatArray]:
        """Zero-copy numpy views (codes as intp) of the columns."""
        return (
            np.frombuffer(self.codes, dtype=np.int64).astype(np.intp, copy=False),
            np.frombuffer(self.ts, dtype=np.float64),
            np.frombuffer(self.speed_mps, dtype=np.float64),
        )

    def flags_list(self) -> list[tuple[str, ...]] | None:
        """Every reading's flags, in order; ``None`` when no reading has any."""
        if not self.flags:
            return None
        flags_of = self.flags
        return [flags_of.get(i, ()) for i in range(len(self.ts))]


class _Sources:
    """Reads inputs into ``_Columns``; refusals go to the vehicle or to ``problems``."""

    def __init__(
        self,
        options: InputOptions,
        on_rejection: Callable[[Rejection], None],
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        self.options = options
        self.problems: list[Problem] = []
        self._on_rejection = on_rejection
        self._on_progress = on_progress
        self._bytes_done = 0  # of the inputs already read, for progress
        self._code_of_topic: dict[str, int] = {}  # of the log being read; -1: refused

    def fill(self, paths: Sequence[Path], columns: _Columns, jobs: int = 1) -> None:
        for path in paths:
            if input_kind(path) == "csv":
                self._fill_from_csv(path, columns)
            elif jobs > 1 and _worth_splitting(path):
                self._fill_in_parallel(path, columns, jobs)
            else:
                self._fill_from_log(path, LogReader(path), columns)
            self._bytes_done += path.stat().st_size

    def _fill_from_log(self, path: Path, reader: LogReader, columns: _Columns) -> None:
        """The hot part of ``process``: blocks of lines decoded in bulk, appended as arrays;
        only the rows the bulk decoders leave undecided go one by one."""
        self._code_of_topic = {}
        for block in reader.blocks():
            if block.text:
                self._add_text_block(path, block, columns)
            else:
                for i, line_number in enumerate(block.line_numbers):
                    message = block.t[i], block.topics[i], cast(bytes, block.payloads[i])
                    self._add_message(path, line_number, message, columns)
            self._progress(len(columns), reader.bytes_read)
        self.problems.extend(_problems(path, reader.bad_lines))

    def _add_text_block(self, path: Path, block: MessageBlock, columns: _Columns) -> None:
        options = self.options
        t = np.fromiter(block.t, np.float64, len(block.t))
        codes = self._topic_codes(block.topics, columns)
        payloads = cast(list[str], block.payloads)
        samples = decode_sample_columns(
            payloads, t, options.default_unit, options.max_payload_bytes
        )
        with np.errstate(invalid="ignore"):  # NaN where not decoded: not simple anyway
            simple = samples.decoded & (codes >= 0) & ~(samples.ts - t > options.max_future_s)
        start = 0
        for row in np.flatnonzero(~simple).tolist():  # in order: arrival order is kept
            columns.extend_arrays(codes[start:row], samples, start, row)
            message = block.t[row], block.topics[row], payload_bytes(payloads[row])
            self._add_message(path, block.line_numbers[row], message, columns)
            start = row + 1
        columns.extend_arrays(codes[start:], samples, start, len(payloads))

    def _topic_codes(self, topics: list[str], columns: _Columns) -> IntArray:
        """Each topic's vehicle code (-1: a refused topic), new vehicles in order of arrival."""
        code_of_topic = self._code_of_topic
        codes = list(map(code_of_topic.get, topics, repeat(_UNSEEN)))
        if _UNSEEN in codes:
            for i, code in enumerate(codes):
                if code == _UNSEEN:
                    codes[i] = self._code(topics[i], columns)
        return np.fromiter(codes, np.int64, len(codes))

    def _code(self, topic: str, columns: _Columns) -> int:
        code = self._code_of_topic.get(topic)
        if code is None:
            code = self._code_of_topic[topic] = self._topic_code(topic, columns)
        return code

    def _add_message(
        self, path: Path, line_number: int, message: Message, columns: _Columns
    ) -> None:
        """One message the bulk path did not take: the daemon's per-message decoding."""
        options = self.options
        t, topic, payload = message
        code = self._code(topic, columns)
        if code < 0:
            self._topic_problem(path, line_number, topic)
            return
        sample = decode_single_sample(payload, t, options.default_unit, options.max_payload_bytes)
        if sample is None:
            self._decode_fully(payload, columns.names[code], code, t, columns)
        elif sample[0] - t > options.max_future_s:  # the daemon's receive-time check
            self._refuse_future(columns.names[code], sample, t)
        else:
            columns.append(code, sample)

    def _fill_in_parallel(self, path: Path, columns: _Columns, jobs: int) -> None:
        """Parts of a big log decoded in worker processes, merged back in file order.

        Workers number lines from their part's start (no pass over the file first to count
        them); a part with lines that belong to no vehicle, whose messages name line numbers,
        is read again here once its first line number is known (rare: bad lines)."""
        parts = log_parts(path, _PART_BYTES)
        read_part = partial(_read_log_part, path, self.options)
        lines_before = 0
        with ProcessPoolExecutor(max_workers=min(jobs, len(parts))) as pool:
            for part, decoded in zip(parts, pool.map(read_part, parts), strict=True):
                if decoded.problems:
                    numbered = LogRange(part.start, part.end, lines_before + 1)
                    self._fill_from_log(path, LogReader(path, numbered), columns)
                else:
                    columns.extend(decoded.columns)
                    for rejection in decoded.rejections:
                        self._on_rejection(rejection)
                lines_before += decoded.lines
                self._progress(len(columns), part.end)

    def _topic_code(self, topic: str, columns: _Columns) -> int:
        vehicle = vehicle_id_from_topic(topic, self.options.topic_prefix)
        return columns.code(vehicle) if type(vehicle) is str else -1

    def _topic_problem(self, path: Path, line_number: int, topic: str) -> None:
        refused = vehicle_id_from_topic(topic, self.options.topic_prefix)  # cached: cheap
        if isinstance(refused, Rejection):  # always, as _topic_code found
            message = f"line {line_number}: {refused.message}"
            self.problems.append(Problem(path, line_number, refused.reason, message))

    def _decode_fully(
        self, payload: bytes, vehicle_id: str, code: int, t: float, columns: _Columns
    ) -> None:
        """Arrays, RFC 3339 times and every refusal: the full decoder, with its reasons."""
        options = self.options
        samples, rejections = decode_speed_samples(
            payload,
            vehicle_id,
            t,
            options.default_unit,
            max_payload_bytes=options.max_payload_bytes,
        )
        for sample in samples:
            if sample[0] - t > options.max_future_s:
                self._refuse_future(vehicle_id, sample, t)
            else:
                columns.append(code, sample)
        for rejection in rejections:
            self._on_rejection(rejection)

    def _refuse_future(self, vehicle_id: str, sample: Sample, t: float) -> None:
        reading = Reading(vehicle_id, *sample)
        rejection = check_not_future(reading, t, self.options.max_future_s)
        if rejection is not None:  # always: the caller compared the same numbers
            self._on_rejection(rejection)

    def _fill_from_csv(self, path: Path, columns: _Columns) -> None:
        reader = CsvSpeedReader(path, _csv_options(self.options))
        code = columns.code(reader.vehicle_id)
        for sample in reader.samples():  # no receive time: the future check does not apply
            columns.append(code, sample)
        for bad in reader.bad_rows:  # rows of a CSV belong to its vehicle: count them there
            rejection = Rejection(reader.vehicle_id, None, bad.reason, f"{path}: {bad.message}")
            self._on_rejection(rejection)
        self._progress(len(columns), path.stat().st_size)

    def _progress(self, readings: int, bytes_in_current: int) -> None:
        if self._on_progress is not None:
            self._on_progress(readings, self._bytes_done + bytes_in_current)


@dataclass(slots=True)
class _DecodedPart:
    """What a worker sends back for one part of a log (pickled: arrays travel as bytes)."""

    columns: _Columns
    rejections: list[Rejection]
    problems: list[Problem]  # with line numbers counted from the part's start
    lines: int  # in the part


def _read_log_part(path: Path, options: InputOptions, part: LogRange) -> _DecodedPart:
    """In a worker process: one part of a log, through exactly the serial loop."""
    rejections: list[Rejection] = []
    sources = _Sources(options, rejections.append, None)
    columns = _Columns()
    reader = LogReader(path, part)
    sources._fill_from_log(path, reader, columns)
    lines = reader.line_number - (part.first_line - 1)
    return _DecodedPart(columns, rejections, sources.problems, lines)


def _worth_splitting(path: Path) -> bool:
    """Parallel decoding pays for its worker start-up only on big, uncompressed logs."""
    return not path.name.lower().endswith(".gz") and path.stat().st_size >= 2 * _PART_BYTES


def _csv_options(options: InputOptions) -> CsvOptions:
    csv = options.csv
    if csv.default_unit is options.default_unit:
        return csv
    return replace(csv, default_unit=options.default_unit)


def _problems(path: Path, bad_lines: Iterable[BadLine]) -> list[Problem]:
    return [Problem(path, b.line_number, b.reason, b.message) for b in bad_lines]


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# --- Summaries -------------------------------------------------------------------------


@dataclass(slots=True)
class VehicleSummary:
    """What ``--summary`` prints for one vehicle; the maxima cover every accepted reading."""

    vehicle_id: str
    readings: int = 0  # accepted (one kinematics record each)
    rejected: int = 0
    duplicates: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    distance_m: float = 0.0
    max_speed_mps: float | None = None
    max_acceleration_mps2: float | None = None
    max_deceleration_mps2: float | None = None
    harsh_events: int = 0
    trips: list[TripSummary] = field(default_factory=list)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)

    def add_kinematics(self, record: Kinematics) -> None:
        self.readings += 1
        if self.first_ts is None:
            self.first_ts = record.ts
        self.last_ts = record.ts
        self.distance_m = record.distance_m
        speed = record.speed_mps
        if self.max_speed_mps is None or speed > self.max_speed_mps:
            self.max_speed_mps = speed
        accel = record.acceleration_mps2
        if accel is not None:
            if self.max_acceleration_mps2 is None or accel > self.max_acceleration_mps2:
                self.max_acceleration_mps2 = accel
            if self.max_deceleration_mps2 is None or accel < self.max_deceleration_mps2:
                self.max_deceleration_mps2 = accel

    def add_rejection(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.rejected_by_reason[rejection.reason.value] += 1

    @property
    def duration_s(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return self.last_ts - self.first_ts

    def to_json(self) -> dict[str, Any]:
        """The ``--summary`` object: units in names, ``null`` where no value exists."""
        return {
            "vehicle_id": self.vehicle_id,
            "readings": self.readings,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "duration_s": self.duration_s,
            "distance_m": self.distance_m,
            "max_speed_mps": self.max_speed_mps,
            "max_acceleration_mps2": self.max_acceleration_mps2,
            "max_deceleration_mps2": self.max_deceleration_mps2,
            "harsh_events": self.harsh_events,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "trips": self.trips,
        }


@dataclass(slots=True)
class ProcessResult:
    summaries: dict[str, VehicleSummary]
    problems: list[Problem]


class _Collector:
    """Turns the core's records into summaries and hands kinematics to the caller."""

    def __init__(
        self,
        on_kinematics: Callable[[Kinematics], None] | None,
        on_event: Callable[[HarshEvent], None] | None = None,
        kinematics_sink: ColumnsSink | None = None,
        jobs: int = 1,
    ) -> None:
        self.summaries: dict[str, VehicleSummary] = {}
        self._on_kinematics = on_kinematics
        self._on_event = on_event
        self._sink = kinematics_sink
        self._jobs = jobs

    def summary(self, vehicle_id: str) -> VehicleSummary:
        summary = self.summaries.get(vehicle_id)
        if summary is None:
            summary = self.summaries[vehicle_id] = VehicleSummary(vehicle_id)
        return summary

    def add(self, records: list[Record]) -> None:
        for record in records:
            if type(record) is Kinematics:
                self.summary(record.vehicle_id).add_kinematics(record)
                if self._on_kinematics is not None:
                    self._on_kinematics(record)
            else:
                self._add_other(record)

    def _add_other(self, record: Record) -> None:
        if isinstance(record, Rejection):
            self.reject(record)
        elif isinstance(record, Duplicate):
            self.summary(record.vehicle_id).duplicates += 1
        elif isinstance(record, TripSummary):
            self.summary(record.vehicle_id).trips.append(record)
        elif isinstance(record, HarshEvent):
            self.summary(record.vehicle_id).harsh_events += 1
            if self._on_event is not None:
                self._on_event(record)

    def reject(self, rejection: Rejection) -> None:
        self.summary(rejection.vehicle_id or "").add_rejection(rejection)

    def add_batch(self, result: BatchResult) -> None:
        """The batch core's columns as summaries: per-vehicle reductions over row groups."""
        for rejection in result.rejections:
            self.reject(rejection)
        for code, name in enumerate(result.vehicle_ids):
            self.summary(name).duplicates += int(result.duplicates[code])
        if len(result):
            self._add_rows(result)
        for trip in result.trips:
            self.summary(trip.vehicle_id).trips.append(trip)
        events_of = Counter(event.vehicle_id for event in result.events)
        for vehicle_id, events in events_of.items():
            self.summary(vehicle_id).harsh_events += events
        if self._on_event is not None:
            for event in result.events:
                self._on_event(event)
        if self._sink is not None:
            _write_rows(result, self._sink, self._jobs)
        elif self._on_kinematics is not None:
            write = self._on_kinematics
            for row in result.input_order().tolist():  # arrival order, as streamed
                write(result.row(row))

    def _add_rows(self, result: BatchResult) -> None:
        vehicle = result.vehicle
        starts = np.flatnonzero(np.diff(vehicle, prepend=-1))  # rows are grouped by vehicle
        ends = np.append(starts[1:], len(result)) - 1
        counts = ends - starts + 1
        accel = result.acceleration_mps2
        max_accel = np.fmax.reduceat(accel, starts)  # fmax/fmin skip NaN (no estimate yet)
        min_accel = np.fmin.reduceat(accel, starts)
        max_speed = np.maximum.reduceat(result.speed_mps, starts)
        for group, (start, end) in enumerate(zip(starts, ends, strict=True)):
            summary = self.summary(result.vehicle_ids[int(vehicle[start])])
            summary.readings += int(counts[group])
            summary.first_ts = float(result.ts[start])
            summary.last_ts = float(result.ts[end])
            summary.distance_m = float(result.distance_m[end])
            summary.max_speed_mps = float(max_speed[group])
            summary.max_acceleration_mps2 = _optional(max_accel[group])
            summary.max_deceleration_mps2 = _optional(min_accel[group])


# --- Kinematics rows out, many at a time -------------------------------------------------


class ColumnsSink(Protocol):
    """Where the batch engine puts kinematics rows, many at a time (``process -o``).

    ``encode_columns`` is pure, so it may run in a worker process; ``write_encoded`` takes
    what it returns, in row order."""

    def encode_columns(self, columns: KinematicsColumns) -> bytes | str: ...

    def write_encoded(self, encoded: bytes | str) -> None: ...


def _write_rows(result: BatchResult, sink: ColumnsSink, jobs: int) -> None:
    """Every row in arrival order, a slice of rows at a time (bounded memory); with ``jobs``
    > 1 and many rows, the slices are encoded by forked workers (encoding is most of it)."""
    order = result.input_order()
    slices = [(start, start + _ROWS_PER_WRITE) for start in range(0, len(order), _ROWS_PER_WRITE)]
    parallel = jobs > 1 and len(slices) >= _SLICES_WORTH_FORKING
    if parallel and "fork" in multiprocessing.get_all_start_methods():
        _write_rows_in_parallel(result, order, sink, slices, jobs)
        return
    for start, stop in slices:
        sink.write_encoded(sink.encode_columns(result.kinematics_columns(order[start:stop])))


# What forked encoders read: set just before the fork, so nothing is pickled to them.
_ENCODING: tuple[BatchResult, IntArray, ColumnsSink] | None = None


def _write_rows_in_parallel(
    result: BatchResult,
    order: IntArray,
    sink: ColumnsSink,
    slices: list[tuple[int, int]],
    jobs: int,
) -> None:
    global _ENCODING  # noqa: PLW0603 (the fork's way of sharing the result: no pickling)
    _ENCODING = (result, order, sink)
    try:
        context = multiprocessing.get_context("fork")
        window = 2 * jobs  # slices in flight: bounds what waits in memory to be written
        with context.Pool(min(jobs, len(slices))) as pool:
            for start in range(0, len(slices), window):
                for encoded in pool.imap(_encode_slice, slices[start : start + window]):
                    sink.write_encoded(encoded)  # in order
    finally:
        _ENCODING = None


def _encode_slice(rows: tuple[int, int]) -> bytes | str:
    """In a forked worker: rows ``start..stop`` (in arrival order) encoded by the sink."""
    assert _ENCODING is not None  # set by the parent before forking
    result, order, sink = _ENCODING
    start, stop = rows
    return sink.encode_columns(result.kinematics_columns(order[start:stop]))


# --- The run ---------------------------------------------------------------------------

Engine = Literal["batch", "stream"]


def process_inputs(
    paths: Sequence[Path],
    options: InputOptions = InputOptions(),
    params: TrackerParams | None = None,
    *,
    on_kinematics: Callable[[Kinematics], None] | None = None,
    on_event: Callable[[HarshEvent], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    kinematics_sink: ColumnsSink | None = None,
    engine: Engine | None = None,
    jobs: int = 1,
) -> ProcessResult:
    """Read every input (in order), run the readings through the core, end each vehicle.

    ``on_kinematics`` receives each kinematics record, in the order the readings arrived
    (``-o``); ``kinematics_sink``, when given, takes them instead from the batch engine, many
    rows at a time as columns (same order, no record object per row);
    ``on_event`` each harsh event (``plot`` marks them); ``on_progress`` the readings and
    input bytes read so far, once per block of lines read. ``engine="batch"`` (the default when the
    core has ``batch.py``) runs the core over whole arrays; ``"stream"`` feeds a ``Fleet`` one
    reading at a time, as the daemon does. Both give the same records (a test holds them to it).
    ``jobs`` > 1 decodes big uncompressed logs, and encodes many kinematics rows for the sink,
    in that many worker processes; the results are the same as with one process.
    """
    check_inputs(paths)
    collector = _Collector(on_kinematics, on_event, kinematics_sink, jobs)
    sources = _Sources(options, collector.reject, on_progress)
    columns = _Columns()
    sources.fill(paths, columns, jobs)
    params = params or TrackerParams()
    if (engine or default_engine()) == "stream":
        _run_stream(columns, params, collector)
    elif len(columns):
        _run_batch(columns, params, collector)
    summaries = dict(sorted(collector.summaries.items()))
    return ProcessResult(summaries, sources.problems)


def default_engine() -> Engine:
    """``"batch"`` when the core has its whole-array path, else ``"stream"``."""
    return "batch" if find_spec("kinestream.core.batch") is not None else "stream"


def _run_stream(columns: _Columns, params: TrackerParams, collector: _Collector) -> None:
    fleet = Fleet(params)
    update, add = fleet.update, collector.add
    names, codes, ts, speeds, flags_of = (
        columns.names, columns.codes, columns.ts, columns.speed_mps, columns.flags
    )  # fmt: skip
    for i in range(len(ts)):
        add(update(Reading(names[codes[i]], ts[i], speeds[i], flags_of.get(i, ()))))
    for vehicle_id in list(fleet.vehicle_ids()):
        add(fleet.finish(vehicle_id))


def _run_batch(columns: _Columns, params: TrackerParams, collector: _Collector) -> None:
    from kinestream.core.batch import process_batch_codes  # only when the core has it

    codes, ts, speed_mps = columns.arrays()
    flags = columns.flags_list()
    result = process_batch_codes(codes, columns.names, ts, speed_mps, params, flags=flags)
    collector.add_batch(result)
