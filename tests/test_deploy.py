"""The docker compose stack, checked as far as a machine without a Docker engine can.

The YAML and JSON must agree with each other and with the repository: every mounted file
exists, ports line up between the services, Prometheus accepts its config, Mosquitto starts
with the shipped config, and the dashboard only queries metrics that kinestream exports.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml (test extra) parses the compose file")

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO / "config" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "config" / "grafana" / "dashboards" / "kinestream.json"
PROVISIONING = REPO / "config" / "grafana" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = PROVISIONING / "dashboards" / "kinestream.yml"
MOSQUITTO_DIR = REPO / "config" / "mosquitto"
SIMULATOR_SCRIPT = REPO / "config" / "simulator" / "simulate.sh"
PACKAGE_DATA = REPO / "src" / "kinestream" / "data"
EXPECTED_SERVICES = {"mosquitto", "kinestream", "simulator", "prometheus", "grafana"}


def _load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load_yaml(COMPOSE)


def _bind_mounts(service: dict) -> list[tuple[Path, str]]:
    """(host path in the repo, container path) for each ./relative volume of a service."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts.append((REPO / source, target))
    return mounts


def _container_path(service: dict, repo_path: Path) -> str:
    """Where a repo file appears inside a service's container, through its bind mounts."""
    for source, target in _bind_mounts(service):
        if repo_path == source:
            return target
        if source in repo_path.parents:
            return f"{target}/{repo_path.relative_to(source).as_posix()}"
    raise AssertionError(f"{repo_path} is not mounted into the service")


def _published_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def test_compose_names_the_five_services(compose):
    """The stack is broker, daemon, simulator, Prometheus and Grafana (services behind a
    profile, like the `nats` one, are not started by a plain `docker compose up`)."""
    default = {name for name, service in compose["services"].items() if not service.get("profiles")}
    assert default == EXPECTED_SERVICES
    assert compose["services"]["mosquitto"]["image"].startswith("eclipse-mosquitto:2")


def test_every_bind_mount_exists_in_the_repo(compose):
    """Each ./path a service mounts is a file or directory the repository ships."""
    mounts = [m for service in compose["services"].values() for m in _bind_mounts(service)]
    assert mounts, "expected config mounts"
    missing = [str(source.relative_to(REPO)) for source, _ in mounts if not source.exists()]
    assert missing == []


def test_named_volumes_are_declared(compose):
    """Every named volume a service uses is declared at the top level (compose refuses else)."""
    used = {
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith(("./", "/"))
    }
    assert used <= set(compose.get("volumes") or {})


def test_built_services_have_a_dockerfile_that_drops_root(compose):
    """The image is built from the repo's Dockerfile, runs as a non-root user, checks health."""
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK\s", dockerfile, flags=re.MULTILINE)
    for name in ("kinestream", "simulator"):
        assert compose["services"][name]["build"] == "."


def test_daemon_binds_metrics_for_prometheus_and_points_at_the_broker(compose):
    """In compose the daemon listens on 0.0.0.0 at the port Prometheus scrapes and the
    healthcheck probes, and connects to the mosquitto service."""
    environment = compose["services"]["kinestream"]["environment"]
    assert environment["KINESTREAM_METRICS__BIND"] == "0.0.0.0"
    port = int(environment["KINESTREAM_METRICS__PORT"])
    assert port in _published_ports(compose["services"]["kinestream"])
    assert f"127.0.0.1:{port}/metrics" in (REPO / "Dockerfile").read_text(encoding="utf-8")
    targets = [
        target
        for job in _load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert f"kinestream:{port}" in targets
    assert environment["KINESTREAM_MQTT__BROKER"] == "mqtt://mosquitto:1883"
    assert 1883 in _published_ports(compose["services"]["mosquitto"])


def test_simulator_runs_the_shipped_script_on_the_image_data(compose):
    """The simulator runs config/simulator/simulate.sh (mounted) against the mosquitto service,
    on the bundled data where the image installs it."""
    simulator = compose["services"]["simulator"]
    assert _container_path(simulator, SIMULATOR_SCRIPT) == simulator["entrypoint"][-1]
    assert simulator["environment"]["SIMULATOR_BROKER"] == "mqtt://mosquitto:1883"
    assert simulator["environment"]["SIMULATOR_DATA"] == "/opt/kinestream/src/kinestream/data"
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "WORKDIR /opt/kinestream" in dockerfile
    assert "COPY src ./src" in dockerfile


def test_grafana_provisioning_wires_datasource_and_dashboard(compose):
    """The dashboard's panels use the provisioned datasource's uid, and the dashboard provider
    reads the directory where compose mounts the dashboard JSON."""
    grafana = compose["services"]["grafana"]
    (datasource,) = _load_yaml(DATASOURCES)["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert 9090 in _published_ports(compose["services"]["prometheus"])
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource["uid"]}
    (provider,) = _load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert provider["options"]["path"] == _container_path(grafana, DASHBOARD.parent)
    assert _container_path(grafana, PROVISIONING) == "/etc/grafana/provisioning"


def test_dashboard_has_the_panels_operators_need():
    """Throughput, latency percentiles, vehicles, rejections, lag, broker and checkpoint age."""
    titles = " | ".join(p["title"].lower() for p in _dashboard_panels())
    for needed in (
        "throughput",
        "latency",
        "active vehicles",
        "rejections by reason",
        "event-time lag",
        "broker",
        "checkpoint age",
    ):
        assert needed in titles


def _dashboard_panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]


