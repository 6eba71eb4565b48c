"""The shared argument converters, through the commands' real parsers."""

from __future__ import annotations

import pytest

from kinestream.cli import build_parser

BROKER = ["--broker", "mqtt://127.0.0.1:1"]
RECORD = ["record", *BROKER, "-o", "x.jsonl"]
REPLAY = ["replay", *BROKER, "x.jsonl"]

INVALID = [
    (["demo", "--duration", "0"], "--duration: must be a number of seconds above zero, got 0"),
    (["demo", "--duration", "inf"], "--duration: must be a number of seconds above zero, got inf"),
    (["demo", "--duration", "soon"], "--duration: 'soon' is not a number of seconds"),
    (["demo", "--vehicles", "0"], "--vehicles: must be between 1 and 10000, got 0"),
    (["demo", "--vehicles", "10001"], "--vehicles: must be between 1 and 10000, got 10001"),
    (["demo", "--vehicles", "2.5"], "--vehicles: '2.5' is not a whole number"),
    ([*RECORD, "--count", "0"], "--count: must be at least 1, got 0"),
    ([*RECORD, "--duration", "nan"], "must be a number of seconds above zero"),
    ([*REPLAY, "--speed", "-2"], "--speed: must be a number above zero, got -2"),
    ([*REPLAY, "--speed", "fast"], "--speed: 'fast' is not a number"),
]


@pytest.mark.parametrize(("argv", "message"), INVALID)
def test_invalid_values_exit_2_with_one_wording(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_valid_values_are_converted() -> None:
    parser = build_parser()
    demo = parser.parse_args(["demo", "--duration", "2.5", "--vehicles", "10000"])
    assert (demo.duration, demo.vehicles) == (2.5, 10_000)
    record = parser.parse_args([*RECORD, "--count", "3", "--duration", "1e-3"])
    assert (record.count, record.duration) == (3, 0.001)
    assert parser.parse_args([*REPLAY, "--speed", "0.5"]).speed == 0.5
