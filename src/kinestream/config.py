"""Daemon settings: a TOML file, ``KINESTREAM_*`` environment variables and flags, validated once.

Precedence, highest first: command-line flags, environment (``KINESTREAM_MQTT__BROKER``: ``__``
separates the nesting levels), the TOML file given with ``--config``, then the defaults here.
``config/kinestream.toml`` documents every key. Nothing below leaks into the core: the service
turns these models into plain values (``TrackerParams``, keyword arguments) at the edge.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    UrlConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kinestream.core.params import EstimatorParams, Method, TrackerParams
from kinestream.core.units import SpeedUnit
from kinestream.errors import UsageError
from kinestream.io.payloads import (
    DEFAULT_MAX_FUTURE_S,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_TOPIC_PREFIX,
    DEFAULT_UNIT,
)
from kinestream.settings_env import ENV_PREFIX

MQTT_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# A topic level and a client id must not contain MQTT wildcards or separators.
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_CLIENT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")

BrokerUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["mqtt", "mqtts"], host_required=True)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


def default_client_id() -> str:
    """``kinestream-<hostname>``: stable across restarts, so the broker keeps our session."""
    host = _CLIENT_ID_UNSAFE.sub("-", socket.gethostname())[:40] or "localhost"
    return f"kinestream-{host}"


class WalFsync(StrEnum):
    """When the write-ahead log is forced to disk (power-loss safety, not crash safety).

    The log is written before every acknowledgement in all modes; the OS page cache keeps it
    across a killed process. ``never`` leaves flushing to the OS, ``interval`` fdatasyncs in the
    background every ``wal_fsync_interval_s`` (a power cut can lose that much), ``always``
    fdatasyncs each batch before acknowledging it (power-loss safe, slowest).
    """

    NEVER = "never"
    INTERVAL = "interval"
    ALWAYS = "always"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    broker: BrokerUrl = AnyUrl("mqtt://localhost:1883")
    client_id: str = Field(default_factory=default_client_id, min_length=1, max_length=128)
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    service_prefix: str = "kinestream"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_insecure: bool = False
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=60, le=0xFFFFFFFF)
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    output_qos: Literal[0, 1] = 0
    reconnect_initial_s: Positive = 0.5
    reconnect_max_s: Positive = 30.0
    state_publish_interval_s: NonNegative = 1.0
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=16)

    @field_validator("topic_prefix", "service_prefix")
    @classmethod
    def _topic_levels(cls, value: str) -> str:
        if not _TOPIC_LEVEL.match(value):
            raise ValueError(
                f"{value!r} is not a plain topic prefix (no wildcards, no empty level)"
            )
        return value

    @field_validator("password_file", "tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be at least reconnect_initial_s")
        return self

    @property
    def host(self) -> str:
        return str(self.broker.host)

    @property
    def port(self) -> int:
        return self.broker.port or MQTT_DEFAULT_PORTS[self.broker.scheme]

    @property
    def tls(self) -> bool:
        return self.broker.scheme == "mqtts"

    def password_value(self) -> str | None:
        """The password from the setting or its file (first line); never logged."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
            return lines[0] if lines else ""
        return None


class MetricsSettings(_Section):
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class StateSettings(_Section):
    dir: Path = Path("kinestream-state")
    checkpoint_interval_s: Positive = 30.0
    wal_fsync: WalFsync = WalFsync.INTERVAL
    wal_fsync_interval_s: Positive = 1.0
    max_vehicles: int = Field(default=100_000, ge=1)
    idle_evict_s: Positive = 3600.0


