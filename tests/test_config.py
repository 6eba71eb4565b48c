"""Settings: TOML + KINESTREAM_* env + flags, validated once, one-line errors (exit 2)."""

from pathlib import Path

import pytest

from kinestream.config import default_client_id, load_settings
from kinestream.core.params import Method, TrackerParams
from kinestream.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("KINESTREAM_"):
            monkeypatch.delenv(name)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kinestream.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_spec():
    """Out of the box: local broker, port 9108 on loopback, prefix `vehicles`, QoS 0 out."""
    settings = load_settings()
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.tls) == ("localhost", 1883, False)
    assert settings.mqtt.topic_prefix == "vehicles"
    assert settings.mqtt.service_prefix == "kinestream"
    assert settings.mqtt.output_qos == 0
    assert (settings.metrics.bind, settings.metrics.port) == ("127.0.0.1", 9108)
    assert settings.tracker.max_future_s == 10.0
    assert settings.state.max_vehicles == 100_000
    assert settings.tracker.method is Method.KALMAN


def test_client_id_default_is_stable_and_topic_safe():
    """The default client id is the same on every start (the broker keeps our session by it)."""
    assert default_client_id() == default_client_id()
    assert default_client_id().startswith("kinestream-")
    assert all(c.isalnum() or c in "-_" for c in default_client_id())


def test_precedence_flags_over_env_over_toml(tmp_path, monkeypatch):
    """A flag beats the environment, which beats the TOML file, key by key (deep merge)."""
    config = write_toml(
        tmp_path,
        '[mqtt]\nbroker = "mqtts://broker.example:8884"\ntopic_prefix = "fleet"\n'
        'client_id = "from-toml"\n[tracker]\nmethod = "polyfit"\n',
    )
    monkeypatch.setenv("KINESTREAM_MQTT__TOPIC_PREFIX", "from-env")
    monkeypatch.setenv("KINESTREAM_MQTT__CLIENT_ID", "env-id")
    settings = load_settings(config, {"mqtt": {"client_id": "flag-id"}})
    assert settings.mqtt.client_id == "flag-id"
    assert settings.mqtt.topic_prefix == "from-env"
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.tls) == (
        "broker.example",
        8884,
        True,
    )
    assert settings.tracker.method is Method.POLYFIT


def test_mqtts_default_port_is_8883():
    """`mqtts://host` without a port means the standard TLS port."""
    assert load_settings(overrides={"mqtt": {"broker": "mqtts://h"}}).mqtt.port == 8883


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"mqtt": {"broker": "http://x:1"}}, "mqtt.broker"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"tracker": {"method": "magic"}}, "tracker.method"),
        ({"tracker": {"default_unit": "furlong/fortnight"}}, "tracker.default_unit"),
        ({"mqtt": {"topic_prefix": "a/+/b"}}, "mqtt.topic_prefix"),
        ({"mqtt": {"output_qos": 2}}, "mqtt.output_qos"),
        ({"state": {"no_such_key": 1}}, "state.no_such_key"),
    ],
)
def test_invalid_value_is_one_line_naming_the_key(overrides, key):
    """Every invalid setting becomes a UsageError (exit 2) with one line naming the key."""
    with pytest.raises(UsageError) as raised:
        load_settings(overrides=overrides)
    message = str(raised.value)
    assert "\n" not in message
    assert f"{key}:" in message


def test_invalid_env_value_names_the_key(monkeypatch):
    """A bad environment variable is reported by its setting key."""
    monkeypatch.setenv("KINESTREAM_STATE__MAX_VEHICLES", "many")
    with pytest.raises(UsageError, match=r"state\.max_vehicles:.*'many'"):
        load_settings()


def test_unknown_toml_key_is_refused(tmp_path):
    """A typo in the TOML file is an error, not silently ignored."""
    config = write_toml(tmp_path, "[mqtt]\nbrokr = 'mqtt://x'\n")
    with pytest.raises(UsageError, match=r"mqtt\.brokr"):
        load_settings(config)


def test_malformed_toml_and_missing_file_are_usage_errors(tmp_path):
    """Broken TOML and a missing --config file are one-line usage errors."""
    with pytest.raises(UsageError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(UsageError):
        load_settings(write_toml(tmp_path, "[mqtt\n"))


def test_password_from_file_and_never_shown(tmp_path):
    """The password can come from a file; it never appears in the settings' repr or errors."""
    secret = tmp_path / "pw"
    secret.write_text("s3cret-from-file\n", encoding="utf-8")
    settings = load_settings(overrides={"mqtt": {"username": "u", "password_file": str(secret)}})
    assert settings.mqtt.password_value() == "s3cret-from-file"
    env_settings = load_settings(overrides={"mqtt": {"password": "hunter2"}})
    assert env_settings.mqtt.password_value() == "hunter2"
    assert "hunter2" not in repr(env_settings)
    with pytest.raises(UsageError) as raised:
        load_settings(overrides={"mqtt": {"password": "hunter2", "password_file": str(secret)}})
    assert "hunter2" not in str(raised.value)


def test_tracker_settings_cover_every_tracker_param():
    """Every TrackerParams field is configurable, and values arrive in the core unchanged."""
    settings = load_settings(
        overrides={"tracker": {"method": "difference", "reorder_bound_s": 2.5, "max_gap_s": 60}}
    )
    params = settings.tracker.to_params()
    assert isinstance(params, TrackerParams)
    assert params.estimator.method is Method.DIFFERENCE
    assert (params.reorder_bound_s, params.max_gap_s) == (2.5, 60.0)
    configurable = set(type(settings.tracker).model_fields)
    for name in TrackerParams.__dataclass_fields__:
        assert name == "estimator" or name in configurable


def test_shipped_example_config_is_valid_and_documents_every_key():
    """config/kinestream.toml loads, and names every setting of every section."""
    path = REPO / "config" / "kinestream.toml"
    settings = load_settings(path)
    text = path.read_text(encoding="utf-8")
    for section in ("mqtt", "metrics", "state", "tracker"):
        assert f"[{section}]" in text
        for key in type(getattr(settings, section)).model_fields:
            assert f"{key} =" in text, f"{section}.{key} undocumented"