def dashboard_metric_names() -> set[str]:
    """Every kinestream_* series name in the dashboard's PromQL expressions."""
    exprs = [t["expr"] for p in _dashboard_panels() for t in p["targets"]]
    return {name for expr in exprs for name in re.findall(r"\bkinestream_[a-z0-9_]+", expr)}


def test_promtool_accepts_the_prometheus_config():
    """`promtool check config` passes on config/prometheus/prometheus.yml."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _mosquitto_config_in_use(compose: dict) -> Path:
    """The repo file behind the `-c` path of the mosquitto service's command."""
    service = compose["services"]["mosquitto"]
    container_path = service["command"][service["command"].index("-c") + 1]
    for source, target in _bind_mounts(service):
        if container_path.startswith(target + "/"):
            return source / container_path.removeprefix(target + "/")
    raise AssertionError(f"{container_path} is not mounted from the repo")


def _local_variant(config_text: str, port: int, data_dir: Path) -> str:
    """The shipped config with only what must differ here: a free loopback port, a temporary
    persistence directory, and the current user (as root mosquitto would drop to `mosquitto`,
    which cannot write the temporary directory)."""
    replacements = {
        "listener": f"listener {port} 127.0.0.1",
        "persistence_location": f"persistence_location {data_dir}/",
    }
    lines = [replacements.get(line.split(" ")[0], line) for line in config_text.splitlines()]
    lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
    return "\n".join(lines) + "\n"


def test_mosquitto_starts_with_the_shipped_config(compose, tmp_path):
    """Mosquitto accepts the compose config (every option valid for this version) and serves
    MQTT to an anonymous client, as the daemon and the simulator connect."""
    from kinestream.io.broker import find_mosquitto, free_port, mqtt_handshake_ok

    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto not installed (Debian package mosquitto; .ci/run installs it)")
    config = _mosquitto_config_in_use(compose)
    assert config.parent == MOSQUITTO_DIR
    port = free_port()
    local = tmp_path / "mosquitto.conf"
    local.write_text(_local_variant(config.read_text(encoding="utf-8"), port, tmp_path))
    log_path = tmp_path / "mosquitto.log"
    with log_path.open("wb") as log, _running([binary, "-c", str(local)], log=log) as broker:
        deadline = time.monotonic() + 10.0
        while broker.poll() is None and not mqtt_handshake_ok("127.0.0.1", port):
            assert time.monotonic() < deadline, "mosquitto did not answer CONNECT within 10 s"
            time.sleep(0.1)
        assert broker.poll() is None, f"mosquitto exited: {log_path.read_text()}"


def exported_sample_names() -> set[str]:
    """Every sample name a fresh daemon's registry exposes (labelled series start at zero)."""
    metrics = pytest.importorskip("kinestream.io.metrics", reason="kinestream.io.metrics not built")
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(metrics.make_registry(metrics.Metrics())).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_dashboard_queries_only_metrics_kinestream_exports():
    """Each kinestream_* name in a dashboard query is a series the daemon's registry serves, so
    no panel stays empty because of a typo or a rename."""
    queried = dashboard_metric_names()
    assert len(queried) >= 8
    assert queried - exported_sample_names() == set()


def test_daemon_environment_is_valid_configuration(compose, monkeypatch):
    """The KINESTREAM_* variables compose sets are real settings keys and take effect: metrics
    on 0.0.0.0, the broker service as the broker, the state volume as the state dir."""
    from kinestream.config import load_settings

    for name in [n for n in os.environ if n.startswith("KINESTREAM_")]:
        monkeypatch.delenv(name)
    service = compose["services"]["kinestream"]
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings()
    assert settings.metrics.bind == "0.0.0.0"
    assert (settings.mqtt.host, settings.mqtt.port) == ("mosquitto", 1883)
    assert settings.mqtt.client_id == "kinestream-compose"
    state_mount = next(v for v in service["volumes"] if v.startswith("kinestream-state:"))
    assert str(settings.state.dir) == state_mount.split(":")[1]


