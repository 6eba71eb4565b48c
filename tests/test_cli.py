"""The CLI's contract: --version, exit codes."""

import os
import pathlib
import subprocess
import sys

import pytest

from kinestream import __version__
from kinestream.cli import main


def test_version_flag_prints_version(capsys):
    """`kinestream --version` prints the package version and exits 0."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    """`python -m kinestream --help` works and lists the commands."""
    src_dir = pathlib.Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "kinestream", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0
    assert "kinestream" in result.stdout


def test_unknown_command_is_a_usage_error():
    """An unknown command exits 2 (argparse's usage error)."""
    with pytest.raises(SystemExit) as exited:
        main(["no-such-command"])
    assert exited.value.code == 2
