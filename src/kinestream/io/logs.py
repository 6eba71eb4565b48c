"""Recorded logs: JSON Lines, one MQTT message per line, read by ``process``/``replay``.

A line is ``{"t": <receive time, epoch s>, "topic": "vehicles/<id>/speed", "payload": "<text>"}``,
or ``"payload_b64"`` instead of ``"payload"`` when the bytes are not UTF-8. Hand-written logs
may put a JSON object, array or number straight into ``"payload"``. A bad line never stops a
reader: it is skipped, counted and kept with its line number in ``bad_lines``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple, Self, cast

import msgspec

from kinestream.core.records import RejectReason

__all__ = ["BadLine", "LogRange", "LogReader", "LogWriter", "Message", "log_ranges", "open_binary"]

# (t, topic, payload): one MQTT message as it was received.
Message = tuple[float, str, bytes]


class BadLine(NamedTuple):
    """A line (or CSV row) that could not be read; ``line_number`` counts from 1."""

    line_number: int
    reason: RejectReason
    message: str


class LogRange(NamedTuple):
    """Whole lines of an uncompressed log: bytes ``start..end``, the first is ``first_line``."""

    start: int
    end: int
    first_line: int


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
            first_line += block.count(b"\n")
    return ranges


class _LogLine(msgspec.Struct, omit_defaults=True, gc=False):
    t: float
    topic: str
    payload: str | None = None
    payload_b64: str | None = None


_LINE_DECODER = msgspec.json.Decoder(_LogLine)
_PLAIN_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_EXCERPT_CHARS = 80


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
        # The per-line cost of `process`: one generator frame, locals, the common line first.
        source = self._source
        file = self._open()
        self._file = file
        decode, bad_lines = _LINE_DECODER.decode, self.bad_lines
        line_number = self.line_number
        try:
            for line in file:
                line_number += 1
                self.line_number = line_number
                record: _LogLine | None
                try:
                    record = decode(line)
                except msgspec.DecodeError:  # includes ValidationError; also blank lines
                    record = None
                else:
                    payload = record.payload
                    # ASCII text (the usual payload) encodes without any error handling.
                    if payload is not None and record.payload_b64 is None and payload.isascii():
                        yield record.t, record.topic, payload.encode()
                        continue
                message = _unusual_line(line, record, line_number, bad_lines)
                if message is not None:
                    yield message
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
