"""The shipped NATS configs and the compose profile `nats`, checked without a Docker engine."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from kinestream.config import NatsSettings
from tests.integration.nats_helpers import find_nats_server

yaml = pytest.importorskip("yaml", reason="pyyaml (test extra) parses the compose file")

REPO = Path(__file__).resolve().parent.parent
NATS_DIR = REPO / "config" / "nats"
CONFIGS = ("nats-server.conf", "cluster.conf")
MAPPING = re.compile(r'"vehicles\.\*\.speed":\s*"kinestream\.p\.\{\{partition\((\d+),1\)\}\}\.'
                     r'vehicles\.\{\{wildcard\(1\)\}\}\.speed"')  # fmt: skip


@pytest.fixture(scope="module")
def nats_profile() -> dict[str, dict]:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return {name: s for name, s in services.items() if "nats" in (s.get("profiles") or ())}


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_is_valid_for_the_installed_server(name):
    """`nats-server -t` accepts each shipped config (the server parses the mapping too)."""
    binary = find_nats_server()
    assert binary is not None, "nats-server is missing: apt-get install nats-server"
    env = {**os.environ, "NATS_SERVER_NAME": "nats-1"}
    result = subprocess.run(
        [binary, "-c", str(NATS_DIR / name), "-t"],
        capture_output=True, text=True, env=env, check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_mapping_partitions_equal_the_workers_default(name):
    """The server's partition(N,1) and the workers' default --partitions are the same N (a
    mismatch would leave partitions nobody consumes)."""
    found = MAPPING.findall((NATS_DIR / name).read_text())
    assert found == [str(NatsSettings().partitions)]


def test_profile_runs_three_named_nodes_and_three_distinct_workers(nats_profile):
    """Three NATS nodes with distinct server names in one cluster, and three workers with
    distinct ids pointing at all three nodes with replicas 3 and the mapping's N."""
    nodes = {n: s for n, s in nats_profile.items() if re.fullmatch(r"nats-\d", n)}
    assert {s["environment"]["NATS_SERVER_NAME"] for s in nodes.values()} == set(nodes)
    assert len(nodes) == 3
    routes = re.findall(r"nats://(nats-\d):6222", (NATS_DIR / "cluster.conf").read_text())
    assert set(routes) == set(nodes)
    workers = {n: s for n, s in nats_profile.items() if n.startswith("nats-worker")}
    ids = {s["command"][s["command"].index("--worker-id") + 1] for s in workers.values()}
    assert len(workers) == 3 and len(ids) == 3
    for worker in workers.values():
        environment = worker["environment"]
        assert {
            u.split("//")[1].split(":")[0] for u in environment["KINESTREAM_NATS__URL"].split(",")
        } == set(nodes)
        assert environment["KINESTREAM_NATS__REPLICAS"] == "3"
        assert [environment["KINESTREAM_NATS__PARTITIONS"]] == MAPPING.findall(
            (NATS_DIR / "cluster.conf").read_text()
        )
