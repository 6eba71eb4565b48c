"""The CLI's contract: --version, exit codes."""

import os
import pathlib
import subprocess
import sys

import pytest

from kinestream import __version__
from kinestream.cli import build_parser, main, named_command
from kinestream.commands import SUMMARIES


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


def test_help_lists_every_command_with_the_summary_it_registers():
    """`kinestream --help` (commands listed by name, none imported) equals the help of the
    parser with every command registered in full."""
    assert build_parser(()).format_help() == build_parser().format_help()


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["process", "x.jsonl", "--summary"], ("process",)),
        (["--version"], ()),
        (["-h"], ()),
        (["no-such-command", "run"], ()),
        ([], ()),
    ],
)
def test_named_command_is_the_first_word_that_is_not_an_option(argv, named):
    assert named_command(argv) == named


@pytest.mark.parametrize("command", list(SUMMARIES))
def test_each_command_help_is_complete_when_registered_alone(command, capsys):
    """`kinestream <cmd> --help` from the parser ``main`` builds equals the full parser's."""
    helps = []
    for parser in (build_parser((command,)), build_parser()):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1]
    assert f"usage: kinestream {command}" in helps[0]


def test_process_does_not_load_the_configuration_or_other_commands(tmp_path):
    """`kinestream process` without --config or KINESTREAM_* variables imports neither
    pydantic (the validating configuration) nor the daemon's or plot's libraries: they were
    most of its start-up."""
    log = tmp_path / "log.jsonl"
    log.write_text(
        '{"t": 1767225600.0, "topic": "vehicles/a/speed", "payload": "{\\"ts\\": 1767225600.0,'
        ' \\"speed\\": 3}"}\n'
    )
    src_dir = pathlib.Path(__file__).resolve().parents[1] / "src"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KINESTREAM_")}
    env["PYTHONPATH"] = str(src_dir)
    script = (
        "import sys\n"
        "from kinestream.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = {'pydantic', 'pydantic_settings', 'gmqtt', 'prometheus_client', 'matplotlib'}\n"
        "loaded = sorted(heavy & {name.partition('.')[0] for name in sys.modules})\n"
        "print(code, loaded, 'kinestream.config' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "process", str(log), "--summary"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert '"vehicle_id":"a"' in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "0 [] False"
