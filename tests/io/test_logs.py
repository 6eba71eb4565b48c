"""Recorded JSON Lines logs: reading, writing, and surviving bad lines."""

import base64
import gzip
import io
import json
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinestream.core.records import RejectReason
from kinestream.core.units import SpeedUnit
from kinestream.io.logs import LogReader, LogWriter
from kinestream.io.payloads import decode_speed_payload


def read_log(text: bytes):
    reader = LogReader(io.BytesIO(text))
    return list(reader), reader.bad_lines


def test_reader_yields_t_topic_and_payload_bytes():
    """A recorded line gives (t, topic, payload bytes) with the payload's text as UTF-8."""
    line = {"t": 1767225600.25, "topic": "vehicles/truck-7/speed", "payload": '{"speed": 1}'}
    messages, bad = read_log(json.dumps(line).encode() + b"\n")
    assert messages == [(1767225600.25, "vehicles/truck-7/speed", b'{"speed": 1}')]
    assert bad == []


def test_reader_decodes_payload_b64():
    """ "payload_b64" carries bytes that are not UTF-8; the reader returns them unchanged."""
    raw = b"\xff\x00speed"
    line = {"t": 1, "topic": "vehicles/a/speed", "payload_b64": base64.b64encode(raw).decode()}
    messages, bad = read_log(json.dumps(line).encode())
    assert messages == [(1.0, "vehicles/a/speed", raw)]
    assert bad == []


@pytest.mark.parametrize(
    "payload", [{"ts": 1767225600, "speed": 3}, [{"speed": 3}], 3, 2.5, {"speed": 3, "unit": "mph"}]
)
def test_reader_accepts_json_values_in_payload(payload):
    """Hand-written logs may put an object, array or number in "payload"; it decodes the same."""
    line = json.dumps({"t": 1767225601, "topic": "vehicles/a/speed", "payload": payload})
    messages, bad = read_log(line.encode())
    assert bad == []
    (_, _, payload_bytes) = messages[0]
    assert json.loads(payload_bytes) == payload


def test_bad_lines_are_counted_with_line_numbers_and_reading_goes_on():
    """Bad lines are skipped and recorded with their 1-based line number; good ones still come."""
    good = json.dumps({"t": 1, "topic": "vehicles/a/speed", "payload": "1"})
    lines = [
        good,
        "not json at all",
        json.dumps({"topic": "vehicles/a/speed", "payload": "1"}),  # no t
        json.dumps({"t": "yesterday", "topic": "vehicles/a/speed", "payload": "1"}),
        json.dumps({"t": True, "topic": "vehicles/a/speed", "payload": "1"}),
        json.dumps({"t": 1, "topic": 7, "payload": "1"}),
        json.dumps({"t": 1, "topic": "vehicles/a/speed"}),  # no payload
        json.dumps({"t": 1, "topic": "vehicles/a/speed", "payload": "1", "payload_b64": "MQ=="}),
        json.dumps({"t": 1, "topic": "vehicles/a/speed", "payload_b64": "%%%"}),
        "[1, 2]",
        "",  # blank lines are not errors
        good,
    ]
    messages, bad = read_log("\n".join(lines).encode() + b"\n\xff\xfe\n")
    assert len(messages) == 2
    assert [b.line_number for b in bad] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 13]
    assert all(b.message.startswith(f"line {b.line_number}: ") for b in bad)
    assert bad[2].reason is RejectReason.INVALID_TIMESTAMP
    assert "yesterday" in bad[2].message
    assert bad[4].reason is RejectReason.INVALID_TOPIC


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udc80", b"x\\ud800y"])
def test_lone_surrogate_in_payload_text_does_not_crash(escape):
    """An unpaired surrogate escape ends as a bad line or a refused payload, never a crash."""
    line = b'{"t": 1, "topic": "vehicles/a/speed", "payload": "' + escape + b'"}'
    messages, bad = read_log(line)
    assert len(messages) + len(bad) == 1
    for _, _, payload in messages:
        _, rejections = decode_speed_payload(payload, "a", 1.0, SpeedUnit.METRES_PER_SECOND)
        assert rejections[0].reason is RejectReason.MALFORMED_PAYLOAD


