"""The `[nats]` settings and the `run --transport nats` flags (validated once, at the edge)."""

from __future__ import annotations

import argparse

import pytest

from kinestream.commands.run import register, settings_from_args
from kinestream.config import load_settings
from kinestream.errors import UsageError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["run", *argv])


def test_flags_select_the_nats_transport_and_its_keys():
    """--transport, --nats-url, --partitions and --worker-id land in the settings."""
    settings = settings_from_args(
        parse("--transport", "nats", "--nats-url", "nats://a:4222,nats://b:4222",
              "--partitions", "12", "--worker-id", "w-1")
    )  # fmt: skip
    assert settings.transport == "nats"
    assert settings.nats.urls() == ["nats://a:4222", "nats://b:4222"]
    assert (settings.nats.partitions, settings.nats.worker_id) == (12, "w-1")


def test_default_transport_is_mqtt():
    """Without --transport, `run` stays the single MQTT daemon."""
    assert settings_from_args(parse()).transport == "mqtt"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"partitions": 0}, "nats.partitions"),
        ({"worker_id": "has space"}, "nats.worker_id"),
        ({"subject_prefix": "kinestream.*"}, "nats.subject_prefix"),
        ({"lease_ttl_s": 0.1}, "nats.lease_ttl_s"),
    ],
)
def test_invalid_nats_settings_name_the_key(section, problem):
    """A bad [nats] value is one usage error naming the key (exit code 2 at the CLI)."""
    with pytest.raises(UsageError, match=problem.replace(".", r"\.")):
        load_settings(overrides={"nats": section})
