"""Recorded logs: JSON Lines, one MQTT message per line, read by ``process``/``replay``.

A line is ``{"t": <receive time, epoch s>, "topic": "vehicles/<id>/speed", "payload": "<text>"}``,
or ``"payload_b64"`` instead of ``"payload"`` when the bytes are not UTF-8. Hand-written logs
may put a JSON object, array or number straight into ``"payload"``. A bad line never stops a
reader: it is skipped, counted and kept with its line number in ``bad_lines``.

Speed: ``process`` reads millions of lines, so the reader decodes runs of lines at once
(``LogReader.blocks``: msgspec's ``decode_lines`` over a few MB, straight into columns) and
only lines the bulk decoder cannot vouch for go through the per-line path. Both use the same
typed line decoder, so a line means the same whichever path read it; ``__iter__`` is built on
``blocks`` too, so every test of the reader tests the bulk path.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
from collections.abc import Generator, Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, NamedTuple, Self, cast

import msgspec
import numpy as np
import numpy.typing as npt

from kinestream.core.records import RejectReason
from kinestream.core.units import MPS_PER_UNIT, SpeedUnit
from kinestream.io.payloads import DEFAULT_MAX_PAYLOAD_BYTES

__all__ = [
    "BadLine",
    "LogRange",
    "LogReader",
    "LogWriter",
    "Message",
    "MessageBlock",
    "SampleColumns",
    "decode_sample_columns",
    "log_parts",
    "log_ranges",
    "open_binary",
    "payload_bytes",
]

# (t, topic, payload): one MQTT message as it was received.
Message = tuple[float, str, bytes]


class BadLine(NamedTuple):
    """A line (or CSV row) that could not be read; ``line_number`` counts from 1."""

    line_number: int
    reason: RejectReason
    message: str


class MessageBlock(NamedTuple):
    """Consecutive messages of a log as columns: message ``i`` was on ``line_numbers[i]``.

    ``text`` blocks (read in bulk) hold each payload as the text of the line (``payload_bytes``
    gives the bytes ``LogReader`` yields for it); the others hold payload bytes.
    """

    line_numbers: Sequence[int]
    t: list[float]
    topics: list[str]
    payloads: list[str] | list[bytes]
    text: bool


class LogRange(NamedTuple):
    """Whole lines of an uncompressed log: bytes ``start..end``, the first is ``first_line``."""

    start: int
    end: int
    first_line: int


class SampleColumns(NamedTuple):
    """Payloads decoded in bulk: where ``decoded`` is False the row is not the common shape,
    and the per-message decoders (``kinestream.io.payloads``) must say what it is."""

    ts: npt.NDArray[np.float64]  # epoch s; the receive time where the payload has no ts
    speed_mps: npt.NDArray[np.float64]
    receive_time: npt.NDArray[np.bool_]  # ts is the receive time: the receive_time flag
    decoded: npt.NDArray[np.bool_]


_Unit = Literal["m/s", "km/h", "mph", "kn"]  # SpeedUnit's values (a test keeps them in step)


class _CommonSpeed(msgspec.Struct, gc=False):
    """The common payload, ``{"ts": <number>, "speed": <number>, "unit": <text>}`` (ts and
    unit optional): the fields of ``payloads._SpeedObject`` with a numeric ts and a known unit
    only (the decoder checks the unit against the literal's values)."""

    speed: float
    ts: float | None = None
    unit: _Unit | None = None


_SAMPLE_DECODER = msgspec.json.Decoder(_CommonSpeed)
_MPS_PER_UNIT_TEXT: dict[str | None, float] = {u.value: f for u, f in MPS_PER_UNIT.items()}


def decode_sample_columns(
    payloads: list[str],
    received_at: npt.NDArray[np.float64],
    default_unit: SpeedUnit,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> SampleColumns:
    """The bulk twin of ``payloads.decode_single_sample`` for the text payloads of a block.

    Runs of payloads are decoded by one ``decode_lines`` call each; a run that holds anything
    else (an array, a bare number, RFC 3339 text, an unknown unit, an error, a payload over
    the limit) is retried in pieces, and rows still not decoded are left to the per-message
    decoders. Where a row is decoded, its sample is the one ``decode_single_sample`` gives
    (tests hold the two to it on the fuzz corpus).
    """
    count = len(payloads)
    columns = SampleColumns(
        np.full(count, np.nan),
        np.full(count, np.nan),
        np.zeros(count, dtype=bool),
        np.zeros(count, dtype=bool),
    )
    factor_of = {**_MPS_PER_UNIT_TEXT, None: MPS_PER_UNIT[default_unit]}
    run = _SampleRun(payloads, received_at, factor_of, max_payload_bytes, columns)
    if count and not run.decode(0, count):
        step = -(-count // _RETRY_PIECES)
        for start in range(0, count, step) if count > 1 else ():
            run.decode(start, min(start + step, count))
    return columns


class _SampleRun:
    """Decodes runs ``[start, stop)`` of payloads into ``columns`` (all or nothing per run)."""

    def __init__(
        self,
        payloads: list[str],
        received_at: npt.NDArray[np.float64],
        factor_of: dict[str | None, float],
        max_payload_bytes: int,
        columns: SampleColumns,
    ) -> None:
        self.payloads = payloads
        self.received_at = received_at
        self.factor_of = factor_of
        self.max_payload_bytes = max_payload_bytes
        self.columns = columns

    def decode(self, start: int, stop: int) -> bool:
        text = "\n".join(self.payloads[start:stop])
        if not text.isascii():  # ASCII: a payload's length is its size in bytes
            return False
        body = text.encode()
        newlines = _framed_newlines(body)
        if newlines is None or len(newlines) != stop - start - 1:  # no payload holds a newline
            return False
        if _longest_line(newlines, len(body)) > self.max_payload_bytes:
            return False
        try:
            samples: list[_CommonSpeed] = _SAMPLE_DECODER.decode_lines(body)
        except msgspec.DecodeError:  # includes ValidationError
            return False
        units = [sample.unit for sample in samples]
        distinct = set(units)  # all known: the decoder took only _Unit's
        if len(distinct) == 1:
            factor: float | npt.NDArray[np.float64] = self.factor_of[distinct.pop()]
        else:
            factor = np.array([self.factor_of[unit] for unit in units])
        count = stop - start
        ts = _floats([sample.ts for sample in samples])
        missing = np.isnan(ts)
        if missing.any():
            ts[missing] = self.received_at[start:stop][missing]
        columns = self.columns
        columns.ts[start:stop] = ts
        speeds = np.fromiter([sample.speed for sample in samples], np.float64, count)
        columns.speed_mps[start:stop] = speeds * factor
        columns.receive_time[start:stop] = missing
        columns.decoded[start:stop] = True
        return True


def _floats(values: list[float | None]) -> npt.NDArray[np.float64]:
    """``values`` as an array, NaN for None: a decoded number is never NaN (JSON has none),
    so NaN marks exactly the missing ones."""
    try:
        return np.fromiter(values, np.float64, len(values))  # the common case: no None
    except TypeError:
        return np.array(values, dtype=np.float64)


def log_ranges(path: Path, chunk_bytes: int) -> list[LogRange]:
    """Cut a log into runs of whole lines of about ``chunk_bytes`` each, to read in parallel.

    One sequential pass (reading and counting newlines) so that every range knows its first
    line number, and messages about its lines name the right line.
    """
    ranges: list[LogRange] = []
    start, first_line = 0, 1
    with path.open("rb") as file:
        while block := file.read(chunk_bytes):
            block += file.readline()  # finish the line the block cut through
            ranges.append(LogRange(start, start + len(block), first_line))
            start += len(block)
            first_line += count_newlines(block)
    return ranges


def log_parts(path: Path, part_bytes: int) -> list[LogRange]:
    """Cut a log into runs of whole lines of about ``part_bytes`` each, without reading it:
    a seek and a ``readline`` per cut. Line numbers are not known here: each part's
    ``first_line`` is 1 (numbered from its own start)."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as file:
        while cuts[-1] + part_bytes < size:
            file.seek(cuts[-1] + part_bytes)
            file.readline()  # to the end of the line the cut fell in
            cuts.append(min(file.tell(), size))
    if cuts[-1] < size:
        cuts.append(size)
    return [LogRange(start, end, 1) for start, end in pairwise(cuts) if end > start]


def count_newlines(data: bytes) -> int:
    """``data.count(b"\\n")``, five times faster (numpy's vectorised compare)."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE))


class _LogLine(msgspec.Struct, omit_defaults=True, gc=False):
    t: float
    topic: str
    payload: str | None = None
    payload_b64: str | None = None


class _PlainLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """What ``record`` writes for a text payload, and nothing else: the bulk path's line.

    Any line it takes, ``_LogLine`` takes with the same values and no ``payload_b64``.
    """

    t: float
    topic: str
    payload: str


_LINE_DECODER = msgspec.json.Decoder(_LogLine)
_PLAIN_LINE_DECODER = msgspec.json.Decoder(_PlainLine)
_PLAIN_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_EXCERPT_CHARS = 80
# Bulk reading: about this many bytes per decode_lines call (~16k lines of `record`'s logs);
# a run that the bulk decoder refuses is retried in this many pieces before going line by line.
BLOCK_BYTES = 2 * 1024 * 1024
_RETRY_PIECES = 16
_OPEN_BRACE, _CLOSE_BRACE, _NEWLINE = ord("{"), ord("}"), ord("\n")


def open_binary(path: Path, mode: str = "rb") -> IO[bytes]:
    """Open a file, transparently gzip-compressed when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, mode)  # type: ignore[return-value]
    return path.open(mode)


class LogReader:
    """Iterate a recorded log as ``(t, topic, payload_bytes)``; bad lines go to ``bad_lines``.

    ``line_number`` (of the last message yielded) and ``bytes_read`` (uncompressed) follow
    the iteration, for messages about a message and for a progress bar. With ``part`` (an
    uncompressed log only) just that run of lines is read, numbered as in the whole file.
    """

    def __init__(self, source: Path | IO[bytes], part: LogRange | None = None) -> None:
        self._source = source
        self._part = part
        self._file: IO[bytes] | None = None
        self._offset = 0 if part is None else part.start
        self._bytes_at_end = 0
        self.bad_lines: list[BadLine] = []
        self.line_number = 0 if part is None else part.first_line - 1

    @property
    def bytes_read(self) -> int:
        """Position in the (uncompressed) input: asked for rarely, so not counted per line."""
        if self._file is None:
            return self._bytes_at_end
        try:
            return self._offset + self._file.tell()
        except (OSError, ValueError):  # an unseekable stream: no progress to show
            return 0

    def __iter__(self) -> Iterator[Message]:
        for block in self.blocks():
            payloads = [payload_bytes(p) for p in block.payloads] if block.text else block.payloads
            for i, line_number in enumerate(block.line_numbers):
                self.line_number = line_number
                yield block.t[i], block.topics[i], cast(bytes, payloads[i])

    def blocks(self, block_bytes: int | None = None) -> Iterator[MessageBlock]:
        """The messages in runs of lines (about ``block_bytes``, default ``BLOCK_BYTES``, each)
        as columns.

        ``line_number`` follows whole chunks of ``block_bytes``: once a chunk's blocks are
        consumed, it is the number of the chunk's last line.
        """
        source = self._source
        file = self._open()
        self._file = file
        last_line = self.line_number
        size = block_bytes or BLOCK_BYTES
        try:
            while chunk := file.read(size):
                if not chunk.endswith(b"\n"):
                    chunk += file.readline()  # finish the line the read cut through
                last_line += yield from _blocks_of(chunk, last_line + 1, self.bad_lines)
                self.line_number = last_line
        finally:
            self._bytes_at_end = self.bytes_read
            self._file = None
            if file is not source:
                file.close()

    def _open(self) -> IO[bytes]:
        source, part = self._source, self._part
        if not isinstance(source, Path):
            return source
        if part is None:
            return open_binary(source)
        with source.open("rb") as file:
            file.seek(part.start)
            return io.BytesIO(file.read(part.end - part.start))


def _blocks_of(
    chunk: bytes, first_line: int, bad_lines: list[BadLine]
) -> Generator[MessageBlock, None, int]:
    """A chunk of whole lines in bulk; failing that, in pieces; failing that, line by line.

    Returns the number of lines in the chunk."""
    block = _bulk_block(chunk, first_line)
    if block is not None:
        yield block
        return len(block.t)  # in bulk, every line is a message
    for piece, piece_first_line in _pieces(chunk, first_line, _RETRY_PIECES):
        block = _bulk_block(piece, piece_first_line) if piece is not chunk else None
        yield block or _block_line_by_line(piece, piece_first_line, bad_lines)
    return count_newlines(chunk) + (not chunk.endswith(b"\n"))


def _pieces(chunk: bytes, first_line: int, count: int) -> Iterator[tuple[bytes, int]]:
    """``chunk`` cut into about ``count`` runs of whole lines, each with its first line number."""
    step = max(len(chunk) // count, 1)
    start = 0
    while start < len(chunk):
        cut = chunk.find(b"\n", start + step - 1)
        end = len(chunk) if cut < 0 else cut + 1
        piece = chunk if start == 0 and end == len(chunk) else chunk[start:end]
        yield piece, first_line
        first_line += piece.count(b"\n")
        start = end


def _bulk_block(chunk: bytes, first_line: int) -> MessageBlock | None:
    """Every line of ``chunk`` decoded at once, or None unless each line is one plain message:
    an object of exactly ``t`` (number), ``topic`` and ``payload`` (text)."""
    body = memoryview(chunk)[:-1] if chunk.endswith(b"\n") else memoryview(chunk)
    newlines = _framed_newlines(body)
    if newlines is None:
        return None
    count = len(newlines) + 1
    try:
        records: list[_PlainLine] = _PLAIN_LINE_DECODER.decode_lines(body)
    except msgspec.DecodeError:  # includes ValidationError
        return None
    if len(records) != count:
        return None
    t = [record.t for record in records]
    topics = [record.topic for record in records]
    payloads = [record.payload for record in records]
    return MessageBlock(range(first_line, first_line + count), t, topics, payloads, text=True)


def one_object_per_line(body: bytes) -> int:
    """The number of lines in ``body`` when each starts with ``{`` and ends with ``}``, else 0.

    What makes ``decode_lines`` line-exact: it reads whitespace-separated JSON values and does
    not care where lines end. But a value that is an object cannot continue past a line
    ending in ``}`` into a line starting with ``{`` (JSON strings hold no raw newline, and no
    value holds ``}`` followed by ``{``), so when every line is framed so and the decoder
    returns as many objects as there are lines, object ``i`` is exactly line ``i``.
    """
    newlines = _framed_newlines(body)
    return 0 if newlines is None else len(newlines) + 1


def _framed_newlines(body: bytes | memoryview) -> npt.NDArray[np.intp] | None:
    """Positions of the newlines in ``body`` if every line is framed by braces, else None."""
    if not body or body[0] != _OPEN_BRACE or body[-1] != _CLOSE_BRACE:
        return None
    data = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(data == _NEWLINE)
    if len(newlines) and not (
        (data[newlines - 1] == _CLOSE_BRACE).all() and (data[newlines + 1] == _OPEN_BRACE).all()
    ):
        return None
    return newlines


def _longest_line(newlines: npt.NDArray[np.intp], size: int) -> int:
    """The length of the longest line (without its newline) of a body of ``size`` bytes."""
    if not len(newlines):
        return size
    first, last = int(newlines[0]), size - int(newlines[-1]) - 1
    between = int(np.diff(newlines).max()) - 1 if len(newlines) > 1 else 0
    return max(first, last, between)


def _block_line_by_line(chunk: bytes, first_line: int, bad_lines: list[BadLine]) -> MessageBlock:
    """The per-line path: blank, bad, base64, non-ASCII or hand-written lines."""
    decode = _LINE_DECODER.decode
    line_numbers: list[int] = []
    messages: list[Message] = []
    for line_number, line in enumerate(_lines(chunk), first_line):
        record: _LogLine | None
        try:
            record = decode(line)
        except msgspec.DecodeError:  # includes ValidationError; also blank lines
            record = None
        message = _message_of_line(line, record, line_number, bad_lines)
        if message is not None:
            line_numbers.append(line_number)
            messages.append(message)
    t = [message[0] for message in messages]
    topics = [message[1] for message in messages]
    payloads = [message[2] for message in messages]
    return MessageBlock(line_numbers, t, topics, payloads, text=False)


def _lines(chunk: bytes) -> list[bytes]:
    """The lines of ``chunk`` with their ``\\n``, as iterating a binary file gives them."""
    lines = [line + b"\n" for line in chunk.split(b"\n")]
    if chunk.endswith(b"\n"):
        lines.pop()  # the empty remainder after the last newline
    else:
        lines[-1] = lines[-1][:-1]
    return lines


def _message_of_line(
    line: bytes, record: _LogLine | None, line_number: int, bad_lines: list[BadLine]
) -> Message | None:
    if record is not None:
        payload = record.payload
        if payload is not None and record.payload_b64 is None and payload.isascii():
            return record.t, record.topic, payload.encode()
    return _unusual_line(line, record, line_number, bad_lines)


def _unusual_line(
    line: bytes, record: _LogLine | None, line_number: int, bad_lines: list[BadLine]
) -> Message | None:
    """Blank, bad, base64, non-ASCII or hand-written lines: the message, or None (recorded
    in ``bad_lines`` when the line is bad)."""
    if record is None:
        return _read_loosely(line, line_number, bad_lines)
    return _message_of(record, line_number, bad_lines)


def _read_loosely(line: bytes, line_number: int, bad_lines: list[BadLine]) -> Message | None:
    """The slow path: blank lines, payloads given as JSON values, and explaining bad lines."""
    if not line.strip():
        return None
    try:
        value = _PLAIN_DECODER.decode(line)
    except msgspec.DecodeError as error:
        bad_lines.append(_bad(line_number, RejectReason.MALFORMED_PAYLOAD, f"not JSON ({error})"))
        return None
    problem = _line_problem(value)
    if problem is not None:
        bad_lines.append(_bad(line_number, *problem))
        return None
    fields = cast(dict[str, Any], value)  # _line_problem made sure it is an object
    payload = fields.get("payload")
    if payload is not None and type(payload) is not str:  # a hand-written JSON value
        payload = _ENCODER.encode(payload).decode()
    record = _LogLine(float(fields["t"]), fields["topic"], payload, fields.get("payload_b64"))
    return _message_of(record, line_number, bad_lines)


def _line_problem(value: object) -> tuple[RejectReason, str] | None:
    if type(value) is not dict:
        return RejectReason.MALFORMED_PAYLOAD, f"line is {_excerpt(value)}, not an object"
    t = value.get("t")
    if type(t) not in (int, float) or not -1e300 < t < 1e300:
        return RejectReason.INVALID_TIMESTAMP, f"'t' is {_excerpt(t)}, not a number (epoch s)"
    if type(value.get("topic")) is not str:
        return RejectReason.INVALID_TOPIC, f"'topic' is {_excerpt(value.get('topic'))}, not text"
    b64 = value.get("payload_b64")
    if b64 is not None and type(b64) is not str:
        return RejectReason.MALFORMED_PAYLOAD, f"'payload_b64' is {_excerpt(b64)}, not text"
    return None


def _message_of(record: _LogLine, line_number: int, bad_lines: list[BadLine]) -> Message | None:
    """The message of a typed line that has anything but exactly one plain-text payload."""
    if (record.payload is None) == (record.payload_b64 is None):
        problem = "both 'payload' and 'payload_b64'" if record.payload else "no payload"
        bad_lines.append(_bad(line_number, RejectReason.MALFORMED_PAYLOAD, f"line has {problem}"))
        return None
    if record.payload is not None:
        return record.t, record.topic, _utf8(record.payload)
    try:
        payload = base64.b64decode(record.payload_b64 or "", validate=True)
    except binascii.Error as error:
        excerpt = _excerpt(record.payload_b64)
        message = f"'payload_b64' {excerpt} is not base64 ({error})"
        bad_lines.append(_bad(line_number, RejectReason.MALFORMED_PAYLOAD, message))
        return None
    return record.t, record.topic, payload


def payload_bytes(text: str) -> bytes:
    """The bytes of a payload given as text in a log line."""
    return _utf8(text)


def _utf8(text: str) -> bytes:
    # A JSON string may hold a lone surrogate escape ("\\ud800"): keep the bytes, and let the
    # payload decoder refuse them as not UTF-8, instead of crashing here.
    return text.encode("utf-8", "surrogatepass")


def _bad(line_number: int, reason: RejectReason, message: str) -> BadLine:
    return BadLine(line_number, reason, f"line {line_number}: {message}")


def _excerpt(value: object) -> str:
    text = _ENCODER.encode(value).decode()
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


class LogWriter:
    """Append MQTT messages to a JSON Lines log, the format ``LogReader`` reads back.

    Payloads that are valid UTF-8 are stored as text (readable, greppable), others as
    ``payload_b64``. Writes are buffered: call ``flush()`` when a line must be on disk.
    """

    def __init__(self, target: Path | IO[bytes]) -> None:
        self._owned = isinstance(target, Path)
        self._file: IO[bytes] = open_binary(target, "ab") if isinstance(target, Path) else target

    def append_message(self, t: float, topic: str, payload: bytes) -> None:
        try:
            line = _LogLine(t, topic, payload=payload.decode())
        except UnicodeDecodeError:
            line = _LogLine(t, topic, payload_b64=base64.b64encode(payload).decode("ascii"))
        self._file.write(_ENCODER.encode(line) + b"\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._owned:
            self._file.close()
        else:
            self._file.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
