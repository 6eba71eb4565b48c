"""The core stays sans-I/O: importing it pulls in no event loop, network, MQTT or metrics."""

import ast
import os
import pathlib
import subprocess
import sys

import kinestream.core

CORE_DIR = pathlib.Path(kinestream.core.__file__).parent
FORBIDDEN_TOP_LEVEL = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "gmqtt",
    "paho",
    "aiomqtt",
    "prometheus_client",
    "sqlite3",
    "http",
    "urllib",
    "threading",
    "subprocess",
    "time",
    "os",
    "pathlib",
    "io",
    "kinestream.io",
    "kinestream.service",
    "kinestream.config",
}


def _imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _is_forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN_TOP_LEVEL)


def test_core_sources_import_no_io_module():
    """No module under kinestream.core names an I/O, clock or adapter module in an import."""
    offenders = {
        f"{path.relative_to(CORE_DIR)}: {module}"
        for path in CORE_DIR.rglob("*.py")
        for module in _imported_modules(path)
        if _is_forbidden(module)
    }
    assert not offenders, sorted(offenders)


def test_importing_core_loads_no_io_module():
    """A fresh interpreter importing every core module has loaded no forbidden module."""
    modules = [
        "kinestream.core." + ".".join(p.relative_to(CORE_DIR).with_suffix("").parts)
        for p in CORE_DIR.rglob("*.py")
        if p.name != "__init__.py"
    ]
    probe = (
        f"import sys\nfor m in {modules!r}: __import__(m)\nprint('\\n'.join(sorted(sys.modules)))\n"
    )
    # The child must import this checkout's sources, installed or not.
    env = {**os.environ, "PYTHONPATH": str(CORE_DIR.parent.parent)}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env
    ).stdout.split()
    network_or_io = {
        "asyncio",
        "socket",
        "gmqtt",
        "paho",
        "aiomqtt",
        "prometheus_client",
        "sqlite3",
    }
    assert not network_or_io.intersection(loaded)