class NatsSettings(_Section):
    """``run --transport nats``: partitioned workers on JetStream (docs/scaling.md)."""

    # One or more servers of the cluster, comma-separated. Flag: --nats-url.
    url: str = "nats://localhost:4222"
    # Must equal N in the server's partition(N,1) mapping. Flag: --partitions.
    partitions: int = Field(default=8, ge=1, le=1024)
    # Partitioned subjects: {subject_prefix}.{n}.{topic prefix}.{vehicle_id}.speed
    subject_prefix: str = "kinestream.p"
    stream: str = "KINESTREAM"
    stream_max_age_s: Positive = 86400.0
    replicas: int = Field(default=1, ge=1, le=5)
    state_bucket: str = "kinestream-state"
    lease_bucket: str = "kinestream-leases"
    lease_ttl_s: Annotated[float, Field(ge=1.0, le=600.0)] = 3.0
    # Unique per worker process; default kinestream-<hostname>-<pid>. Flag: --worker-id.
    worker_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    batch_size: int = Field(default=500, ge=1, le=100_000)
    fetch_timeout_s: Annotated[float, Field(ge=0.05, le=60.0)] = 1.0

    @field_validator("subject_prefix")
    @classmethod
    def _subject_tokens(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", value):
            raise ValueError(f"{value!r} is not a plain NATS subject prefix (no wildcards)")
        return value

    @field_validator("stream")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError(f"{value!r} is not a valid stream name")
        return value

    @field_validator("state_bucket", "lease_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError(f"{value!r} is not a valid KV bucket name")
        return value

    def urls(self) -> list[str]:
        return [part.strip() for part in self.url.split(",") if part.strip()]


_TRACKER_DEFAULTS = TrackerParams()
_ESTIMATOR_DEFAULTS = EstimatorParams()


class TrackerSettings(_Section):
    """Everything ``TrackerParams`` takes, plus the two facts only the daemon knows."""

    method: Method = _ESTIMATOR_DEFAULTS.method
    default_unit: SpeedUnit = DEFAULT_UNIT
    max_future_s: NonNegative = DEFAULT_MAX_FUTURE_S
    tick_interval_s: Positive = 1.0
    # Defaults below come from the core's params so that they are stated (and tuned) once.
    kalman_jerk_psd_m2ps5: Positive = _ESTIMATOR_DEFAULTS.kalman_jerk_psd_m2ps5
    kalman_speed_sigma_mps: Positive = _ESTIMATOR_DEFAULTS.kalman_speed_sigma_mps
    polyfit_window_s: Positive = _ESTIMATOR_DEFAULTS.polyfit_window_s
    reorder_bound_s: NonNegative = _TRACKER_DEFAULTS.reorder_bound_s
    duplicate_memory: int = Field(default=_TRACKER_DEFAULTS.duplicate_memory, ge=1, le=4096)
    min_timestamp_s: NonNegative = _TRACKER_DEFAULTS.min_timestamp_s
    max_timestamp_s: Positive = _TRACKER_DEFAULTS.max_timestamp_s
    min_speed_mps: Finite = _TRACKER_DEFAULTS.min_speed_mps
    max_speed_mps: Positive = _TRACKER_DEFAULTS.max_speed_mps
    max_accel_mps2: Positive = _TRACKER_DEFAULTS.max_accel_mps2
    step_noise_allowance_mps: NonNegative = _TRACKER_DEFAULTS.step_noise_allowance_mps
    step_noise_sigmas: NonNegative = _TRACKER_DEFAULTS.step_noise_sigmas
    min_gap_s: Positive = _TRACKER_DEFAULTS.min_gap_s
    max_gap_s: Positive = _TRACKER_DEFAULTS.max_gap_s
    trip_start_speed_mps: NonNegative = _TRACKER_DEFAULTS.trip_start_speed_mps
    trip_stop_speed_mps: NonNegative = _TRACKER_DEFAULTS.trip_stop_speed_mps
    trip_end_stop_s: Positive = _TRACKER_DEFAULTS.trip_end_stop_s
    harsh_acceleration_g: Positive = _TRACKER_DEFAULTS.harsh_acceleration_g
    harsh_braking_g: Positive = _TRACKER_DEFAULTS.harsh_braking_g
    harsh_min_duration_s: NonNegative = _TRACKER_DEFAULTS.harsh_min_duration_s
    harsh_exit_fraction: Annotated[float, Field(gt=0, le=1)] = _TRACKER_DEFAULTS.harsh_exit_fraction

    @model_validator(mode="after")
    def _ordered(self) -> TrackerSettings:
        if self.max_gap_s < self.min_gap_s:
            raise ValueError("max_gap_s must be at least min_gap_s")
        if self.trip_stop_speed_mps > self.trip_start_speed_mps:
            raise ValueError("trip_stop_speed_mps must not exceed trip_start_speed_mps")
        return self

    def to_params(self) -> TrackerParams:
        """The core's frozen parameters; only ``TrackerParams`` fields cross into the core."""
        estimator = EstimatorParams(
            method=self.method,
            kalman_jerk_psd_m2ps5=self.kalman_jerk_psd_m2ps5,
            kalman_speed_sigma_mps=self.kalman_speed_sigma_mps,
            polyfit_window_s=self.polyfit_window_s,
        )
        own = {"method", "default_unit", "max_future_s", "tick_interval_s"}
        estimator_keys = {"kalman_jerk_psd_m2ps5", "kalman_speed_sigma_mps", "polyfit_window_s"}
        values = self.model_dump(exclude=own | estimator_keys)
        return TrackerParams(estimator=estimator, **values)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    mqtt: MqttSettings = MqttSettings()
    metrics: MetricsSettings = MetricsSettings()
    state: StateSettings = StateSettings()
    tracker: TrackerSettings = TrackerSettings()
    # mqtt: the single daemon; nats: a partitioned worker (docs/scaling.md). Flag: --transport.
    transport: Literal["mqtt", "nats"] = "mqtt"
    nats: NatsSettings = NatsSettings()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = _CONFIG_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


# The TOML path for the one Settings() call in load_settings (pydantic-settings reads sources
# from a classmethod, so the path travels in a context variable rather than a global).
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("kinestream_config_file", default=None)


@contextmanager
def _config_file(path: Path | None) -> Iterator[None]:
    token = _CONFIG_FILE.set(path)
    try:
        yield
    finally:
        _CONFIG_FILE.reset(token)


def load_settings(
    config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Validate every source once; any problem becomes a one-line ``UsageError`` (exit 2).

    ``overrides`` are the command-line flags, nested like the TOML (``{"mqtt": {...}}``).
    """
    if config_file is not None and not config_file.is_file():
        raise UsageError(f"config: file {str(config_file)!r} does not exist")
    try:
        with _config_file(config_file):
            return Settings(**dict(overrides or {}))
    except ValidationError as error:
        raise UsageError(describe_validation_error(error)) from None
    except (OSError, ValueError) as error:  # unreadable or malformed TOML
        raise UsageError(f"config: {error}") from None


def describe_validation_error(error: ValidationError) -> str:
    """``invalid configuration: mqtt.broker: <problem> (got 'x')`` for the first problem."""
    first = error.errors(include_url=False)[0]
    key = ".".join(str(part) for part in first["loc"]) or "settings"
    problem = first["msg"].removeprefix("Value error, ")
    shown = first.get("input")
    got = "" if isinstance(shown, Mapping) or "password" in key else f" (got {shown!r})"
    extra = f"; and {error.error_count() - 1} more" if error.error_count() > 1 else ""
    return f"invalid configuration: {key}: {problem}{got}{extra}"
