"""Replay engine: pace by recorded time, rebase event times, wait for every acknowledgement."""

import asyncio
import json

import pytest

from kinestream.io.replayer import (
    first_event_ts,
    merge_by_time,
    rebase_payload,
    replay_messages,
)


class FakeClock:
    """Monotonic time that only moves when the replayer sleeps."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    async def sleep(self, seconds):
        await asyncio.sleep(0)  # like a real sleep, let started publishes run first
        self.now += seconds


class FakeBroker:
    """Acknowledges each publish after yielding to the loop; records what it got and when."""

    def __init__(self, clock=None, fail_on=None):
        self.clock = clock
        self.received = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_on = fail_on

    async def publish(self, topic, payload):
        called_at = self.clock.now if self.clock else None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if topic == self.fail_on:
                raise ConnectionError("broker went away")
            self.received.append((called_at, topic, payload))
        finally:
            self.in_flight -= 1


def messages(times):
    return [(t, "vehicles/v/speed", json.dumps({"ts": t, "speed": 1.0}).encode()) for t in times]


def test_rebase_moves_ts_of_an_object():
    """An object's ts moves by the shift; other fields are kept."""
    out = json.loads(rebase_payload(b'{"ts": 100.5, "speed": 3, "unit": "mph"}', 10.0))
    assert out == {"ts": 110.5, "speed": 3, "unit": "mph"}


def test_rebase_moves_every_element_of_an_array():
    """Each element of a batched array moves by the same shift."""
    out = json.loads(rebase_payload(b'[{"ts": 1.0, "speed": 1}, {"ts": 2.0, "speed": 2}]', 5.0))
    assert [e["ts"] for e in out] == [6.0, 7.0]


def test_rebase_converts_rfc3339_to_epoch_seconds():
    """An RFC 3339 ts is shifted and written as epoch seconds (2026-01-01T00:00:00Z)."""
    pytest.importorskip("kinestream.io.payloads")
    out = json.loads(rebase_payload(b'{"ts": "2026-01-01T00:00:00Z", "speed": 1}', 1.5))
    assert out["ts"] == 1767225601.5


@pytest.mark.parametrize(
    "payload", [b"12.5", b"{not json", b'{"speed": 1}', b"\xff\xfe", b"[1, 2]"]
)
def test_rebase_passes_through_what_has_no_ts(payload):
    """Bare numbers, broken JSON and objects without ts go out unchanged, never dropped."""
    assert rebase_payload(payload, 100.0) == payload


def test_first_event_ts_prefers_payload_ts_over_receive_time():
    """The first reading's ts counts; a payload without one falls back to t."""
    assert first_event_ts(5.0, b'[{"ts": 3.0, "speed": 1}]') == 3.0
    assert first_event_ts(5.0, b"7.0") == 5.0


def test_merge_interleaves_inputs_by_time():
    """Two time-ordered inputs come out as one time-ordered stream."""
    a = [(1.0, "a", b""), (3.0, "a", b"")]
    b = [(2.0, "b", b""), (4.0, "b", b"")]
    assert [m[0] for m in merge_by_time([a, b])] == [1.0, 2.0, 3.0, 4.0]


def test_paced_replay_publishes_at_recorded_offsets_divided_by_speed():
    """Recorded at t = 0, 1, 3 s and replayed at speed 2: published at 0, 0.5, 1.5 s."""
    clock = FakeClock()
    broker = FakeBroker(clock)
    counts = asyncio.run(
        replay_messages(
            messages([50.0, 51.0, 53.0]),
            broker.publish,
            speed=2.0,
            monotonic=clock.monotonic,
            sleep=clock.sleep,
        )
    )
    assert [round(r[0] - 1000.0, 9) for r in broker.received] == [0.0, 0.5, 1.5]
    assert (counts.sent, counts.acknowledged) == (3, 3)


def test_max_rate_never_sleeps_and_respects_the_window():
    """Without a speed nothing waits on the clock, and in-flight publishes stay within the
    window; the call returns only when all are acknowledged."""
    clock = FakeClock()
    broker = FakeBroker(clock)
    counts = asyncio.run(
        replay_messages(
            messages(range(500)),
            broker.publish,
            speed=None,
            window=7,
            monotonic=clock.monotonic,
            sleep=clock.sleep,
        )
    )
    assert clock.now == 1000.0
    assert broker.max_in_flight <= 7
    assert counts.acknowledged == 500 == len(broker.received)


def test_rebase_time_puts_the_first_reading_at_now():
    """With rebase_time the first ts becomes the wall clock and the spacing is kept."""
    broker = FakeBroker()
    asyncio.run(
        replay_messages(
            messages([100.0, 102.0]),
            broker.publish,
            speed=None,
            rebase_time=True,
            wall_clock=lambda: 1767225600.0,
        )
    )
    assert [json.loads(r[2])["ts"] for r in broker.received] == [1767225600.0, 1767225602.0]


def test_a_failed_publish_stops_the_replay_with_its_error():
    """A publish that fails propagates its error instead of being counted as sent."""
    broker = FakeBroker(fail_on="vehicles/bad/speed")
    stream = [*messages([1.0]), (2.0, "vehicles/bad/speed", b"1"), *messages(range(3, 50))]
    with pytest.raises(ConnectionError, match="broker went away"):
        asyncio.run(replay_messages(stream, broker.publish, speed=None, window=2))


def test_speed_must_be_positive():
    """A zero or negative speed is refused before anything is published."""
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(replay_messages([], FakeBroker().publish, speed=0.0))