def _settings(path: Path) -> dict[str, list[str]]:
    """Option name -> values (in order) of a mosquitto config, comments and blanks skipped."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            settings.setdefault(name, []).append(value)
    return settings


def test_container_broker_config_keeps_the_host_configs_guarantees():
    """docker.conf sets every option of the documented host config (persistence, queue and
    in-flight limits, session expiry) to the same value; only paths and logging differ."""
    own_to_the_container = {"persistence_location", "log_dest", "log_type", "log_timestamp_format"}
    host = _settings(MOSQUITTO_DIR / "mosquitto.conf")
    container = _settings(MOSQUITTO_DIR / "docker.conf")
    differing = {
        name
        for name in host.keys() | container.keys()
        if host.get(name) != container.get(name) and name not in own_to_the_container
    }
    assert differing == set()
    assert container["persistence_location"] == ["/mosquitto/data/"]


def _scrape(port: int) -> dict[str, float]:
    """Sample name (with labels) -> value from the daemon's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def _scrape_or_empty(port: int) -> dict[str, float]:
    try:
        return _scrape(port)
    except OSError:
        return {}


@pytest.mark.integration
def test_stack_without_docker_shows_live_numbers(compose, tmp_path):
    """The compose services' own commands, run here as processes (Mosquitto with the
    container config, `kinestream run` with the compose environment, the simulator's replays)
    make a live fleet: every replayed vehicle is tracked and the dashboard's series move."""
    from kinestream.commands import SUMMARIES
    from kinestream.io.broker import find_mosquitto, free_port

    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto not installed (Debian package mosquitto; .ci/run installs it)")
    if "replay" not in SUMMARIES:
        pytest.skip("the simulator needs `kinestream replay`, which is not registered yet")
    broker_port, metrics_port = free_port(), free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        _local_variant(_mosquitto_config_in_use(compose).read_text(), broker_port, tmp_path)
    )
    environment = {
        **os.environ,
        **{k: str(v) for k, v in compose["services"]["kinestream"]["environment"].items()},
        # Loopback only here: a private broker, metrics on a free port, a temporary state dir.
        "KINESTREAM_MQTT__BROKER": f"mqtt://127.0.0.1:{broker_port}",
        "KINESTREAM_METRICS__BIND": "127.0.0.1",
        "KINESTREAM_METRICS__PORT": str(metrics_port),
        "KINESTREAM_STATE__DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(REPO / "src"),
    }
    daemon_argv = [
        sys.executable,
        "-m",
        "kinestream",
        *compose["services"]["kinestream"]["command"],
    ]
    simulator_environment = {
        **environment,
        "SIMULATOR_DATA": str(PACKAGE_DATA),
        "SIMULATOR_BROKER": f"mqtt://127.0.0.1:{broker_port}",
        "SIMULATOR_KINESTREAM": f"{sys.executable} -m kinestream",
    }
    vehicles = len(list(PACKAGE_DATA.glob("*/*.csv")))
    log_path = tmp_path / "stack.log"
    with log_path.open("wb") as log, contextlib.ExitStack() as stack:
        broker = stack.enter_context(_running([binary, "-c", str(config)], log=log))
        daemon = stack.enter_context(_running(daemon_argv, env=environment, log=log))
        simulator = stack.enter_context(
            _running(["sh", str(SIMULATOR_SCRIPT)], env=simulator_environment, log=log)
        )
        deadline = time.monotonic() + 60.0
        samples = _scrape_or_empty(metrics_port)
        while samples.get("kinestream_active_vehicles", 0) < vehicles:
            assert time.monotonic() < deadline, f"{samples}\n{log_path.read_text()[-3000:]}"
            for process in (broker, daemon, simulator):
                assert process.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.5)
            samples = _scrape_or_empty(metrics_port)
    assert samples["kinestream_active_vehicles"] == vehicles
    assert samples["kinestream_broker_connected"] == 1
    assert samples["kinestream_readings_total{result=accepted}"] >= vehicles
    assert samples["kinestream_processing_latency_seconds_count"] >= vehicles
    assert samples["kinestream_outputs_published_total{kind=kinematics}"] >= vehicles


@contextlib.contextmanager
def _running(
    argv: list[str], *, log: IO[bytes], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """A child process in a process group of its own, ended with everything it started."""
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        yield process
    finally:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
