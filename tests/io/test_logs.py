"""Recorded JSON Lines logs: reading, writing, and surviving bad lines."""

import base64
import gzip
import io
import json
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kinestream.core.records import RejectReason
from kinestream.core.units import SpeedUnit
from kinestream.io.logs import LogReader, LogWriter
from kinestream.io.payloads import decode_speed_payload
from tests.integration.test_fuzz import payloads as fuzz_payloads
from tests.integration.test_fuzz import speed_objects as fuzz_speed_objects


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


# --- Bulk reading: the block path reads exactly what the line-by-line path reads ----------

GOOD = (
    b'{"t":1767225600.5,"topic":"vehicles/a/speed",'
    b'"payload":"{\\"ts\\":1767225600.25,\\"speed\\":2}"}'
)
# Two lines holding two objects, but not one each: as many JSON values as lines.
SPLIT_PAIR = GOOD + b' {"t":1,"topic":"vehicles/a/speed",\n"payload":"1"}'
HOSTILE_LINES = [
    GOOD,
    GOOD.replace(b"vehicles/a", b"vehicles/b"),
    b'{"t": 2, "topic": "vehicles/a/speed", "payload": "3"}',
    GOOD + b" " + GOOD,  # two objects on one line: a bad line
    b'{"t":1,"topic":"vehicles/a/speed",',  # an object split over two lines: two bad lines
    b'"payload":"1"}',
    b'{"t":1,"topic":"vehicles/a/speed",\n"payload":"1"}',
    SPLIT_PAIR,
    b"",
    b"   ",
    GOOD + b"\r",
    b" " + GOOD,
    b'{"t":1,"topic":"vehicles/a/speed","payload":"1","payload_b64":"MQ=="}',
    b'{"t":1,"topic":"vehicles/a/speed","payload":"1","payload\\u005fb64":"MQ=="}',
    b'{"t":1,"topic":"vehicles/a/speed","payload_b64":"MQ=="}',
    b'{"t":1,"topic":"vehicles/a/speed","payload_b64":"%%%"}',
    '{"t":1,"topic":"vehicles/a/speed","payload":"é"}'.encode(),
    b'{"t":1,"topic":"vehicles/a/speed","payload":"\\u00e9"}',
    b'{"t":1,"topic":"vehicles/a/speed","payload":"\\ud800"}',
    b'{"t":1,"topic":"vehicles/a/speed","payload":{"speed":1}}',
    b'{"t":1,"topic":"vehicles/a/speed","payload":"1","x":{"y":{}}}',
    b'{"t":"1","topic":"vehicles/a/speed","payload":"1"}',
    b'{"t":1e400,"topic":"vehicles/a/speed","payload":"1"}',
    b'{"topic":"vehicles/a/speed","payload":"1"}',
    b'{"t":1,"topic":7,"payload":"1"}',
    b"{}",
    b"[1, 2]",
    b"3",
    b"}{",
    b"\xff\xfe",
]


def read_both_ways(blob: bytes, block_bytes: int):
    """(messages with line numbers, bad lines) read in bulk and read strictly line by line."""
    from unittest import mock

    from kinestream.io import logs

    def read(reader):
        messages = []
        for message in reader:
            messages.append((reader.line_number, message))
        return messages, reader.bad_lines

    with mock.patch.object(logs, "BLOCK_BYTES", block_bytes):
        bulk = read(LogReader(io.BytesIO(blob)))
    with mock.patch.object(logs, "_bulk_block", lambda chunk, first_line: None):
        line_by_line = read(LogReader(io.BytesIO(blob)))
    return bulk, line_by_line


@given(
    st.lists(
        st.one_of(st.just(GOOD), st.sampled_from(HOSTILE_LINES), st.binary(max_size=20)),
        max_size=60,
    ),
    st.sampled_from([40, 300, 1000, 4096]),
    st.booleans(),
)
@example([GOOD, SPLIT_PAIR, GOOD], 4096, True)
def test_bulk_reading_equals_reading_line_by_line(lines, block_bytes, final_newline):
    """Any mix of good and hostile lines, cut into blocks anywhere: the same messages, line
    numbers and bad lines (with their reasons) as the per-line path."""
    blob = b"\n".join(lines) + (b"\n" if final_newline else b"")
    bulk, line_by_line = read_both_ways(blob, block_bytes)
    assert bulk == line_by_line


def test_bulk_reading_takes_plain_runs_whole_and_isolates_bad_lines():
    """Runs of plain lines are read as text blocks; a bad line costs only its piece."""
    from kinestream.io.logs import MessageBlock

    lines = [GOOD] * 1000
    lines[500] = b"not json"
    reader = LogReader(io.BytesIO(b"\n".join(lines) + b"\n"))
    blocks: list[MessageBlock] = list(reader.blocks(block_bytes=len(GOOD) * 200))
    assert sum(len(b.t) for b in blocks) == 999
    assert [b.line_number for b in reader.bad_lines] == [501]
    line_by_line = [b for b in blocks if not b.text]
    assert sum(len(b.t) for b in line_by_line) < 20  # only the piece holding line 501
    numbers = [n for b in blocks for n in b.line_numbers]
    assert numbers == [n for n in range(1, 1001) if n != 501]


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        (b'{"a":1}', 1),
        (b'{"a":1}\n{"b":{}}\n{}', 3),
        (b'{"a":1} {"b":\n2}', 0),  # the second value spans a line end
        (b'{"a":1}\n\n{"b":2}', 0),  # a blank line
        (b'{"a":1}\r\n{"b":2}', 0),
        (b' {"a":1}', 0),
        (b"", 0),
        (b"[1]", 0),
    ],
)
def test_one_object_per_line_frames_every_line(body, lines):
    """Line counts only when every line starts with '{' and ends with '}'."""
    from kinestream.io.logs import one_object_per_line

    assert one_object_per_line(body) == lines


