"""The speed-payload decoder: shapes, units, timestamps, and refusals with reasons."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinestream.core.records import Reading, RejectReason
from kinestream.core.units import SpeedUnit
from kinestream.io import payloads
from kinestream.io.payloads import (
    RECEIVE_TIME_FLAG,
    decode_speed_payload,
    parse_timestamp,
    vehicle_id_from_topic,
)

RECEIVED_AT = 1767225700.25  # 2026-01-01T00:01:40.25Z
MPS = SpeedUnit.METRES_PER_SECOND


def decode(payload: bytes, default_unit: SpeedUnit = MPS, **kwargs):
    return decode_speed_payload(payload, "truck-7", RECEIVED_AT, default_unit, **kwargs)


def only_rejection(payload: bytes, **kwargs):
    readings, rejections = decode(payload, **kwargs)
    assert readings == []
    assert len(rejections) == 1
    assert rejections[0].vehicle_id == "truck-7"
    return rejections[0]


@pytest.mark.parametrize(
    ("unit", "speed", "expected_mps"),
    [
        ("m/s", 12.5, 12.5),
        ("km/h", 36, 10.0),
        ("mph", 100, 44.704),  # 1 mile = 1609.344 m exactly
        ("kn", 36, 18.52),  # 1 nautical mile = 1852 m exactly
    ],
)
def test_object_speed_is_converted_to_mps(unit, speed, expected_mps):
    """An object with ts, speed and unit gives one reading in m/s at that ts, unflagged."""
    payload = json.dumps({"ts": 1767225600.5, "speed": speed, "unit": unit}).encode()
    readings, rejections = decode(payload)
    assert rejections == []
    assert len(readings) == 1
    assert readings[0].speed_mps == pytest.approx(expected_mps, rel=1e-15)
    assert (readings[0].vehicle_id, readings[0].ts, readings[0].flags) == (
        "truck-7",
        1767225600.5,
        (),
    )


def test_missing_unit_uses_the_default_unit():
    """Without "unit" (or with "unit": null) the configured default unit applies."""
    for payload in (
        b'{"ts": 1767225600, "speed": 72}',
        b'{"ts":1767225600,"speed":72,"unit":null}',
    ):
        readings, _ = decode(payload, SpeedUnit.KILOMETRES_PER_HOUR)
        assert readings[0].speed_mps == pytest.approx(20.0, rel=1e-15)


def test_bare_number_is_a_speed_at_receive_time_flagged():
    """A bare number is a speed in the default unit, stamped with the receive time and flagged."""
    readings, rejections = decode(b"7.5")
    assert rejections == []
    assert readings == [Reading("truck-7", RECEIVED_AT, 7.5, (RECEIVE_TIME_FLAG,))]
    readings, _ = decode(b"18", SpeedUnit.KILOMETRES_PER_HOUR)
    assert readings[0].speed_mps == pytest.approx(5.0, rel=1e-15)


def test_object_without_ts_gets_receive_time_and_flag():
    """An object without "ts" (or with "ts": null) is stamped with the receive time, flagged."""
    for payload in (b'{"speed": 3}', b'{"speed": 3, "ts": null}'):
        readings, _ = decode(payload)
        assert readings == [Reading("truck-7", RECEIVED_AT, 3.0, ("receive_time",))]


def test_numeric_ts_keeps_float64_precision():
    """Epoch seconds with microseconds come through bit-for-bit (no float32, no rounding)."""
    readings, _ = decode(b'{"ts": 1767225600.123456, "speed": 1}')
    assert readings[0].ts == 1767225600.123456
    readings, _ = decode(b'{"ts": 1767225600, "speed": 1}')
    assert readings[0].ts == 1767225600.0
    assert type(readings[0].ts) is float


@pytest.mark.parametrize(
    ("text", "epoch_s"),
    [
        ("2026-01-01T00:00:00Z", 1767225600.0),
        ("2026-01-01T01:30:00+01:30", 1767225600.0),
        ("2025-12-31T19:00:00-05:00", 1767225600.0),
        ("2026-01-01T00:00:00.123456Z", 1767225600.123456),
        ("2026-01-01t00:00:00.5z", 1767225600.5),  # RFC 3339 allows lower-case t and z
        ("2000-01-01T00:00:00Z", 946684800.0),
    ],
)
def test_rfc3339_ts_becomes_epoch_seconds(text, epoch_s):
    """RFC 3339 timestamps with Z or an offset are converted to epoch seconds exactly."""
    readings, rejections = decode(json.dumps({"ts": text, "speed": 1}).encode())
    assert rejections == []
    assert readings[0].ts == epoch_s
    assert readings[0].flags == ()


def test_rfc3339_without_offset_is_refused():
    """An RFC 3339 timestamp needs an offset; without one it is refused, naming the text."""
    rejection = only_rejection(b'{"ts": "2026-01-01T00:00:00", "speed": 1}')
    assert rejection.reason is RejectReason.INVALID_TIMESTAMP
    assert "2026-01-01T00:00:00" in rejection.message


@pytest.mark.parametrize("text", ["yesterday", "1767225600", "2026-13-01T00:00:00Z", ""])
def test_unparseable_ts_text_is_refused(text):
    """A ts string that is not RFC 3339 is refused with INVALID_TIMESTAMP, naming it."""
    rejection = only_rejection(json.dumps({"ts": text, "speed": 1}).encode())
    assert rejection.reason is RejectReason.INVALID_TIMESTAMP
    assert repr(text) in rejection.message


def test_array_of_objects_gives_readings_in_order():
    """A batch (array of objects) gives one reading per element, in array order."""
    payload = (
        b'[{"ts": 1767225601, "speed": 1},'
        b' {"ts": 1767225602, "speed": 2, "unit": "km/h"}, {"speed": 3}]'
    )
    readings, rejections = decode(payload)
    assert rejections == []
    assert [r.ts for r in readings] == [1767225601.0, 1767225602.0, RECEIVED_AT]
    assert readings[1].speed_mps == pytest.approx(2 / 3.6, rel=1e-15)
    assert readings[2].flags == ("receive_time",)


@pytest.mark.parametrize(
    "payload", [b'[{"speed": 1}, 2]', b'[{"speed": 1}, "x"]', b"[[1]]", b'[{"speed": 1}, null]']
)
def test_array_with_a_non_object_refuses_the_whole_message(payload):
    """If any batch element is not an object, no reading of that message is accepted."""
    rejection = only_rejection(payload)
    assert rejection.reason is RejectReason.MALFORMED_PAYLOAD
    assert "whole message" in rejection.message


def test_bad_element_of_a_batch_is_refused_alone():
    """An object element with a bad field is refused; its siblings are still accepted."""
    payload = b'[{"ts": 1767225601, "speed": 1}, {"ts": 1767225602, "speed": "fast"}]'
    readings, rejections = decode(payload)
    assert [r.ts for r in readings] == [1767225601.0]
    assert len(rejections) == 1
    assert rejections[0].reason is RejectReason.INVALID_FIELD
    assert rejections[0].ts == 1767225602.0
    assert "element 1" in rejections[0].message
    assert '"fast"' in rejections[0].message


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (b"true", "true"),
        (b'{"speed": true}', "true"),
        (b'{"speed": false, "ts": 1767225600}', "false"),
        (b'{"speed": 1, "ts": true}', "true"),
        (b'[{"speed": true}]', "true"),
    ],
)
def test_booleans_are_not_numbers(payload, named):
    """true/false is refused wherever a number is expected (Python's bool is an int: not here)."""
    rejection = only_rejection(payload)
    assert rejection.reason in {RejectReason.INVALID_FIELD, RejectReason.MALFORMED_PAYLOAD}
    assert named in rejection.message


@pytest.mark.parametrize(
    ("payload", "reason", "named"),
    [
        (b'{"speed": 1, "unit": "furlong/fortnight"}', RejectReason.UNKNOWN_UNIT, "furlong"),
        (b'{"speed": 1, "unit": "KM/H"}', RejectReason.UNKNOWN_UNIT, "KM/H"),
        (b'{"speed": 1, "unit": 3}', RejectReason.INVALID_FIELD, "3"),
        (b'{"speed": "12.5"}', RejectReason.INVALID_FIELD, "12.5"),
        (b'{"speed": null}', RejectReason.INVALID_FIELD, "null"),
        (b'{"velocity": 12.5}', RejectReason.INVALID_FIELD, "velocity"),
        (b'{"speed": 1e400}', RejectReason.INVALID_FIELD, "out of range"),
        (b'{"speed": 1, "ts": [1]}', RejectReason.INVALID_FIELD, "[1]"),
        (b'{"speed": 1,', RejectReason.MALFORMED_PAYLOAD, "not valid JSON"),
        (b"NaN", RejectReason.MALFORMED_PAYLOAD, "NaN"),
        (b"", RejectReason.MALFORMED_PAYLOAD, "not valid JSON"),
        (b"\xff\xfe", RejectReason.MALFORMED_PAYLOAD, "not valid JSON"),
        (b'"12.5"', RejectReason.MALFORMED_PAYLOAD, "12.5"),
        (b"null", RejectReason.MALFORMED_PAYLOAD, "null"),
        (b"[]", RejectReason.MALFORMED_PAYLOAD, "empty array"),
    ],
)
def test_refusals_carry_a_reason_and_name_the_value(payload, reason, named):
    """Each bad payload is refused with the expected reason and a message naming the value."""
    rejection = only_rejection(payload)
    assert rejection.reason is reason
    assert named in rejection.message
    assert "truck-7" in rejection.message


def test_oversized_payload_is_refused_before_parsing():
    """A payload above max_payload_bytes is refused as PAYLOAD_TOO_LARGE, naming both sizes."""
    payload = json.dumps([{"speed": 1}] * 20).encode()
    rejection = only_rejection(payload, max_payload_bytes=100)
    assert rejection.reason is RejectReason.PAYLOAD_TOO_LARGE
    assert str(len(payload)) in rejection.message
    assert "100" in rejection.message


def test_unknown_keys_are_ignored():
    """Extra fields (position, heading...) do not stop a reading from being accepted."""
    readings, rejections = decode(
        b'{"ts": 1767225600, "speed": 4, "lat": 41.9, "extra": {"a": [1]}}'
    )
    assert rejections == []
    assert readings[0].speed_mps == 4.0


def test_range_checks_are_left_to_the_core():
    """Shape-valid but implausible values (negative, huge, ms timestamps) are passed on."""
    readings, rejections = decode(b'[{"ts": 1767225600000, "speed": -3}, {"ts": 1, "speed": 999}]')
    assert rejections == []
    assert [(r.ts, r.speed_mps) for r in readings] == [(1767225600000.0, -3.0), (1.0, 999.0)]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["m/s", "km/h", "mph", "kn", "2026-01-01T00:00:00Z"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["ts", "speed", "unit", "x"]), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(payload):
    """Any bytes give readings and/or rejections, never an exception, never nothing."""
    readings, rejections = decode(payload)
    assert readings or rejections


@given(json_values)
def test_arbitrary_json_never_raises_and_never_vanishes(value):
    """Any JSON value decodes without raising, and every message yields something countable."""
    readings, rejections = decode(json.dumps(value).encode())
    assert readings or rejections
    assert all(type(r.ts) is float and type(r.speed_mps) is float for r in readings)


@given(json_values)
def test_fast_and_explaining_paths_agree(value):
    """The typed fast path and the explaining slow path decode any payload identically."""
    payload = json.dumps(value).encode()
    fast = payloads.decode_speed_samples(payload, "truck-7", RECEIVED_AT, MPS)
    slow = payloads._decode_explaining(payload, "truck-7", RECEIVED_AT, MPS)
    assert fast == slow


def test_parse_timestamp_applies_the_naive_timezone():
    """parse_timestamp puts a naive time in the given zone (Chicago is UTC-5 in April 2007)."""
    from zoneinfo import ZoneInfo

    assert parse_timestamp("2007-04-09 07:47:23", ZoneInfo("America/Chicago")) == 1176122843.0
    assert parse_timestamp("2007-04-09T12:47:23Z", ZoneInfo("America/Chicago")) == 1176122843.0
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_timestamp("2007-04-09 07:47:23")


@pytest.mark.parametrize(
    ("topic", "prefix", "expected"),
    [
        ("vehicles/truck-7/speed", "vehicles", "truck-7"),
        ("vehicles/A_b-9/speed", "vehicles", "A_b-9"),
        ("fleet/eu/van1/speed", "fleet/eu", "van1"),
        ("vehicles/" + "x" * 128 + "/speed", "vehicles", "x" * 128),
    ],
)
def test_vehicle_id_from_a_valid_topic(topic, prefix, expected):
    """The id between "{prefix}/" and "/speed" is returned when it is 1-128 allowed chars."""
    assert vehicle_id_from_topic(topic, prefix) == expected


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("vehicles/truck 7/speed", RejectReason.INVALID_VEHICLE_ID),
        ("vehicles/truck.7/speed", RejectReason.INVALID_VEHICLE_ID),
        ("vehicles/" + "x" * 129 + "/speed", RejectReason.INVALID_VEHICLE_ID),
        ("vehicles//speed", RejectReason.INVALID_VEHICLE_ID),
        ("vehicles/ünï/speed", RejectReason.INVALID_VEHICLE_ID),
        ("vehicles/a/b/speed", RejectReason.INVALID_TOPIC),
        ("vehicles/truck-7/position", RejectReason.INVALID_TOPIC),
        ("cars/truck-7/speed", RejectReason.INVALID_TOPIC),
        ("vehicles/speed", RejectReason.INVALID_TOPIC),
        ("vehiclesx/truck-7/speed", RejectReason.INVALID_TOPIC),
        ("", RejectReason.INVALID_TOPIC),
    ],
)
def test_bad_topics_are_refused_with_a_reason(topic, reason):
    """Topics not shaped "{prefix}/{id}/speed", or with a bad id, give a Rejection naming it."""
    rejection = vehicle_id_from_topic(topic, "vehicles")
    assert not isinstance(rejection, str)
    assert rejection.reason is reason
    assert repr(topic)[1:-1][:20] in rejection.message


