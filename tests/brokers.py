"""Helpers for tests that talk to a private broker (the fixtures live in conftest.py)."""

from __future__ import annotations

import os

import pytest

from kinestream.io.broker import find_mosquitto


def preferred_broker() -> str:
    """`auto` (Mosquitto when installed), or what KINESTREAM_TEST_BROKER forces."""
    return os.environ.get("KINESTREAM_TEST_BROKER", "auto")


requires_mosquitto = pytest.mark.skipif(
    find_mosquitto() is None or preferred_broker() == "embedded",
    reason="needs the mosquitto binary (Debian package mosquitto): the embedded amqtt broker "
    "has no persistence and no in-flight or queue limits",
)