def test_writer_round_trips_text_and_binary_payloads(tmp_path):
    """What LogWriter appends, LogReader reads back identically (text and non-UTF-8 bytes)."""
    messages = [
        (1767225600.123456, "vehicles/truck-7/speed", b'{"ts": 1767225600.1, "speed": 12.5}'),
        (1767225601.0, "vehicles/truck-7/speed", b"\xff\xfe\x00"),
        (1767225602.5, "vehicles/v/speed", '{"unit": "km/h", "x": "é"}'.encode()),
        (1767225603.0, "vehicles/v/speed", b""),
    ]
    path = tmp_path / "log.jsonl"
    with LogWriter(path) as writer:
        for message in messages:
            writer.append_message(*message)
    lines = path.read_bytes().splitlines()
    assert json.loads(lines[0])["payload"] == '{"ts": 1767225600.1, "speed": 12.5}'
    assert "payload_b64" in json.loads(lines[1])
    reader = LogReader(path)
    assert list(reader) == messages
    assert reader.bad_lines == []


def test_writer_appends_to_an_existing_log(tmp_path):
    """Opening a LogWriter on an existing file appends instead of truncating it."""
    path = tmp_path / "log.jsonl"
    for t in (1.0, 2.0):
        with LogWriter(path) as writer:
            writer.append_message(t, "vehicles/a/speed", b"1")
    assert [m[0] for m in LogReader(path)] == [1.0, 2.0]


def test_gzip_logs_are_read_and_written(tmp_path):
    """A log whose name ends in .gz is compressed on write and decompressed on read."""
    path = tmp_path / "log.jsonl.gz"
    with LogWriter(path) as writer:
        writer.append_message(1.0, "vehicles/a/speed", b"1")
    assert gzip.decompress(path.read_bytes()).startswith(b'{"t":1.0')
    assert list(LogReader(path)) == [(1.0, "vehicles/a/speed", b"1")]


@given(st.binary(max_size=300))
def test_reader_never_raises_on_arbitrary_bytes(blob):
    """Any bytes: every non-blank line is either a message or a counted bad line."""
    messages, bad = read_log(blob)
    non_blank = [line for line in blob.split(b"\n") if line.strip()]
    assert len(messages) + len(bad) == len(non_blank)


def test_bytes_read_and_line_number_follow_the_iteration(tmp_path):
    """bytes_read grows to the file size and line_number names the last message's line."""
    path = tmp_path / "log.jsonl"
    with LogWriter(path) as writer:
        for t in range(3):
            writer.append_message(float(t), "vehicles/a/speed", b"1")
    reader = LogReader(path)
    seen = []
    for _ in reader:
        seen.append((reader.line_number, reader.bytes_read))
    assert [line for line, _ in seen] == [1, 2, 3]
    assert 0 < seen[0][1] <= seen[-1][1] == path.stat().st_size
    assert reader.bytes_read == path.stat().st_size


def test_log_ranges_cover_the_file_in_whole_lines_with_their_numbers(tmp_path):
    """Parts read one after another give exactly the whole log, with the same line numbers."""
    from kinestream.io.logs import log_ranges

    path = tmp_path / "log.jsonl"
    lines = [json.dumps({"t": t, "topic": "vehicles/a/speed", "payload": "1"}) for t in range(50)]
    lines[17] = "garbage"
    path.write_text("\n".join(lines) + "\n")
    whole = LogReader(path)
    expected = list(whole)
    ranges = log_ranges(path, chunk_bytes=300)
    assert len(ranges) > 3
    assert ranges[0].start == 0
    assert ranges[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in pairwise(ranges))
    got, bad = [], []
    for part in ranges:
        reader = LogReader(path, part)
        got += list(reader)
        bad += reader.bad_lines
        assert reader.bytes_read == part.end
    assert got == expected
    assert bad == whole.bad_lines == [bad[0]]
    assert bad[0].line_number == 18
