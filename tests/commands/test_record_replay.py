"""`record` and `replay` against a private broker: what goes out comes back byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from kinestream.cli import main
from kinestream.io.logs import LogReader, LogWriter

SRC = str(Path(__file__).resolve().parents[2] / "src")


def kinestream(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-m", "kinestream", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_line(process: subprocess.Popen[str], start: str) -> str:
    """Read stderr until a line starts with `start` (the recorder's readiness line)."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith(start):
            return line
    process.wait(10)
    raise AssertionError(f"no line starting {start!r}; stderr was {''.join(seen)!r}")


def start_recorder(broker, topic_filter: str, log: Path, count: int) -> subprocess.Popen[str]:
    """`kinestream record ... --count N` in a child, returned once it is subscribed."""
    recorder = kinestream(
        "record", "--broker", broker.url, "--topic", topic_filter,
        "-o", str(log), "--count", str(count),
    )  # fmt: skip
    try:
        wait_for_line(recorder, "recording")
    except BaseException:
        recorder.kill()
        raise
    return recorder


class Listener:
    """A paho subscriber collecting (topic, payload) in arrival order."""

    def __init__(self, broker, topic: str, expected: int):
        self.received: list[tuple[str, bytes]] = []
        self.expected = expected
        self.complete = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5)

    def _on_message(self, _c, _u, message) -> None:
        self.received.append((message.topic, message.payload))
        if len(self.received) >= self.expected:
            self.complete.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(broker, messages: list[tuple[str, bytes]]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def unique_prefix() -> str:
    return f"rr{uuid.uuid4().hex[:8]}"


def test_record_writes_each_message_once_in_the_log_format(mqtt_broker, tmp_path):
    """Recorded messages read back (LogReader) as the same topics and payloads, in order,
    including a payload that is not UTF-8; --count stops the recorder with exit 0."""
    prefix = unique_prefix()
    log = tmp_path / "recorded.jsonl"
    sent = [
        (f"{prefix}/truck-7/speed", b'{"ts": 1767225600.0, "speed": 12.5}'),
        (f"{prefix}/truck-8/speed", b"13.25"),
        (f"{prefix}/truck-7/speed", b"\xff\xfe not utf-8"),
        (f"{prefix}/truck-9/speed", b'[{"ts": 1767225601.0, "speed": 1}]'),
    ]
    recorder = start_recorder(mqtt_broker, f"{prefix}/+/speed", log, count=4)
    try:
        publish_all(mqtt_broker, sent)
        assert recorder.wait(20) == 0
    finally:
        recorder.kill()
    assert [(topic, payload) for _t, topic, payload in LogReader(log)] == sent
    assert "recorded 4 messages" in recorder.stderr.read()


def test_record_stops_after_duration_with_nothing_received(mqtt_broker, tmp_path):
    """--duration ends a quiet recording with exit 0 and an empty log."""
    log = tmp_path / "quiet.jsonl"
    code = subprocess.run(
        [sys.executable, "-m", "kinestream", "record", "--broker", mqtt_broker.url,
         "--topic", f"{unique_prefix()}/#", "-o", str(log), "--duration", "0.5"],
        env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert code.returncode == 0, code.stderr
    assert "recorded 0 messages" in code.stderr
    assert log.read_bytes() == b""


def test_record_with_a_bad_broker_url_is_a_usage_error(tmp_path, capsys):
    """A URL that is not mqtt:// or mqtts:// exits 2 with one line naming it."""
    code = main(["record", "--broker", "http://x", "-o", str(tmp_path / "x.jsonl")])
    assert code == 2
    assert "http://x" in capsys.readouterr().err


def test_record_with_no_broker_listening_fails_with_exit_1(tmp_path, capsys):
    """Nothing listening on the port: exit 1 naming the broker, no traceback."""
    from kinestream.io.broker import free_port

    url = f"mqtt://127.0.0.1:{free_port()}"
    code = main(["record", "--broker", url, "-o", str(tmp_path / "x.jsonl"), "--duration", "1"])
    assert code == 1
    assert url in capsys.readouterr().err


def write_log(path: Path, messages: list[tuple[float, str, bytes]]) -> None:
    with LogWriter(path) as writer:
        for t, topic, payload in messages:
            writer.append_message(t, topic, payload)


def test_replay_then_record_round_trip_is_byte_identical(mqtt_broker, tmp_path):
    """A log replayed at max rate through the broker and recorded again holds the same
    topics and payloads in the same order (three vehicles, one payload not UTF-8)."""
    prefix = unique_prefix()
    original = [
        (1767225600.0 + i * 0.5, f"{prefix}/v{i % 3}/speed", b'{"ts": %d.5, "speed": %d}' % (i, i))
        for i in range(60)
    ]
    original[7] = (original[7][0], original[7][1], b"\x80 binary")
    source, copy = tmp_path / "source.jsonl", tmp_path / "copy.jsonl"
    write_log(source, original)
    recorder = start_recorder(mqtt_broker, f"{prefix}/+/speed", copy, count=60)
    try:
        assert main(["replay", str(source), "--broker", mqtt_broker.url, "--max-rate"]) == 0
        assert recorder.wait(30) == 0
    finally:
        recorder.kill()
    assert [(m[1], m[2]) for m in LogReader(copy)] == [(m[1], m[2]) for m in original]


def test_replay_of_a_csv_with_rebase_time_starts_at_now(mqtt_broker, tmp_path, capsys):
    """CSV rows at epoch 1e9 + 0, 1, 2 s replayed with --rebase-time: the first ts lies
    between the start and the end of the command, and the 1 s spacing is kept."""
    prefix = unique_prefix()
    csv_path = tmp_path / "van.csv"
    csv_path.write_text("ts,speed_kmh\n1000000000,36\n1000000001,72\n1000000002,0\n")
    listener = Listener(mqtt_broker, f"{prefix}/+/speed", expected=3)
    try:
        before = time.time()
        code = main([
            "replay", str(csv_path), "--broker", mqtt_broker.url, "--speed", "20",
            "--rebase-time", "--topic-prefix", prefix,
        ])  # fmt: skip
        after = time.time()
        assert code == 0
        assert listener.complete.wait(10)
    finally:
        listener.close()
    assert [topic for topic, _ in listener.received] == [f"{prefix}/van/speed"] * 3
    payloads = [json.loads(payload) for _, payload in listener.received]
    assert before <= payloads[0]["ts"] <= after
    assert [round(p["ts"] - payloads[0]["ts"], 6) for p in payloads] == [0.0, 1.0, 2.0]
    assert [(p["speed"], p["unit"]) for p in payloads] == [(36, "km/h"), (72, "km/h"), (0, "km/h")]
    assert "3 messages, all acknowledged" in capsys.readouterr().err


def test_replay_reports_unreadable_lines_and_publishes_the_rest(mqtt_broker, tmp_path, capsys):
    """A broken line is reported on stderr with its line number; the others go out."""
    prefix = unique_prefix()
    log = tmp_path / "partly.jsonl"
    log.write_text(
        f'{{"t": 1.0, "topic": "{prefix}/a/speed", "payload": "1"}}\n'
        "this is not json\n"
        f'{{"t": 2.0, "topic": "{prefix}/a/speed", "payload": "2"}}\n'
    )
    listener = Listener(mqtt_broker, f"{prefix}/+/speed", expected=2)
    try:
        assert main(["replay", str(log), "--broker", mqtt_broker.url, "--max-rate"]) == 0
        assert listener.complete.wait(10)
    finally:
        listener.close()
    assert [payload for _, payload in listener.received] == [b"1", b"2"]
    err = capsys.readouterr().err
    assert "1 unreadable lines" in err and "line 2" in err


def test_replay_of_a_missing_file_is_a_usage_error(tmp_path, capsys):
    """A missing input exits 2 naming it, before any connection is tried."""
    missing = tmp_path / "nope.jsonl"
    assert main(["replay", str(missing), "--broker", "mqtt://127.0.0.1:1"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_replay_speed_and_max_rate_are_exclusive(tmp_path):
    """--speed and --max-rate together are a usage error (argparse exit 2)."""
    with pytest.raises(SystemExit) as exited:
        main(["replay", "x.jsonl", "--broker", "mqtt://h", "--speed", "2", "--max-rate"])
    assert exited.value.code == 2


def test_replay_exits_1_when_the_broker_dies_midway(broker_factory, tmp_path):
    """A broker killed during a paced replay ends it with exit 1 and one line saying the
    connection was lost and how many messages the broker had acknowledged."""
    broker = broker_factory()
    prefix = unique_prefix()
    log = tmp_path / "long.jsonl"
    write_log(log, [(i * 0.05, f"{prefix}/v/speed", b"%d" % i) for i in range(2000)])
    listener = Listener(broker, f"{prefix}/+/speed", expected=5)
    replay = kinestream("replay", str(log), "--broker", broker.url)
    try:
        assert listener.complete.wait(30)
        broker.kill()
        assert replay.wait(30) == 1
    finally:
        replay.kill()
        listener.client.loop_stop()
    err = replay.stderr.read()
    assert "lost the connection to broker" in err
    assert "messages were acknowledged" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("bad_filter", ["", "vehicles/#/speed", "vehicles/a+/speed", "x/y#"])
def test_record_refuses_an_invalid_topic_filter(bad_filter, tmp_path, capsys):
    """A filter with a misplaced wildcard is a usage error naming it, before connecting."""
    out = tmp_path / "x.jsonl"
    code = main(["record", "--broker", "mqtt://127.0.0.1:1", "--topic", bad_filter, "-o", str(out)])
    assert code == 2
    assert repr(bad_filter) in capsys.readouterr().err