# --- Bulk payload decoding: the twin of payloads.decode_single_sample -----------------------

RECEIVED_AT = 1767225700.25


def text_payloads(raw: list[bytes]) -> list[str]:
    """Payloads as a log line holds them (text); bytes that are not UTF-8 would be base64."""
    texts = []
    for payload in raw:
        try:
            texts.append(payload.decode())
        except UnicodeDecodeError:
            continue
    return texts


def assert_agrees_with_single_sample(texts: list[str], unit: SpeedUnit, limit: int) -> int:
    """Every row decoded in bulk is the sample decode_single_sample gives; returns how many."""
    from kinestream.io.logs import decode_sample_columns
    from kinestream.io.payloads import decode_single_sample

    received_at = RECEIVED_AT + np.arange(len(texts), dtype=np.float64)
    columns = decode_sample_columns(texts, received_at, unit, limit)
    for i in np.flatnonzero(columns.decoded).tolist():
        single = decode_single_sample(texts[i].encode(), float(received_at[i]), unit, limit)
        assert single is not None, texts[i]
        flags = ("receive_time",) if columns.receive_time[i] else ()
        assert (columns.ts[i], columns.speed_mps[i], flags) == single, texts[i]
    return int(columns.decoded.sum())


@given(
    st.lists(fuzz_payloads, max_size=40),
    st.sampled_from(list(SpeedUnit)),
    st.sampled_from([65_536, 30]),
)
def test_bulk_payload_decoding_agrees_with_the_daemons_decoder(raw, unit, limit):
    """Over the fuzz corpus (hostile payloads mixed in any order): where the bulk decoder
    decodes a row, decode_single_sample gives exactly that sample; the rest it leaves."""
    assert_agrees_with_single_sample(text_payloads(raw), unit, limit)


@given(st.lists(fuzz_speed_objects, min_size=1, max_size=40))
def test_bulk_payload_decoding_agrees_on_speed_objects(objects):
    """The same on lists of (mostly) well-formed speed objects, where most rows decode."""
    texts = [json.dumps(o, allow_nan=True) for o in objects]
    assert_agrees_with_single_sample(texts, SpeedUnit.KILOMETRES_PER_HOUR, 65_536)


def test_bulk_payload_decoding_takes_the_common_shapes_and_leaves_the_rest():
    """Numeric ts or none, known unit or none: decoded; anything else is left undecided."""
    texts = [
        '{"ts":1767225600.5,"speed":36,"unit":"km/h"}',
        '{"speed":2}',
        '{"ts":1767225601,"speed":1,"unit":"mph","x":[1]}',
        '{"ts":"2026-01-01T00:00:00Z","speed":1}',
        '{"ts":1767225600,"speed":1,"unit":"kph"}',
        "3",
        '[{"speed":1}]',
        '{"speed":true}',
        '{"speed":1,"ts":1e400}',
        '{"speed":1}\n',
    ]
    count = assert_agrees_with_single_sample(texts * 3, SpeedUnit.METRES_PER_SECOND, 65_536)
    assert 0 < count <= 3 * 3  # pieces holding an undecided row are left whole
    whole = [texts[0], texts[1], texts[2]] * 50
    assert assert_agrees_with_single_sample(whole, SpeedUnit.METRES_PER_SECOND, 65_536) == 150


def test_bulk_payload_units_are_the_speed_units():
    """The bulk decoder's unit literal names exactly the SpeedUnit values."""
    from typing import get_args

    from kinestream.io import logs

    assert set(get_args(logs._Unit)) == {unit.value for unit in SpeedUnit}


@pytest.mark.parametrize("part_bytes", [1, 97, 300, 10_000])
def test_log_parts_cut_at_line_ends_without_reading_the_log(tmp_path, part_bytes):
    """Parts are contiguous runs of whole lines covering the file; read one after another
    they give exactly the whole log."""
    from kinestream.io.logs import log_parts

    path = tmp_path / "log.jsonl"
    lines = [json.dumps({"t": t, "topic": "vehicles/a/speed", "payload": "1"}) for t in range(50)]
    path.write_text("\n".join(lines))  # no newline at the end
    data = path.read_bytes()
    parts = log_parts(path, part_bytes)
    assert parts[0].start == 0
    assert parts[-1].end == len(data)
    assert all(a.end == b.start for a, b in pairwise(parts))
    assert all(data[p.start - 1 : p.start] == b"\n" for p in parts[1:])
    got = [message for part in parts for message in LogReader(path, part)]
    assert got == list(LogReader(path))
    if part_bytes == 1:
        assert len(parts) == len(lines)  # every cut falls in a line: one line a part