@given(json_values)
def test_single_sample_decoder_agrees_with_the_full_decoder(value):
    """Whenever the bulk fast path gives a sample, the full decoder gives exactly that sample."""
    payload = json.dumps(value).encode()
    for unit in (MPS, SpeedUnit.MILES_PER_HOUR):
        sample = payloads.decode_single_sample(payload, RECEIVED_AT, unit)
        if sample is not None:
            assert payloads.decode_speed_samples(payload, "v", RECEIVED_AT, unit) == ([sample], [])


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"ts": 1767225600.5, "speed": 36, "unit": "km/h"}', (1767225600.5, 10.0, ())),
        (b'{"speed": 2}', (RECEIVED_AT, 2.0, ("receive_time",))),
        (b"3", (RECEIVED_AT, 3.0, ("receive_time",))),
        (b'{"ts": "2026-01-01T00:00:00Z", "speed": 1}', None),
        (b'[{"ts": 1767225600, "speed": 1}]', None),
        (b'{"ts": 1767225600, "speed": 1, "unit": "kph"}', None),
        (b'{"speed": true}', None),
        (b"nonsense", None),
    ],
)
def test_single_sample_decoder_takes_only_the_common_shapes(payload, expected):
    """The fast path decodes one object or bare number; everything else is left to the full one."""
    sample = payloads.decode_single_sample(payload, RECEIVED_AT, MPS)
    if expected is None:
        assert sample is None
    else:
        assert sample[0] == expected[0]
        assert sample[1] == pytest.approx(expected[1], rel=1e-15)
        assert sample[2] == expected[2]


def test_single_sample_decoder_respects_the_size_limit():
    """An oversized payload is left to the full decoder, which refuses it with a reason."""
    assert payloads.decode_single_sample(b"12.5", RECEIVED_AT, MPS, max_payload_bytes=2) is None
